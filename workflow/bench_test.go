package workflow_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/consumer/messages"
	"github.com/tasker-systems/consumer/pgmq"
)

// BenchmarkWorkflow runs whole tasks, one at a time, with an in-process worker that reads the
// worker queue and hands each result to the engine in the transaction that deletes the
// dispatch. It reports steps/s (engine and worker round trips together, no actor).
func BenchmarkWorkflow(b *testing.B) {
	for _, name := range []string{"linear", "diamond"} {
		b.Run(name, func(b *testing.B) {
			e := newEnv(b, nil)
			ctx := context.Background()
			steps := 0
			b.ResetTimer()
			for i := range b.N {
				res := e.mustInitialize(name, fmt.Sprintf(`{"n": %d, "i": %d}`, i%50, i))
				for done := false; !done; {
					msgs, err := pgmq.Read(ctx, e.pool, workerQueue, 30e9, 100)
					if err != nil {
						b.Fatal(err)
					}
					if len(msgs) == 0 {
						b.Fatalf("task %s stuck", res.TaskUUID)
					}
					for _, m := range msgs {
						d := decodeDispatch(b, m.Body)
						err := e.inTx(func(tx pgx.Tx) error {
							out, err := one(e.eng.ProcessStepResults(ctx, tx, []messages.StepResult{compute(b, d)}))
							if err != nil {
								return err
							}
							done = done || (out.Final != nil && out.Final.State == "complete")
							_, err = pgmq.Delete(ctx, tx, workerQueue, m.ID)
							return err
						})
						if err != nil {
							b.Fatal(err)
						}
						steps++
					}
				}
			}
			b.ReportMetric(float64(steps)/b.Elapsed().Seconds(), "steps/s")
		})
	}
}
