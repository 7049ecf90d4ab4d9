package pgmq_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/consumer/internal/testdb"
	"github.com/tasker-systems/consumer/pgmq"
)

// A producer sends; a consumer claims messages, applies their effects and acknowledges them in
// one transaction, so the work and the deletes commit (or roll back) together.
func ExampleRead() {
	dbURL, drop := testdb.ForExample("example_pgmq") // a real program connects to its own database
	defer drop()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	const queue = "greetings"
	if err := pgmq.Create(ctx, pool, queue); err != nil {
		log.Fatal(err)
	}
	bodies := []json.RawMessage{json.RawMessage(`{"to":"ada"}`), json.RawMessage(`{"to":"grace"}`)}
	if _, err := pgmq.SendBatch(ctx, pool, queue, bodies, pgmq.SendOptions{}); err != nil {
		log.Fatal(err)
	}

	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		msgs, err := pgmq.Read(ctx, tx, queue, 30*time.Second, 10)
		if err != nil {
			return err
		}
		for _, m := range msgs {
			var greeting struct{ To string }
			if err := json.Unmarshal(m.Body, &greeting); err != nil {
				return err
			}
			fmt.Printf("hello %s (delivery %d)\n", greeting.To, m.ReadCount) // ... effects with tx ...
			if _, err := pgmq.Delete(ctx, tx, queue, m.ID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	m, err := pgmq.QueueMetrics(ctx, pool, queue)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("left in the queue:", m.Length)
	// Output:
	// hello ada (delivery 1)
	// hello grace (delivery 1)
	// left in the queue: 0
}
