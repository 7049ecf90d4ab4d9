package dispatch_test

import (
	"context"
	"testing"
	"time"

	"github.com/tasker-systems/consumer/commands"
	"github.com/tasker-systems/consumer/dispatch"
	"github.com/tasker-systems/consumer/internal/testsignal"
	"github.com/tasker-systems/consumer/messages"
)

// start runs a dispatcher with its test signals until the test ends or stop is called; stop
// returns what Run returned.
func start(t *testing.T, out *commands.CommandChannel) (d *dispatch.Dispatcher, in *commands.NotificationChannel, stop func() error) {
	t.Helper()
	in = commands.NewNotificationChannel(10)
	d = &dispatch.Dispatcher{In: in, Out: out, InFlight: commands.NewInFlight()}
	d.TestSignals.Sending.Init()
	d.TestSignals.Handled.Init()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var err error
	stopped := false
	stop = func() error {
		if !stopped {
			cancel()
			err, stopped = <-done, true
		}
		return err
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	})
	return d, in, stop
}

func notify(t *testing.T, in *commands.NotificationChannel, queue string, ids ...int64) {
	t.Helper()
	if err := in.Send(context.Background(), commands.Notification{Queue: queue, MsgIDs: ids}); err != nil {
		t.Fatal(err)
	}
}

func receive(t *testing.T, out *commands.CommandChannel) commands.ProcessMessage {
	t.Helper()
	select {
	case c := <-out.Receive():
		return c.(commands.ProcessMessage)
	case <-time.After(testsignal.Timeout):
		t.Fatal("no command")
		panic("unreachable")
	}
}

func TestClassifiesByQueueAndSkipsInFlightDuplicates(t *testing.T) {
	out := commands.NewCommandChannel(10)
	d, in, _ := start(t, out)
	notify(t, in, messages.QueueStepResults, 7, 7, 8)
	first, second := receive(t, out), receive(t, out)
	if first.Kind != commands.KindStepResult || first.MsgID != 7 || second.MsgID != 8 {
		t.Fatalf("commands = %+v, %+v", first, second)
	}
	// A poll that finds the same message while it is in flight adds nothing.
	notify(t, in, messages.QueueStepResults, 8, 9)
	if c := receive(t, out); c.MsgID != 9 {
		t.Fatalf("command = %+v, want msg 9", c)
	}
	// Unknown queues are counted, not forwarded.
	notify(t, in, "worker_demo_queue", 1)
	notify(t, in, messages.QueueTaskRequests, 9)
	if c := receive(t, out); c.MsgID != 9 || c.Kind != commands.KindTaskRequest || c.Queue != messages.QueueTaskRequests {
		t.Fatalf("command after unknown queue = %+v", c)
	}
	for range 4 {
		d.TestSignals.Handled.WaitOrTimeout(t)
	}
	if d.Duplicates() != 2 || d.UnknownQueue() != 1 || d.Dispatched() != 4 {
		t.Fatalf("duplicates %d, unknown %d, dispatched %d", d.Duplicates(), d.UnknownQueue(), d.Dispatched())
	}
}

// Backpressure: a full command channel makes the dispatcher wait, in order, dropping nothing.
func TestFullCommandChannelWaitsAndLosesNothing(t *testing.T) {
	out := commands.NewCommandChannel(1)
	d, in, _ := start(t, out)
	notify(t, in, messages.QueueTaskRequests, 1, 2, 3)
	for want := int64(1); want <= 3; want++ {
		if c := receive(t, out); c.MsgID != want {
			t.Fatalf("got msg %d, want %d", c.MsgID, want)
		}
	}
	d.TestSignals.Handled.WaitOrTimeout(t)
	if d.Dispatched() != 3 {
		t.Fatalf("dispatched %d, want 3", d.Dispatched())
	}
}

// A dispatcher stopped while it waits on a full channel does not leave the undelivered message
// in flight: a later announcement or poll must be able to dispatch it again.
func TestStopWhileWaitingForgetsTheUndeliveredMessage(t *testing.T) {
	out := commands.NewCommandChannel(1)
	if err := out.Send(context.Background(), commands.GetProcessingStats{}); err != nil { // fill it
		t.Fatal(err)
	}
	d, in, stop := start(t, out)
	notify(t, in, messages.QueueTaskRequests, 5)
	ref := d.TestSignals.Sending.WaitOrTimeout(t)
	if err := stop(); err != nil { // the send can only end with the context: nobody receives
		t.Fatal(err)
	}
	if s := out.Stats(); s.BlockedSends != 1 || s.BlockedTime <= 0 {
		t.Fatalf("channel stats %+v: the wait was not measured", s)
	}
	if !d.InFlight.Add(ref) {
		t.Fatalf("%+v is still in flight after its send was abandoned", ref)
	}
	if d.Dispatched() != 0 {
		t.Fatalf("dispatched %d, want 0", d.Dispatched())
	}
}
