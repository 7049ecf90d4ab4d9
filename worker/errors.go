package worker

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// How a handler's error is reported in the step result (see docs/protocol.md):
//
//	returned error                     result.status  error.retryable  backoff_hint
//	nil                                completed      -                -
//	Retryable(err), plain err, panic   failed         true             -
//	RetryableAfter(err, d)             failed         true             d
//	Permanent(err)                     error          false            -
//
// The orchestrator retries a failed step while attempts remain; a step in error is never
// retried. When classifications are nested, the outermost one wins.

// classified is an error with an explicit retry classification.
type classified struct {
	err       error
	permanent bool
	delay     time.Duration
	hasDelay  bool
}

func (e *classified) Error() string { return e.err.Error() }
func (e *classified) Unwrap() error { return e.err }

// Retryable marks err as a transient failure: the step is reported as "failed" with
// error.retryable true, and the orchestrator retries it with its backoff while attempts remain.
// A plain error is treated the same way; Retryable documents intent and overrides an inner
// Permanent. Retryable(nil) is nil.
func Retryable(err error) error {
	if err == nil {
		return nil
	}
	return &classified{err: err}
}

// RetryableAfter is Retryable with a backoff hint: the orchestrator waits delay before the
// retry (capped by the step's backoff_max) instead of its own exponential backoff. Use it for
// rate limits and Retry-After headers. A negative delay counts as 0. RetryableAfter(nil, d) is
// nil.
func RetryableAfter(err error, delay time.Duration) error {
	if err == nil {
		return nil
	}
	return &classified{err: err, delay: max(delay, 0), hasDelay: true}
}

// Permanent marks err as a failure that retrying cannot fix (bad input, a missing record): the
// step is reported with status "error" and is never retried. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &classified{err: err, permanent: true}
}

// IsPermanent reports whether err is classified as permanent (its outermost classification is
// Permanent).
func IsPermanent(err error) bool {
	var c *classified
	return errors.As(err, &c) && c.permanent
}

// ErrorTyper is implemented by errors that name their kind; the name becomes the result's
// error.error_type (for example "timeout" or "rate_limited"). Any error in the chain may
// implement it; WithErrorType is the simplest way.
type ErrorTyper interface {
	ErrorType() string
}

type typedError struct {
	err error
	typ string
}

func (e *typedError) Error() string     { return e.err.Error() }
func (e *typedError) Unwrap() error     { return e.err }
func (e *typedError) ErrorType() string { return e.typ }

// WithErrorType sets the error_type reported for err, keeping its classification:
// WithErrorType(Retryable(err), "flaky"). WithErrorType(nil, t) is nil.
func WithErrorType(err error, errorType string) error {
	if err == nil {
		return nil
	}
	return &typedError{err: err, typ: errorType}
}

// Error types the SDK reports itself.
const (
	ErrorTypePanic           = "panic"            // the handler panicked
	ErrorTypeUnknownCallable = "unknown_callable" // no handler registered for the dispatch's callable
	ErrorTypeInvalidResult   = "invalid_result"   // the handler's value cannot be encoded as JSON
	ErrorTypeTimeout         = "timeout"          // the error wraps context.DeadlineExceeded
	ErrorTypeInvalidInput    = "invalid_input"    // a Step.Decode* helper failed
)

// errorType returns the error_type to report for err.
func errorType(err error) string {
	var t ErrorTyper
	if errors.As(err, &t) {
		return t.ErrorType()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return ErrorTypeTimeout
	}
	return ""
}

// panicError is a recovered handler panic. It is a plain (retryable) error: the panic may
// depend on state that a retry does not share, and max_attempts bounds the retries anyway.
type panicError struct {
	value any
	stack []byte
}

func (e *panicError) Error() string     { return fmt.Sprintf("panic: %v", e.value) }
func (e *panicError) ErrorType() string { return ErrorTypePanic }
