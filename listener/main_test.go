package listener

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tasker-systems/consumer/commands"
	"github.com/tasker-systems/consumer/internal/testsignal"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var orchestrationQueues = []string{
	"orchestration_task_requests",
	"orchestration_step_results",
	"orchestration_task_finalizations",
}

// runInBackground runs run until the test ends, then checks that it returned nil.
func runInBackground(t *testing.T, run func(context.Context) error) context.CancelFunc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v, want nil", err)
			}
		case <-time.After(testsignal.Timeout):
			t.Errorf("Run did not return within %v of its context ending", testsignal.Timeout)
		}
	})
	return cancel
}

// receive returns the next notification on out.
func receive(t *testing.T, out *commands.NotificationChannel) commands.Notification {
	t.Helper()
	select {
	case n := <-out.Receive():
		return n
	case <-time.After(testsignal.Timeout):
		t.Fatalf("no notification within %v", testsignal.Timeout)
		panic("unreachable")
	}
}

// withParam adds key=value to a URL-style connection string.
func withParam(url, key, value string) string {
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	return url + sep + key + "=" + value
}
