package commands

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// Channel is a bounded, typed channel between two pipeline stages. A send blocks while the
// channel is full (backpressure: nothing is dropped), and the time spent blocked is measured.
type Channel[T any] struct {
	name         string
	ch           chan T
	sent         atomic.Uint64
	blockedSends atomic.Uint64
	blockedNanos atomic.Int64
}

// NotificationChannel carries notifications from the listener and poller to the dispatcher.
type NotificationChannel = Channel[Notification]

// CommandChannel carries commands from the dispatcher (and in-process callers) to the actor.
type CommandChannel = Channel[Command]

// NewChannel returns a channel holding up to capacity items (at least 1).
func NewChannel[T any](name string, capacity int) *Channel[T] {
	return &Channel[T]{name: name, ch: make(chan T, max(capacity, 1))}
}

// NewNotificationChannel returns the orchestration notification channel.
func NewNotificationChannel(capacity int) *NotificationChannel {
	return NewChannel[Notification]("orchestration_notifications", capacity)
}

// NewCommandChannel returns the orchestration command channel.
func NewCommandChannel(capacity int) *CommandChannel {
	return NewChannel[Command]("orchestration_commands", capacity)
}

// Send enqueues v, waiting while the channel is full until ctx ends.
func (c *Channel[T]) Send(ctx context.Context, v T) error {
	select {
	case c.ch <- v:
		c.sent.Add(1)
		return nil
	default:
	}
	start := time.Now()
	c.blockedSends.Add(1)
	defer func() { c.blockedNanos.Add(int64(time.Since(start))) }()
	select {
	case c.ch <- v:
		c.sent.Add(1)
		return nil
	case <-ctx.Done():
		return fmt.Errorf("send on %s: %w", c.name, ctx.Err())
	}
}

// Receive returns the receiving end.
func (c *Channel[T]) Receive() <-chan T { return c.ch }

// Name returns the channel's name (for logs and metrics).
func (c *Channel[T]) Name() string { return c.name }

// Len is the number of queued items.
func (c *Channel[T]) Len() int { return len(c.ch) }

// Cap is the capacity.
func (c *Channel[T]) Cap() int { return cap(c.ch) }

// Free is the number of items that can be sent without blocking.
func (c *Channel[T]) Free() int { return cap(c.ch) - len(c.ch) }

// Saturation is the fill ratio, 0 to 1.
func (c *Channel[T]) Saturation() float64 { return float64(len(c.ch)) / float64(cap(c.ch)) }

// ChannelStats is a snapshot of a channel's counters.
type ChannelStats struct {
	Name         string        `json:"name"`
	Len          int           `json:"len"`
	Cap          int           `json:"cap"`
	Saturation   float64       `json:"saturation"`
	Sent         uint64        `json:"sent"`
	BlockedSends uint64        `json:"blocked_sends"`
	BlockedTime  time.Duration `json:"blocked_time_ns"`
}

// Stats returns a snapshot of the channel's counters.
func (c *Channel[T]) Stats() ChannelStats {
	return ChannelStats{
		Name: c.name, Len: c.Len(), Cap: c.Cap(), Saturation: c.Saturation(),
		Sent: c.sent.Load(), BlockedSends: c.blockedSends.Load(), BlockedTime: time.Duration(c.blockedNanos.Load()),
	}
}
