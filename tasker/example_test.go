package tasker_test

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
	"github.com/tasker-systems/consumer/tasker"
)

// A queue with the notify trigger announces each insert statement after commit; a consumer
// LISTENs on the queue's channel and claims the announced ids in the transaction that handles
// and acknowledges them. An id claimed by someone else meanwhile is simply not returned.
func Example() {
	dbURL, drop := testdb.ForExample("example_tasker") // a real program connects to its own database
	defer drop()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	const queue = "worker_demo_queue"
	if err := pgmq.Create(ctx, pool, queue); err != nil {
		log.Fatal(err)
	}
	if err := tasker.EnableNotify(ctx, pool, queue); err != nil {
		log.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dbURL) // LISTEN needs a connection of its own
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{tasker.NotifyChannel(queue)}.Sanitize()); err != nil {
		log.Fatal(err)
	}

	ids, err := pgmq.SendBatch(ctx, pool, queue, []json.RawMessage{json.RawMessage(`{"n":1}`), json.RawMessage(`{"n":2}`)}, pgmq.SendOptions{})
	if err != nil {
		log.Fatal(err)
	}
	n, err := conn.WaitForNotification(ctx)
	if err != nil {
		log.Fatal(err)
	}
	var event struct {
		EventType string  `json:"event_type"`
		MsgIDs    []int64 `json:"msg_ids"`
	}
	if err := json.Unmarshal([]byte(n.Payload), &event); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s on %s: %d ids\n", event.EventType, n.Channel, len(event.MsgIDs))

	// Someone else claims the first message before we do.
	if _, ok, err := tasker.ReadSpecific(ctx, pool, queue, ids[0], time.Minute); err != nil || !ok {
		log.Fatal(ok, err)
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		msgs, err := tasker.ReadSpecificBatch(ctx, tx, queue, event.MsgIDs, 30*time.Second)
		if err != nil {
			return err
		}
		for _, m := range msgs {
			fmt.Printf("claimed %s\n", m.Body) // ... effects with tx ...
			if _, err := pgmq.Delete(ctx, tx, queue, m.ID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	// Output:
	// batch_ready on pgmq_message_ready.demo: 2 ids
	// claimed {"n": 2}
}
