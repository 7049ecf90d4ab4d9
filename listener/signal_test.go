package listener

import (
	"testing"
	"time"

	"github.com/tasker-systems/consumer/internal/testsignal"
)

// waitUntil polls cond until it holds, failing the test at the deadline. For conditions that no
// signal announces (for example a row in pg_stat_activity).
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testsignal.Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
