package pgmq_test

import (
	"context"
	"encoding/json"
	"log"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/consumer/pgmq"
)

// A producer sends; a consumer claims a message, applies its effects and acknowledges it in
// one transaction, so the work and the delete commit (or roll back) together. (Compiled, not
// run: it needs a database.)
func ExampleRead() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	const queue = "orchestration_task_finalizations"
	if _, err := pgmq.Send(ctx, pool, queue, json.RawMessage(`{"task_uuid":"0190b7a4-0000-7000-8000-000000000000"}`), pgmq.SendOptions{}); err != nil {
		log.Fatal(err)
	}

	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		msgs, err := pgmq.Read(ctx, tx, queue, 30*time.Second, 10)
		if err != nil {
			return err
		}
		for _, m := range msgs {
			// ... handle m.Body with tx ...
			if _, err := pgmq.Delete(ctx, tx, queue, m.ID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
}
