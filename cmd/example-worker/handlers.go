package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"time"

	"github.com/tasker-systems/consumer/internal/timeutil"
	"github.com/tasker-systems/consumer/worker"
)

// The demo callables of testdata/templates. Each computes from an "input": for a step without
// dependencies it is task_context.n, otherwise the sum of the values in dependency_results.
// Results are plain JSON numbers.
var callables = map[string]func(step worker.Step) (any, error){
	// demo.square returns input * input.
	"demo.square": func(step worker.Step) (any, error) {
		in, err := input(step)
		if err != nil {
			return nil, err
		}
		return in.mul(in), nil
	},
	// demo.double returns input * 2.
	"demo.double": func(step worker.Step) (any, error) {
		in, err := input(step)
		if err != nil {
			return nil, err
		}
		return in.mul(intNumber(2)), nil
	},
	// demo.add returns input + initialization.addend.
	"demo.add": func(step worker.Step) (any, error) {
		in, err := input(step)
		if err != nil {
			return nil, err
		}
		addend, err := initNumber(step, "addend")
		if err != nil {
			return nil, err
		}
		if addend == nil {
			return nil, worker.Permanent(errors.New("handler.initialization.addend: required, must be a number"))
		}
		return in.add(*addend), nil
	},
	// demo.sum returns input: the sum of its parents' results.
	"demo.sum": func(step worker.Step) (any, error) {
		return input(step)
	},
	// demo.flaky fails with a retryable error (error_type "flaky") while the attempt is below
	// initialization.succeed_on_attempt, then returns input.
	"demo.flaky": func(step worker.Step) (any, error) {
		in, err := input(step)
		if err != nil {
			return nil, err
		}
		succeedOn, err := initNumber(step, "succeed_on_attempt")
		if err != nil {
			return nil, err
		}
		if succeedOn != nil && float64(step.Attempt) < succeedOn.float() {
			return nil, worker.WithErrorType(worker.Retryable(fmt.Errorf(
				"flaky: attempt %d fails, attempt %s succeeds", step.Attempt, succeedOn)), "flaky")
		}
		return in, nil
	},
}

// register registers every demo callable on w, each delayed by delay (when positive).
func register(w *worker.Worker, delay time.Duration) {
	for name, f := range callables {
		w.Handle(name, withDelay(f, delay))
	}
}

// withDelay adapts f to a worker.Handler that first waits delay (an artificial step duration
// for demos and chaos tests), giving up if ctx ends.
func withDelay(f func(worker.Step) (any, error), delay time.Duration) worker.Handler {
	return func(ctx context.Context, step worker.Step) (any, error) {
		if delay > 0 {
			if err := timeutil.Sleep(ctx, delay); err != nil {
				return nil, err
			}
		}
		return f(step)
	}
}

// input returns task_context.n for a root step, else the sum of the parents' results. Input
// that is not numeric is a permanent error: retrying cannot fix it.
func input(step worker.Step) (number, error) {
	if len(step.DependencyResults) == 0 {
		var ctx map[string]json.RawMessage
		if err := step.DecodeContext(&ctx); err != nil {
			return number{}, err
		}
		raw, ok := ctx["n"]
		if !ok {
			return number{}, worker.Permanent(errors.New("task_context.n: required, must be a number"))
		}
		return parseNumber("task_context.n", raw)
	}
	sum := intNumber(0)
	for _, name := range step.DependencyNames() {
		n, err := parseNumber(fmt.Sprintf("dependency_results[%q]", name), step.DependencyResults[name])
		if err != nil {
			return number{}, err
		}
		sum = sum.add(n)
	}
	return sum, nil
}

// initNumber returns the numeric field of handler.initialization, or nil when it is absent.
func initNumber(step worker.Step, field string) (*number, error) {
	var init map[string]json.RawMessage
	if err := step.DecodeInitialization(&init); err != nil {
		return nil, err
	}
	raw, ok := init[field]
	if !ok {
		return nil, nil
	}
	n, err := parseNumber("handler.initialization."+field, raw)
	if err != nil {
		return nil, err
	}
	return &n, nil
}

// number is a JSON number, kept exact (a big.Int) while every operand is an integer, so squares
// of squares do not lose digits; otherwise a float64.
type number struct {
	i *big.Int // nil: the value is f
	f float64
}

func intNumber(v int64) number { return number{i: big.NewInt(v)} }

// parseNumber decodes a JSON number; anything else is a permanent error naming what.
func parseNumber(what string, raw json.RawMessage) (number, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return number{}, worker.Permanent(fmt.Errorf("%s: %w", what, err))
	}
	jn, ok := v.(json.Number)
	if !ok {
		return number{}, worker.Permanent(fmt.Errorf("%s: want a number, got %s", what, bytes.TrimSpace(raw)))
	}
	if i, ok := new(big.Int).SetString(jn.String(), 10); ok {
		return number{i: i}, nil
	}
	f, err := jn.Float64()
	if err != nil {
		return number{}, worker.Permanent(fmt.Errorf("%s: %w", what, err))
	}
	return number{f: f}, nil
}

func (n number) float() float64 {
	if n.i == nil {
		return n.f
	}
	f, _ := new(big.Float).SetInt(n.i).Float64()
	return f
}

func (n number) add(m number) number {
	if n.i != nil && m.i != nil {
		return number{i: new(big.Int).Add(n.i, m.i)}
	}
	return number{f: n.float() + m.float()}
}

func (n number) mul(m number) number {
	if n.i != nil && m.i != nil {
		return number{i: new(big.Int).Mul(n.i, m.i)}
	}
	return number{f: n.float() * m.float()}
}

func (n number) String() string {
	b, err := n.MarshalJSON()
	if err != nil {
		return fmt.Sprint(n.f)
	}
	return string(b)
}

// MarshalJSON writes the number; a float that overflowed to ±Inf cannot be written.
func (n number) MarshalJSON() ([]byte, error) {
	if n.i != nil {
		return []byte(n.i.String()), nil
	}
	if math.IsInf(n.f, 0) || math.IsNaN(n.f) {
		return nil, fmt.Errorf("result %v is not a finite number", n.f)
	}
	return json.Marshal(n.f)
}
