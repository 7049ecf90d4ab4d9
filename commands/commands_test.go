package commands

import (
	"context"
	"testing"
	"time"
)

func TestResponderDeliversOrReportsADroppedReceiver(t *testing.T) {
	var none Responder[int]
	if none.Waiting() || !none.Send(1, nil) {
		t.Fatal("the zero Responder must accept and discard")
	}
	r, ch := NewResponder[int](context.Background())
	go func() { r.Send(42, nil) }()
	if got := <-ch; got.Value != 42 {
		t.Fatalf("reply = %+v", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	gone, _ := NewResponder[int](ctx)
	cancel()
	if gone.Send(1, nil) {
		t.Fatal("a reply to a requester that stopped waiting must report false")
	}
}

func TestChannelSaturationAndStats(t *testing.T) {
	c := NewChannel[int]("test", 4)
	for i := range 3 {
		if err := c.Send(context.Background(), i); err != nil {
			t.Fatal(err)
		}
	}
	if c.Len() != 3 || c.Free() != 1 || c.Saturation() != 0.75 {
		t.Fatalf("len %d free %d saturation %v", c.Len(), c.Free(), c.Saturation())
	}
	_ = c.Send(context.Background(), 3)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := c.Send(ctx, 4); err == nil {
		t.Fatal("send on a full channel must wait and give up with its context")
	}
	s := c.Stats()
	if s.Sent != 4 || s.BlockedSends != 1 || s.BlockedTime < 10*time.Millisecond || s.Name != "test" {
		t.Fatalf("stats = %+v", s)
	}
}

func TestStatsSnapshot(t *testing.T) {
	s := NewStats(time.Unix(0, 0))
	s.Record(KindTaskRequest, OutcomeProcessed)
	s.Record(KindTaskRequest, OutcomeNotFound)
	s.Record(KindStepResult, OutcomeDeadLettered)
	s.Record(KindUnknown, OutcomeFailed) // ignored: not a served kind
	snap := s.Snapshot()
	if snap.ByKind["task_request"].Processed != 1 || snap.ByKind["task_request"].NotFound != 1 ||
		snap.ByKind["step_result"].DeadLettered != 1 || snap.Total.Processed != 1 || snap.Total.Failed != 0 {
		t.Fatalf("snapshot = %+v", snap)
	}
}

func TestHealthEvaluate(t *testing.T) {
	cases := []struct {
		h    SystemHealth
		want HealthStatus
	}{
		{SystemHealth{DatabaseConnected: true, QueueDepthTier: DepthNormal}, HealthHealthy},
		{SystemHealth{DatabaseConnected: true, QueueDepthTier: DepthNormal, BackpressureActive: true}, HealthDegraded},
		{SystemHealth{DatabaseConnected: true, QueueDepthTier: DepthCritical}, HealthDegraded},
		{SystemHealth{DatabaseConnected: true, QueueDepthTier: DepthOverflow}, HealthUnhealthy},
		{SystemHealth{DatabaseConnected: false}, HealthUnhealthy},
	}
	for _, c := range cases {
		c.h.Evaluate()
		if c.h.Status != c.want {
			t.Errorf("%+v: status %v, want %v", c.h, c.h.Status, c.want)
		}
	}
	if TierForDepth(0) != DepthNormal || TierForDepth(DepthWarningAt) != DepthWarning || TierForDepth(DepthOverflowAt) != DepthOverflow {
		t.Fatal("depth tiers")
	}
}
