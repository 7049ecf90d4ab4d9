package template

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode"

	"github.com/tasker-systems/consumer/messages"
)

// Names may use '.' and '-' (unlike namespaces they never become part of a queue name) but not
// '/' or '@', which would make Key ambiguous.
var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_.-]*$`)

// Validate checks the template and returns every problem found, joined with
// errors.Join; nil means the template can be registered. Each message starts
// with the template's Source and, where relevant, names the step.
//
// Parse calls Validate; call it yourself only for templates built in Go. On
// such templates an empty IdentityStrategy is accepted and means
// IdentityStrict, but Retry fields are not defaulted: start from RetryDefault.
func (t *Template) Validate() error {
	v := validator{source: sourceLabel(t.Source)}

	if err := messages.ValidateNamespace(t.Namespace); err != nil {
		v.add(-1, "", "%v", err)
	}
	switch {
	case t.Name == "":
		v.add(-1, "", "name is empty")
	case !nameRE.MatchString(t.Name):
		v.add(-1, "", "name %q is invalid: must match %s", t.Name, nameRE)
	}
	switch {
	case t.Version == "":
		v.add(-1, "", "version is empty")
	case strings.ContainsFunc(t.Version, unicode.IsSpace):
		v.add(-1, "", "version %q must not contain white space", t.Version)
	}
	switch t.IdentityStrategy {
	case "", IdentityStrict, IdentityCallerProvided, IdentityAlwaysUnique:
	default:
		v.add(-1, "", "identity_strategy %q is invalid: must be %q, %q or %q",
			t.IdentityStrategy, IdentityStrict, IdentityCallerProvided, IdentityAlwaysUnique)
	}
	if len(t.Steps) == 0 {
		v.add(-1, "", "no steps")
		return v.err()
	}

	// index maps a step name to its first declaration; later duplicates are
	// reported and otherwise ignored so one mistake does not cascade.
	index := make(map[string]int, len(t.Steps))
	for i, s := range t.Steps {
		if s.Name == "" {
			v.add(i, "", "name is empty")
			continue
		}
		if first, dup := index[s.Name]; dup {
			v.add(i, s.Name, "duplicate step name (first declared as step #%d)", first+1)
			continue
		}
		index[s.Name] = i
	}

	for i, s := range t.Steps {
		if strings.TrimSpace(s.Handler.Callable) == "" {
			v.add(i, s.Name, "handler.callable is empty")
		}
		seen := make(map[string]bool, len(s.Dependencies))
		for _, dep := range s.Dependencies {
			switch _, known := index[dep]; {
			case dep == "":
				v.add(i, s.Name, "dependency name is empty")
			case dep == s.Name:
				v.add(i, s.Name, "depends on itself")
			case !known:
				v.add(i, s.Name, "unknown dependency %q", dep)
			case seen[dep]:
				v.add(i, s.Name, "dependency %q is listed more than once", dep)
			}
			seen[dep] = true
		}
		r := s.Retry
		if r.MaxAttempts < 1 {
			v.add(i, s.Name, "retry.max_attempts must be at least 1, got %d", r.MaxAttempts)
		}
		if r.BackoffBase <= 0 {
			v.add(i, s.Name, "retry.backoff_base must be positive, got %s", r.BackoffBase)
		} else if r.BackoffMax < r.BackoffBase {
			v.add(i, s.Name, "retry.backoff_max (%s) must not be less than retry.backoff_base (%s)", r.BackoffMax, r.BackoffBase)
		} else if r.BackoffMax > BackoffMaxLimit {
			v.add(i, s.Name, "retry.backoff_max (%s) is above %s", r.BackoffMax, BackoffMaxLimit)
		}
	}

	for _, c := range findCycles(t.Steps, index) {
		v.add(c[0], t.Steps[c[0]].Name, "cycle: %s", cyclePath(t.Steps, c))
	}
	return v.err()
}

// findCycles returns one cycle per back edge found by a depth-first search
// that follows parent -> child edges, starting from steps (and visiting
// children) in declaration order so the report is deterministic. Each cycle
// is a list of step indices starting and ending at the same step. Unknown
// dependencies and self-dependencies are reported elsewhere and skipped here.
func findCycles(steps []Step, index map[string]int) [][]int {
	children := make([][]int, len(steps))
	for i, s := range steps {
		if index[s.Name] != i {
			continue // unnamed or duplicate step: not addressable
		}
		for _, dep := range s.Dependencies {
			// i grows in the outer loop, so each children list stays in
			// declaration order without sorting.
			if p, ok := index[dep]; ok && p != i && !slices.Contains(children[p], i) {
				children[p] = append(children[p], i)
			}
		}
	}

	const (
		white = iota // not visited
		grey         // on the current path
		black        // finished
	)
	color := make([]int, len(steps))
	var (
		stack  []int
		cycles [][]int
		visit  func(int)
	)
	visit = func(u int) {
		color[u] = grey
		stack = append(stack, u)
		for _, c := range children[u] {
			switch color[c] {
			case white:
				visit(c)
			case grey:
				start := len(stack) - 1
				for stack[start] != c {
					start--
				}
				cycle := append(append([]int(nil), stack[start:]...), c)
				cycles = append(cycles, cycle)
			}
		}
		stack = stack[:len(stack)-1]
		color[u] = black
	}
	for i := range steps {
		if color[i] == white {
			visit(i)
		}
	}
	return cycles
}

func cyclePath(steps []Step, cycle []int) string {
	names := make([]string, len(cycle))
	for i, s := range cycle {
		names[i] = steps[s].Name
	}
	return strings.Join(names, " -> ")
}

// validator collects errors so Validate can report all of them.
type validator struct {
	source string
	errs   []error
}

// add records a problem; step is the step's index, or -1 for template-level
// problems.
func (v *validator) add(step int, name, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if step >= 0 {
		msg = stepLabel(step, name) + ": " + msg
	}
	v.errs = append(v.errs, fmt.Errorf("%s: %s", v.source, msg))
}

func (v *validator) err() error { return errors.Join(v.errs...) }

// sourceLabel is the prefix of every error message; templates built in code
// may have no Source, and a message should still start with something.
func sourceLabel(source string) string {
	if source == "" {
		return "template"
	}
	return source
}

// stepLabel names a step in a message, by position when it has no name.
func stepLabel(i int, name string) string {
	if name == "" {
		return fmt.Sprintf("step #%d", i+1)
	}
	return fmt.Sprintf("step %q", name)
}
