package dispatch_test

import (
	"context"
	"testing"
	"time"

	"github.com/tasker-systems/consumer/commands"
	"github.com/tasker-systems/consumer/dispatch"
	"github.com/tasker-systems/consumer/messages"
	"github.com/tasker-systems/consumer/pgmq"
)

func setup(t *testing.T, cmdCap int) (*dispatch.Dispatcher, *commands.NotificationChannel, *commands.CommandChannel, context.CancelFunc) {
	t.Helper()
	in := commands.NewNotificationChannel(10)
	out := commands.NewCommandChannel(cmdCap)
	d := &dispatch.Dispatcher{In: in, Out: out, InFlight: commands.NewInFlight()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return d, in, out, cancel
}

func receive(t *testing.T, out *commands.CommandChannel) commands.Command {
	t.Helper()
	select {
	case c := <-out.Receive():
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no command")
		return nil
	}
}

func TestClassifiesByQueueAndSkipsInFlightDuplicates(t *testing.T) {
	d, in, out, _ := setup(t, 10)
	ctx := context.Background()
	_ = in.Send(ctx, commands.Notification{Source: commands.SourceNotify, Queue: messages.QueueStepResults, MsgIDs: []int64{7, 7, 8}})
	first, second := receive(t, out).(commands.ProcessMessageEvent), receive(t, out).(commands.ProcessMessageEvent)
	if first.Kind != commands.KindStepResult || first.MsgID != 7 || second.MsgID != 8 {
		t.Fatalf("commands = %+v, %+v", first, second)
	}
	// A claimed message is always forwarded, even when its id is in flight.
	_ = in.Send(ctx, commands.Notification{Source: commands.SourcePoll, Queue: messages.QueueStepResults, Messages: []pgmq.Message{{ID: 7}}})
	if c := receive(t, out).(commands.ProcessMessage); c.Message.ID != 7 || c.Kind != commands.KindStepResult {
		t.Fatalf("claimed command = %+v", c)
	}
	// Unknown queues are counted, not forwarded.
	_ = in.Send(ctx, commands.Notification{Source: commands.SourceNotify, Queue: "worker_demo_queue", MsgIDs: []int64{1}})
	_ = in.Send(ctx, commands.Notification{Source: commands.SourceNotify, Queue: messages.QueueTaskRequests, MsgIDs: []int64{9}})
	if c := receive(t, out).(commands.ProcessMessageEvent); c.MsgID != 9 || c.Kind != commands.KindTaskRequest {
		t.Fatalf("command after unknown queue = %+v", c)
	}
	// The counter moves just after the send the test received from.
	deadline := time.Now().Add(5 * time.Second)
	for d.Dispatched() != 4 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if d.Duplicates() != 1 || d.UnknownQueue() != 1 || d.Dispatched() != 4 {
		t.Fatalf("duplicates %d, unknown %d, dispatched %d", d.Duplicates(), d.UnknownQueue(), d.Dispatched())
	}
}

func TestFullCommandChannelBlocksAndIsMeasured(t *testing.T) {
	_, in, out, _ := setup(t, 1)
	ctx := context.Background()
	_ = in.Send(ctx, commands.Notification{Source: commands.SourceNotify, Queue: messages.QueueTaskRequests, MsgIDs: []int64{1, 2, 3}})
	deadline := time.Now().Add(5 * time.Second)
	for out.Stats().BlockedSends == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the dispatcher never waited on the full channel")
		}
		time.Sleep(time.Millisecond)
	}
	// Nothing is dropped: all three arrive once the actor catches up.
	for want := int64(1); want <= 3; want++ {
		if c := receive(t, out).(commands.ProcessMessageEvent); c.MsgID != want {
			t.Fatalf("got msg %d, want %d", c.MsgID, want)
		}
	}
	if out.Stats().BlockedTime <= 0 {
		t.Fatal("blocked time not measured")
	}
}
