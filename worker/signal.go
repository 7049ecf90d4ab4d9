package worker

import "github.com/tasker-systems/consumer/internal/testsignal"

// workerTestSignals are the moments of a Worker's life that tests wait for.
type workerTestSignals struct {
	listening testsignal.Signal[struct{}]  // LISTEN is established (after every connect)
	polled    testsignal.Signal[pollEvent] // a pgmq.read returned
	idle      testsignal.Signal[int]       // the claim loop is about to wait; the value is the free slots
	started   testsignal.Signal[int64]     // a handler started (msg_id)
	heartbeat testsignal.Signal[int64]     // a heartbeat extended the visibility timeout (msg_id)
	committed testsignal.Signal[int64]     // a result was sent and the dispatch deleted (msg_id)
	duplicate testsignal.Signal[int64]     // the dispatch was already deleted: result dropped (msg_id)
	archived  testsignal.Signal[int64]     // a malformed dispatch was archived (msg_id)
	abandoned testsignal.Signal[int64]     // a handler was cut off by the shutdown timeout (msg_id)
	stopping  testsignal.Signal[struct{}]  // Run stopped claiming and waits for running handlers
}

// pollEvent describes one read of the worker queue.
type pollEvent struct {
	Asked   int // the qty passed to pgmq.read (the free slots)
	Claimed int
}
