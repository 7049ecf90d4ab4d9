package commands

import (
	"context"
	"fmt"
)

// Responder carries a command's reply back to the one requester that waits for it. The zero
// Responder means nobody waits: Send is then a no-op, so fire-and-forget commands (the
// dispatcher's) create no channel at all.
type Responder[T any] struct {
	ch   chan<- Reply[T]
	done <-chan struct{} // the requester's context: closed when it stops waiting
}

// NewResponder returns a Responder and the channel its reply arrives on. The requester must
// receive from the channel until ctx is done.
func NewResponder[T any](ctx context.Context) (Responder[T], <-chan Reply[T]) {
	ch := make(chan Reply[T])
	return Responder[T]{ch: ch, done: ctx.Done()}, ch
}

// Waiting reports whether someone asked for this reply.
func (r Responder[T]) Waiting() bool { return r.ch != nil }

// Send delivers the reply. It returns false when a requester asked for the reply but has stopped
// waiting (its context ended): the caller must log that, since the outcome is otherwise lost.
func (r Responder[T]) Send(v T, err error) bool {
	if r.ch == nil {
		return true
	}
	select {
	case r.ch <- Reply[T]{Value: v, Err: err}:
		return true
	case <-r.done:
		return false
	}
}

// Request sends the command built around a fresh Responder and waits for its reply.
func Request[T any](ctx context.Context, ch *CommandChannel, build func(Responder[T]) Command) (T, error) {
	var zero T
	resp, replies := NewResponder[T](ctx)
	if err := ch.Send(ctx, build(resp)); err != nil {
		return zero, err
	}
	select {
	case r := <-replies:
		return r.Value, r.Err
	case <-ctx.Done():
		return zero, fmt.Errorf("waiting for reply: %w", ctx.Err())
	}
}
