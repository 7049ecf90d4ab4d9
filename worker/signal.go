package worker

// testSignal is a test hook in production code (the River pattern): Signal does nothing until a
// test calls Init, after which every Signal is buffered for the test to wait on. Tests therefore
// wait for "the poll finished" or "the result was committed" instead of sleeping and hoping.
// Init must be called before Run starts.
type testSignal[T any] struct {
	ch chan T
}

// Init enables the signal.
func (s *testSignal[T]) Init() { s.ch = make(chan T, 1000) }

// Signal records v if the signal is enabled; it never blocks (a full buffer drops v).
func (s *testSignal[T]) Signal(v T) {
	if s.ch == nil {
		return
	}
	select {
	case s.ch <- v:
	default:
	}
}

// workerTestSignals are the moments of a Worker's life that tests wait for.
type workerTestSignals struct {
	listening testSignal[struct{}]  // LISTEN is established (after every connect)
	polled    testSignal[pollEvent] // a pgmq.read returned
	idle      testSignal[int]       // the claim loop is about to wait; the value is the free slots
	started   testSignal[int64]     // a handler started (msg_id)
	heartbeat testSignal[int64]     // a heartbeat extended the visibility timeout (msg_id)
	committed testSignal[int64]     // a result was sent and the dispatch deleted (msg_id)
	duplicate testSignal[int64]     // the dispatch was already deleted: result dropped (msg_id)
	archived  testSignal[int64]     // a malformed dispatch was archived (msg_id)
	abandoned testSignal[int64]     // a handler was cut off by the shutdown timeout (msg_id)
	stopping  testSignal[struct{}]  // Run stopped claiming and waits for running handlers
}

// pollEvent describes one read of the worker queue.
type pollEvent struct {
	Asked   int // the qty passed to pgmq.read (the free slots)
	Claimed int
}
