package listener

import (
	"testing"
	"time"
)

// signalTimeout bounds every wait in the tests. It is a deadline, not a sleep: it only matters
// when the code under test is broken.
const signalTimeout = 20 * time.Second

// WaitOrTimeout returns the next signalled value, failing the test if none comes in time.
func (s *testSignal[T]) WaitOrTimeout(t testing.TB) T {
	t.Helper()
	if s.ch == nil {
		t.Fatal("testSignal: WaitOrTimeout on a signal that was not initialized")
	}
	select {
	case v := <-s.ch:
		return v
	case <-time.After(signalTimeout):
		t.Fatalf("testSignal: nothing signalled within %v", signalTimeout)
		panic("unreachable")
	}
}

// WaitFor returns the first signalled value for which ok is true, skipping the others.
func (s *testSignal[T]) WaitFor(t testing.TB, ok func(T) bool) T {
	t.Helper()
	deadline := time.After(signalTimeout)
	for {
		select {
		case v := <-s.ch:
			if ok(v) {
				return v
			}
		case <-deadline:
			t.Fatalf("testSignal: the awaited value was not signalled within %v", signalTimeout)
			panic("unreachable")
		}
	}
}

// waitUntil polls cond until it holds, failing the test at the deadline. For conditions that no
// signal announces (for example a row in pg_stat_activity).
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(signalTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
