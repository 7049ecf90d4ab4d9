// Package testsignal is a test hook that lives in production code (River's pattern): a Signal
// does nothing until a test calls Init, after which every value signalled is buffered for the
// test to wait on. Tests then wait for "the poll round finished" or "the result was committed"
// instead of sleeping and hoping.
package testsignal

import (
	"testing"
	"time"
)

// Timeout bounds every wait. It is a deadline, not a sleep: it only matters when the code under
// test is broken.
const Timeout = 20 * time.Second

// Signal is one kind of moment a component announces. The zero value is disabled.
type Signal[T any] struct {
	ch chan T
}

// Init enables the signal. Call it before the signalling goroutine starts.
func (s *Signal[T]) Init() { s.ch = make(chan T, 1000) }

// Signal records v when the signal is enabled. It never blocks (a full buffer drops v).
func (s *Signal[T]) Signal(v T) {
	if s.ch == nil {
		return
	}
	select {
	case s.ch <- v:
	default:
	}
}

// C returns the channel of signalled values (nil when disabled), for tests that select.
func (s *Signal[T]) C() <-chan T { return s.ch }

// WaitOrTimeout returns the next signalled value, failing the test if none comes in time.
func (s *Signal[T]) WaitOrTimeout(t testing.TB) T {
	t.Helper()
	if s.ch == nil {
		t.Fatal("testsignal: wait on a signal that was not initialized")
	}
	select {
	case v := <-s.ch:
		return v
	case <-time.After(Timeout):
		t.Fatalf("testsignal: nothing signalled within %v", Timeout)
		panic("unreachable")
	}
}

// WaitFor returns the first signalled value for which ok is true, skipping the others.
func (s *Signal[T]) WaitFor(t testing.TB, ok func(T) bool) T {
	t.Helper()
	if s.ch == nil {
		t.Fatal("testsignal: wait on a signal that was not initialized")
	}
	deadline := time.After(Timeout)
	for {
		select {
		case v := <-s.ch:
			if ok(v) {
				return v
			}
		case <-deadline:
			t.Fatalf("testsignal: the awaited value was not signalled within %v", Timeout)
			panic("unreachable")
		}
	}
}
