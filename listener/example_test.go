package listener_test

import (
	"context"
	"os"
	"os/signal"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/tasker-systems/consumer/commands"
	"github.com/tasker-systems/consumer/listener"
	"github.com/tasker-systems/consumer/pgmq"
)

// Hybrid mode: the listener forwards announced message ids, the poller claims what NOTIFY
// missed, and every (re)connect of the listener triggers a full poll. For event_driven mode set
// Periodic to false; for polling mode run only the poller.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	log := zap.NewExample()

	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal("connect", zap.Error(err))
	}
	defer pool.Close()

	queues := []string{"orchestration_task_requests", "orchestration_step_results", "orchestration_task_finalizations"}
	out := commands.NewNotificationChannel(10_000)

	poller := &listener.Poller{
		DB:       pool,
		Queues:   queues,
		Out:      out,
		Periodic: true,
		// Capacity: how many more messages the actor can take before their VT runs out,
		// for example its free in-flight slots.
		Logger: log,
	}
	l := &listener.Listener{
		ConnString:   os.Getenv("DATABASE_URL"), // LISTEN_DATABASE_URL: a direct connection
		Channel:      pgmq.OrchestrationChannel,
		Queues:       queues,
		Out:          out,
		PingDB:       pool,
		OnBacklog:    func(context.Context) { poller.TriggerAll() },
		OnQueueReady: poller.Trigger,
		Logger:       log,
	}

	var wg sync.WaitGroup
	for _, run := range []func(context.Context) error{l.Run, poller.Run} {
		wg.Go(func() {
			if err := run(ctx); err != nil {
				log.Fatal("bad configuration", zap.Error(err))
			}
		})
	}
	go func() {
		for n := range out.Receive() {
			_ = n // the dispatcher's job: classify, de-duplicate, hand to the actor
		}
	}()
	wg.Wait() // both return nil when ctx ends
}
