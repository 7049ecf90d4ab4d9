package main

import (
	"encoding/json"
	"fmt"
	"math/big"
	"strings"

	"github.com/tasker-systems/consumer/template"
)

// expectedResults computes every step's result for task context {"n": n} the way the example
// worker does (cmd/example-worker/handlers.go): a step's input is n for a root step, otherwise
// the sum of its parents' results; demo.square returns input², demo.double 2·input, demo.add
// input + initialization.addend, demo.sum and demo.flaky (once it succeeds) return input.
// Integers stay exact (big.Int), as in the worker. A callable it does not know, or an addend
// that is not an integer, is an error: the demo then does not check that template's results.
func expectedResults(t *template.Template, n int64) (map[string]*big.Int, error) {
	out := make(map[string]*big.Int, len(t.Steps))
	order := t.TopologicalOrder()
	if len(order) != len(t.Steps) {
		return nil, fmt.Errorf("template %s: steps form a cycle", t.Key())
	}
	for _, s := range order {
		in := big.NewInt(n)
		if len(s.Dependencies) > 0 {
			in = new(big.Int)
			for _, dep := range s.Dependencies {
				in.Add(in, out[dep])
			}
		}
		var v *big.Int
		switch s.Handler.Callable {
		case "demo.square":
			v = new(big.Int).Mul(in, in)
		case "demo.double":
			v = new(big.Int).Lsh(in, 1)
		case "demo.add":
			addend, err := integerInit(s.Handler.Initialization, "addend")
			if err != nil {
				return nil, fmt.Errorf("template %s, step %s: %w", t.Key(), s.Name, err)
			}
			v = new(big.Int).Add(in, addend)
		case "demo.sum", "demo.flaky":
			v = in
		default:
			return nil, fmt.Errorf("template %s, step %s: callable %q is not one the demo can check", t.Key(), s.Name, s.Handler.Callable)
		}
		out[s.Name] = v
	}
	return out, nil
}

// integerInit returns initialization[field] as an integer.
func integerInit(init map[string]any, field string) (*big.Int, error) {
	raw, ok := init[field]
	if !ok {
		return nil, fmt.Errorf("initialization.%s: missing", field)
	}
	b, err := json.Marshal(raw)
	if err != nil {
		return nil, fmt.Errorf("initialization.%s: %w", field, err)
	}
	v, ok := new(big.Int).SetString(string(b), 10)
	if !ok {
		return nil, fmt.Errorf("initialization.%s: %s is not an integer", field, b)
	}
	return v, nil
}

// sameNumber reports whether a step's stored result (JSON) is the integer want.
func sameNumber(result []byte, want *big.Int) bool {
	got, ok := new(big.Int).SetString(strings.TrimSpace(string(result)), 10)
	return ok && got.Cmp(want) == 0
}
