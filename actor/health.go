package actor

import (
	"context"
	"time"

	"github.com/tasker-systems/consumer/commands"
	"github.com/tasker-systems/consumer/messages"
)

// healthTimeout bounds the database part of a health check.
const healthTimeout = time.Second

// health builds the SystemHealth report: database reachability, orchestration queue depths,
// channel saturation and backpressure.
func (a *Actor) health(ctx context.Context) commands.SystemHealth {
	h := commands.SystemHealth{
		CommandChannelSaturation: a.cfg.Commands.Saturation(),
		InFlight:                 a.cfg.InFlight.Len(),
		CheckedAt:                a.now().UTC(),
		QueueDepthTier:           commands.DepthUnknown,
	}
	if a.cfg.Notifications != nil {
		h.NotificationChannelSaturation = a.cfg.Notifications.Saturation()
	}
	h.BackpressureActive = h.CommandChannelSaturation >= commands.BackpressureSaturation ||
		h.NotificationChannelSaturation >= commands.BackpressureSaturation

	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), healthTimeout)
	defer cancel()
	reading, err := a.cfg.Depths.Read(ctx)
	if err != nil {
		h.Error = err.Error()
		h.Evaluate()
		return h
	}
	h.DatabaseConnected = true
	h.WorstQueueDepth = -1
	served := map[string]bool{}
	for _, q := range commands.Queues() {
		served[q] = true
	}
	for _, q := range reading.Queues {
		switch {
		case q.Name == messages.QueueDLQ:
			h.DLQDepth = q.Length
		case served[q.Name] && q.Visible > h.WorstQueueDepth:
			h.WorstQueue, h.WorstQueueDepth = q.Name, q.Visible
		}
	}
	h.QueueDepthTier = commands.TierForDepth(h.WorstQueueDepth)
	h.Evaluate()
	return h
}
