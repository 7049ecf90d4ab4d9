package worker

import (
	"github.com/tasker-systems/consumer/internal/testsignal"
	"github.com/tasker-systems/consumer/poller"
)

// workerTestSignals are the moments of a Worker's life that tests wait for.
type workerTestSignals struct {
	listening testsignal.Signal[struct{}]          // LISTEN is established and a poll asked for (after every connect)
	polled    testsignal.Signal[pollEvent]         // a pgmq.read returned
	capacity  testsignal.Signal[int]               // the poll loop asked for the free slots (the answer)
	pollRound testsignal.Signal[poller.RoundEvent] // a round of the poll loop finished
	started   testsignal.Signal[int64]             // a handler started (msg_id)
	heartbeat testsignal.Signal[int64]             // a heartbeat extended the visibility timeout (msg_id)
	committed testsignal.Signal[int64]             // a result was sent and the dispatch deleted (msg_id)
	duplicate testsignal.Signal[int64]             // the dispatch was already deleted: result dropped (msg_id)
	archived  testsignal.Signal[int64]             // a malformed dispatch was archived (msg_id)
	abandoned testsignal.Signal[int64]             // a handler was cut off by the shutdown timeout (msg_id)
	stopping  testsignal.Signal[struct{}]          // Run stopped claiming and waits for running handlers
}

// pollEvent describes one read of the worker queue.
type pollEvent struct {
	Asked   int // the qty passed to pgmq.read (the free slots)
	Claimed int
}
