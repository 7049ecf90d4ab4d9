package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/tasker-systems/consumer/messages"
)

func TestOutcome(t *testing.T) {
	t.Parallel()
	base := errors.New("boom")
	hint := func(s float64) *messages.OrchestrationMetadata {
		return &messages.OrchestrationMetadata{BackoffHint: &messages.BackoffHint{DelaySeconds: s}}
	}
	cases := []struct {
		name      string
		value     any
		err       error
		status    messages.StepStatus
		retryable bool
		errType   string
		hint      *messages.OrchestrationMetadata
		result    string
	}{
		{name: "value", value: map[string]int{"a": 1}, status: messages.StatusCompleted, result: `{"a":1}`},
		{name: "nil value", status: messages.StatusCompleted, result: `null`},
		{name: "raw", value: json.RawMessage(`[1, 2]`), status: messages.StatusCompleted, result: `[1,2]`},
		{name: "plain", err: base, status: messages.StatusFailed, retryable: true},
		{name: "retryable", err: Retryable(base), status: messages.StatusFailed, retryable: true},
		{name: "after", err: RetryableAfter(base, 1500*time.Millisecond), status: messages.StatusFailed, retryable: true, hint: hint(1.5)},
		{name: "after negative", err: RetryableAfter(base, -time.Second), status: messages.StatusFailed, retryable: true, hint: hint(0)},
		{name: "permanent", err: Permanent(base), status: messages.StatusError},
		{name: "wrapped permanent", err: fmt.Errorf("ctx: %w", Permanent(base)), status: messages.StatusError},
		{name: "outermost wins", err: Retryable(Permanent(base)), status: messages.StatusFailed, retryable: true},
		{name: "typed", err: WithErrorType(Permanent(base), "bad"), status: messages.StatusError, errType: "bad"},
		{name: "deadline", err: fmt.Errorf("call: %w", context.DeadlineExceeded), status: messages.StatusFailed, retryable: true, errType: "timeout"},
		{name: "panic", err: &panicError{value: "x"}, status: messages.StatusFailed, retryable: true, errType: "panic"},
		{name: "unencodable", value: func() {}, status: messages.StatusError, errType: ErrorTypeInvalidResult},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := outcome(c.value, c.err)
			if got.Status != c.status || got.Success != (c.status == messages.StatusCompleted) {
				t.Fatalf("status %v success %v, want %v", got.Status, got.Success, c.status)
			}
			if c.status == messages.StatusCompleted {
				if string(got.Result) != c.result || got.Error != nil {
					t.Errorf("result %s error %v, want %s", got.Result, got.Error, c.result)
				}
				return
			}
			if got.Error == nil || got.Error.Retryable != c.retryable || got.Error.ErrorType != c.errType || got.Error.Message == "" {
				t.Errorf("error %+v, want retryable %v type %q", got.Error, c.retryable, c.errType)
			}
			gj, _ := json.Marshal(got.OrchestrationMetadata)
			wj, _ := json.Marshal(c.hint)
			if string(gj) != string(wj) {
				t.Errorf("orchestration_metadata %s, want %s", gj, wj)
			}
		})
	}
}

func TestNilErrorsStayNil(t *testing.T) {
	t.Parallel()
	for name, err := range map[string]error{
		"Retryable": Retryable(nil), "RetryableAfter": RetryableAfter(nil, time.Second),
		"Permanent": Permanent(nil), "WithErrorType": WithErrorType(nil, "x"),
	} {
		if err != nil {
			t.Errorf("%s(nil) = %v, want nil", name, err)
		}
	}
	if !IsPermanent(fmt.Errorf("x: %w", Permanent(errors.New("y")))) || IsPermanent(errors.New("y")) {
		t.Error("IsPermanent")
	}
	if !errors.Is(Permanent(context.Canceled), context.Canceled) {
		t.Error("classified errors must unwrap")
	}
}

func TestStepHelpers(t *testing.T) {
	t.Parallel()
	d := newDispatch("demo.add")
	s := newStep(d, 7, 1)
	var ctx struct{ N int }
	if err := s.DecodeContext(&ctx); err != nil || ctx.N != 6 {
		t.Errorf("DecodeContext: %v %+v", err, ctx)
	}
	var init struct{ Addend int }
	if err := s.DecodeInitialization(&init); err != nil || init.Addend != 10 {
		t.Errorf("DecodeInitialization: %v %+v", err, init)
	}
	var parent int
	if err := s.DependencyResult("double", &parent); err != nil || parent != 72 {
		t.Errorf("DependencyResult: %v %d", err, parent)
	}
	if err := s.DependencyResult("missing", &parent); !IsPermanent(err) || errorType(err) != ErrorTypeInvalidInput {
		t.Errorf("missing dependency: %v, want a permanent invalid_input error", err)
	}
	var wrong struct{ N string }
	if err := s.DecodeContext(&wrong); !IsPermanent(err) {
		t.Errorf("wrong type: %v, want a permanent error", err)
	}
	empty := newStep(messages.StepDispatch{}, 1, 1)
	init.Addend = 5
	if err := empty.DecodeInitialization(&init); err != nil || init.Addend != 5 {
		t.Errorf("absent initialization: %v, v changed to %+v", err, init)
	}
	if names := s.DependencyNames(); len(names) != 1 || names[0] != "double" {
		t.Errorf("DependencyNames %v", names)
	}
}
