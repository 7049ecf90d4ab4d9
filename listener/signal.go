package listener

// testSignal is a test hook in production code (the River pattern): Signal does nothing until a
// test calls Init, after which every Signal is buffered for the test to wait on (see
// WaitOrTimeout in signal_test.go). Tests therefore wait for "the round finished" instead of
// sleeping and hoping. Init must be called before the signalling goroutine starts.
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
