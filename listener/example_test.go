package listener_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/consumer/commands"
	"github.com/tasker-systems/consumer/internal/testdb"
	"github.com/tasker-systems/consumer/listener"
	"github.com/tasker-systems/consumer/messages"
	"github.com/tasker-systems/consumer/pgmq"
	"github.com/tasker-systems/consumer/poller"
	"github.com/tasker-systems/consumer/tasker"
)

// Hybrid mode: the listener forwards the ids NOTIFY announces, the poller finds what NOTIFY
// missed, and every (re)connect of the listener triggers a full poll. Both send the same
// notification, a queue and message ids, and neither claims anything. For event_driven mode
// set Periodic to false; for polling mode run only the poller.
func Example() {
	dbURL, drop := testdb.ForExample("example_listener") // a real consumer uses DATABASE_URL
	defer drop()
	ctx, stop := context.WithCancel(context.Background())
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	queues := commands.Queues()
	out := commands.NewNotificationChannel(100)
	p := &poller.Poller{DB: pool, Queues: queues, Out: out, Periodic: true}
	listening := make(chan struct{}, 1)
	l := &listener.Listener{
		ConnString: dbURL, // LISTEN_DATABASE_URL: a direct connection, not a transaction pooler
		Channel:    tasker.OrchestrationChannel,
		Queues:     queues,
		Out:        out,
		PingDB:     pool,
		OnBacklog: func(context.Context) {
			p.TriggerAll() // what was announced while disconnected is lost: poll everything
			select {
			case listening <- struct{}{}:
			default:
			}
		},
		OnQueueReady: p.Trigger,
	}
	var wg sync.WaitGroup
	for _, run := range []func(context.Context) error{l.Run, p.Run} {
		wg.Go(func() {
			if err := run(ctx); err != nil {
				log.Fatal(err) // only a bad configuration ends Run early
			}
		})
	}

	<-listening
	if _, err := pgmq.Send(ctx, pool, messages.QueueTaskRequests, json.RawMessage(`{}`), pgmq.SendOptions{}); err != nil {
		log.Fatal(err)
	}
	n := <-out.Receive() // from here on, the dispatcher's job: classify, de-duplicate, hand to the actor
	fmt.Println(n.Queue, n.MsgIDs)
	stop()
	wg.Wait() // both return nil when ctx ends
	// Output: orchestration_task_requests [1]
}
