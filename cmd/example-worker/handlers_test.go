package main

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/tasker-systems/consumer/internal/fixtures"
	"github.com/tasker-systems/consumer/messages"
	"github.com/tasker-systems/consumer/template"
	"github.com/tasker-systems/consumer/worker"
)

const templateDir = "../../testdata/templates"

// headerExpectations reads the values a template's header comment promises for context
// {"n": 6}, for the given steps (each must have one).
func headerExpectations(t *testing.T, path string, steps []string) map[string]string {
	t.Helper()
	all, err := fixtures.HeaderResults(path)
	if err != nil {
		t.Fatal(err)
	}
	want := make(map[string]string, len(steps))
	for _, s := range steps {
		v, ok := all[s]
		if !ok {
			t.Fatalf("%s: the header gives no value for step %q", path, s)
		}
		want[s] = v
	}
	return want
}

// TestTemplatesComputeWhatTheirHeadersSay runs every template of testdata/templates through
// the handlers, in dependency order, the way the orchestrator would dispatch it (retrying
// retryable failures), and compares each step's result with the template's header comment.
func TestTemplatesComputeWhatTheirHeadersSay(t *testing.T) {
	t.Parallel()
	tmpls, err := template.LoadDir(templateDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(tmpls) == 0 {
		t.Fatal("no templates")
	}
	for _, tmpl := range tmpls {
		t.Run(tmpl.Name, func(t *testing.T) {
			var names []string
			for _, s := range tmpl.Steps {
				names = append(names, s.Name)
			}
			want := headerExpectations(t, tmpl.Source, names)
			results := make(map[string]json.RawMessage)
			for _, s := range tmpl.TopologicalOrder() {
				f, ok := callables[s.Handler.Callable]
				if !ok {
					t.Fatalf("step %q: callable %q has no handler", s.Name, s.Handler.Callable)
				}
				init, err := json.Marshal(s.Handler.Initialization)
				if err != nil {
					t.Fatal(err)
				}
				deps := make(map[string]json.RawMessage)
				for _, d := range s.Dependencies {
					deps[d] = results[d]
				}
				var got json.RawMessage
				for attempt := 1; ; attempt++ {
					step := testStep(messages.StepDispatch{
						StepName:          s.Name,
						Handler:           messages.HandlerSpec{Callable: s.Handler.Callable, Initialization: init},
						Attempt:           attempt,
						MaxAttempts:       s.Retry.MaxAttempts,
						TaskContext:       json.RawMessage(`{"n": 6}`),
						DependencyResults: deps,
					})
					v, err := f(step)
					if err == nil {
						if got, err = json.Marshal(v); err != nil {
							t.Fatalf("step %q: %v", s.Name, err)
						}
						break
					}
					var typed worker.ErrorTyper
					if worker.IsPermanent(err) || !errors.As(err, &typed) || typed.ErrorType() != "flaky" {
						t.Fatalf("step %q attempt %d: %v, want a retryable flaky failure at most", s.Name, attempt, err)
					}
					if attempt >= s.Retry.MaxAttempts || !s.Retry.Retryable {
						t.Fatalf("step %q: still failing after %d attempts: %v", s.Name, attempt, err)
					}
				}
				if string(got) != want[s.Name] {
					t.Errorf("step %q (%s): %s, header says %s", s.Name, s.Handler.Callable, got, want[s.Name])
				}
				results[s.Name] = got
			}
		})
	}
}

func testStep(d messages.StepDispatch) worker.Step {
	return worker.Step{
		Dispatch: d, TaskContext: d.TaskContext, DependencyResults: d.DependencyResults,
		Initialization: d.Handler.Initialization, Attempt: d.Attempt, MaxAttempts: d.MaxAttempts,
	}
}

func TestArithmetic(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, callable, ctx, init string
		deps                      map[string]string
		attempt                   int
		want                      string // result JSON; "" when an error is expected
		permanent                 bool
	}{
		{name: "square root", callable: "demo.square", ctx: `{"n": 6}`, want: "36"},
		{name: "square negative", callable: "demo.square", ctx: `{"n": -3}`, want: "9"},
		{name: "square big stays exact", callable: "demo.square", ctx: `{"n": 123456789012}`, want: "15241578753153483936144"},
		{name: "square float", callable: "demo.square", ctx: `{"n": 1.5}`, want: "2.25"},
		{name: "double sums parents", callable: "demo.double", deps: map[string]string{"a": "3", "b": "4"}, want: "14"},
		{name: "add", callable: "demo.add", ctx: `{"n": 6}`, init: `{"addend": 10}`, want: "16"},
		{name: "add float addend", callable: "demo.add", deps: map[string]string{"p": "1"}, init: `{"addend": 0.5}`, want: "1.5"},
		{name: "sum", callable: "demo.sum", deps: map[string]string{"a": "1296", "b": "1296"}, want: "2592"},
		{name: "sum root", callable: "demo.sum", ctx: `{"n": 7}`, want: "7"},
		{name: "flaky fails early", callable: "demo.flaky", ctx: `{"n": 6}`, init: `{"succeed_on_attempt": 3}`, attempt: 2},
		{name: "flaky succeeds", callable: "demo.flaky", ctx: `{"n": 6}`, init: `{"succeed_on_attempt": 3}`, attempt: 3, want: "6"},
		{name: "flaky without setting", callable: "demo.flaky", ctx: `{"n": 6}`, attempt: 1, want: "6"},
		{name: "missing n", callable: "demo.square", ctx: `{"m": 6}`, permanent: true},
		{name: "string n", callable: "demo.square", ctx: `{"n": "6"}`, permanent: true},
		{name: "context not an object", callable: "demo.square", ctx: `[6]`, permanent: true},
		{name: "parent not a number", callable: "demo.sum", deps: map[string]string{"a": `{"v": 1}`}, permanent: true},
		{name: "missing addend", callable: "demo.add", ctx: `{"n": 6}`, permanent: true},
		{name: "float overflow", callable: "demo.square", ctx: `{"n": 1e200}`, want: ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			deps := make(map[string]json.RawMessage)
			for k, v := range c.deps {
				deps[k] = json.RawMessage(v)
			}
			d := messages.StepDispatch{
				Handler: messages.HandlerSpec{Callable: c.callable}, Attempt: max(c.attempt, 1), MaxAttempts: 3,
				DependencyResults: deps,
			}
			if c.ctx != "" {
				d.TaskContext = json.RawMessage(c.ctx)
			}
			if c.init != "" {
				d.Handler.Initialization = json.RawMessage(c.init)
			}
			v, err := callables[c.callable](testStep(d))
			var got []byte
			if err == nil {
				got, err = json.Marshal(v)
			}
			switch {
			case c.want != "":
				if err != nil || string(got) != c.want {
					t.Errorf("got %s, %v; want %s", got, err, c.want)
				}
			case err == nil:
				t.Errorf("got %s, want an error", got)
			case worker.IsPermanent(err) != c.permanent:
				t.Errorf("error %v: permanent %v, want %v", err, worker.IsPermanent(err), c.permanent)
			}
		})
	}
}

func TestEveryCallableRegistered(t *testing.T) {
	t.Parallel()
	w := &worker.Worker{}
	register(w, 0) // panics on a duplicate
	want := []string{"demo.add", "demo.double", "demo.flaky", "demo.square", "demo.sum"}
	if got := slices.Sorted(maps.Keys(callables)); !slices.Equal(got, want) {
		t.Errorf("callables %v, want %v", got, want)
	}
}

func TestStepDelayHonoursCancellation(t *testing.T) {
	t.Parallel()
	h := withDelay(callables["demo.sum"], time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h(ctx, testStep(messages.StepDispatch{TaskContext: json.RawMessage(`{"n":1}`)})); !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
	v, err := withDelay(callables["demo.sum"], time.Millisecond)(context.Background(),
		testStep(messages.StepDispatch{TaskContext: json.RawMessage(`{"n":1}`)}))
	if b, _ := json.Marshal(v); err != nil || string(b) != "1" {
		t.Errorf("got %s, %v", b, err)
	}
}
