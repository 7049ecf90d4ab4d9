package template

import (
	"cmp"
	"slices"
	"time"

	"github.com/tasker-systems/consumer/messages"
)

// IdentityStrategy decides when two task requests for the same template are
// the same task (see docs/templates.md).
type IdentityStrategy string

const (
	// IdentityStrict treats the same template with the same canonical context
	// as a duplicate. It is the default.
	IdentityStrict IdentityStrategy = "strict"
	// IdentityCallerProvided requires the caller to send an idempotency key.
	IdentityCallerProvided IdentityStrategy = "caller_provided"
	// IdentityAlwaysUnique creates a new task for every request.
	IdentityAlwaysUnique IdentityStrategy = "always_unique"
)

// Defaults of the fields a template may leave out (see docs/templates.md).
const (
	IdentityStrategyDefault = IdentityStrict
	RetryableDefault        = true
	MaxAttemptsDefault      = 3
	BackoffBaseDefault      = time.Second
	BackoffMaxDefault       = 5 * time.Minute
)

// BackoffMaxLimit is the longest retry delay a template may ask for: retry delays become PGMQ
// delays in whole seconds, and a week is beyond any useful retry.
const BackoffMaxLimit = 7 * 24 * time.Hour

// Template is a parsed workflow template.
type Template struct {
	Namespace        string
	Name             string
	Version          string
	IdentityStrategy IdentityStrategy
	Steps            []Step
	// Source is where the template came from (usually a file path). It only
	// labels error messages and is not part of the template's identity.
	Source string
}

// Step is one node of the workflow DAG.
type Step struct {
	Name    string
	Handler Handler
	// Dependencies are the names of the step's direct parents.
	Dependencies []string
	Retry        Retry
}

// Handler tells a worker what to run for a step. Initialization is passed to
// the worker verbatim in every dispatch.
type Handler struct {
	Callable       string
	Initialization map[string]any
}

// Retry is a step's retry policy.
type Retry struct {
	Retryable   bool
	MaxAttempts int
	BackoffBase time.Duration
	BackoffMax  time.Duration
}

// RetryDefault returns the policy of a step whose template has no retry block.
func RetryDefault() Retry {
	return Retry{
		Retryable:   RetryableDefault,
		MaxAttempts: MaxAttemptsDefault,
		BackoffBase: BackoffBaseDefault,
		BackoffMax:  BackoffMaxDefault,
	}
}

// WorkerQueue returns the queue this template's steps are dispatched to.
func (t *Template) WorkerQueue() string { return messages.WorkerQueue(t.Namespace) }

// Key returns "namespace/name@version", the template's identity.
func (t *Template) Key() string {
	return t.Namespace + "/" + t.Name + "@" + t.Version
}

// Step returns the step with the given name. The pointer aliases t.Steps.
func (t *Template) Step(name string) (*Step, bool) {
	if i := t.stepIndex(name); i >= 0 {
		return &t.Steps[i], true
	}
	return nil, false
}

func (t *Template) stepIndex(name string) int {
	for i := range t.Steps {
		if t.Steps[i].Name == name {
			return i
		}
	}
	return -1
}

// Roots returns the steps without dependencies in declaration order: the
// steps dispatched as soon as a task is created.
func (t *Template) Roots() []*Step {
	var out []*Step
	for i := range t.Steps {
		if len(t.Steps[i].Dependencies) == 0 {
			out = append(out, &t.Steps[i])
		}
	}
	return out
}

// Children returns the steps that list name as a direct dependency, in
// declaration order: the candidates to dispatch when that step completes.
func (t *Template) Children(name string) []*Step {
	var out []*Step
	for i := range t.Steps {
		if slices.Contains(t.Steps[i].Dependencies, name) {
			out = append(out, &t.Steps[i])
		}
	}
	return out
}

// TopologicalOrder returns every step after all of its dependencies. Among
// steps that are ready at the same time the one declared first comes first,
// so the order is deterministic and matches what the author wrote where the
// graph allows. Dependencies on unknown steps are ignored, and on an invalid
// template with a cycle the steps on or below the cycle are left out; call
// Validate first.
func (t *Template) TopologicalOrder() []*Step {
	n := len(t.Steps)
	indegree := make([]int, n)
	children := make([][]int, n)
	for i := range t.Steps {
		for _, dep := range t.Steps[i].Dependencies {
			if p := t.stepIndex(dep); p >= 0 && p != i {
				indegree[i]++
				children[p] = append(children[p], i)
			}
		}
	}
	// ready is kept sorted by declaration index; templates are small, so a
	// sorted slice is simpler than a heap and just as fast in practice.
	var ready []int
	for i := range n {
		if indegree[i] == 0 {
			ready = append(ready, i)
		}
	}
	out := make([]*Step, 0, n)
	for len(ready) > 0 {
		i := ready[0]
		ready = ready[1:]
		out = append(out, &t.Steps[i])
		for _, c := range children[i] {
			indegree[c]--
			if indegree[c] == 0 {
				pos, _ := slices.BinarySearch(ready, c)
				ready = slices.Insert(ready, pos, c)
			}
		}
	}
	return out
}

// identityStrategy treats an unset strategy on a hand-built template as the default, the
// same way Parse does.
func (t *Template) identityStrategy() IdentityStrategy {
	return cmp.Or(t.IdentityStrategy, IdentityStrategyDefault)
}

// Backoff returns the delay before attempt attempt+1, after attempt number
// attempt (1-based) has failed.
//
// Without a hint the delay is BackoffBase * 2^(attempt-1), capped at
// BackoffMax, with "equal jitter": half of it is fixed and half is scaled by
// rnd(), so the result lies in [d/2, d]. The fixed half keeps a retry from
// firing immediately; the random half spreads out steps that failed together
// (for example when a downstream service went away) so they do not retry in
// lock step.
//
// rnd must return values in [0, 1) and be safe for concurrent use if the
// caller shares it; math/rand/v2.Float64 fits. It is a parameter so that the
// package holds no random state and tests are deterministic. A nil rnd means
// no jitter: the full delay d is returned.
//
// When hint is non-nil (a worker's backoff_hint) it replaces the
// computed delay without jitter, because the worker knows something concrete
// (for example a Retry-After); it is still capped at BackoffMax and never
// negative.
//
// A BackoffMax <= 0 means no cap, so a hand-built Retry never panics or
// returns nonsense; Validate rejects such a policy in a template.
func (r Retry) Backoff(attempt int, hint *time.Duration, rnd func() float64) time.Duration {
	if hint != nil {
		d := max(*hint, 0)
		if r.BackoffMax > 0 {
			d = min(d, r.BackoffMax)
		}
		return d
	}
	d := max(r.BackoffBase, 0)
	// Double step by step instead of shifting so a large attempt number cannot
	// overflow; stop as soon as the cap is reached.
	for i := 1; i < attempt && d > 0; i++ {
		if r.BackoffMax > 0 && d >= r.BackoffMax {
			break
		}
		if d > (1<<63-1)/2 {
			d = 1<<63 - 1
			break
		}
		d *= 2
	}
	if r.BackoffMax > 0 {
		d = min(d, r.BackoffMax)
	}
	if rnd == nil {
		return d
	}
	f := min(max(rnd(), 0), 1)
	half := d / 2
	// min guards against float rounding pushing a huge delay past d.
	return min(half+time.Duration(f*float64(d-half)), d)
}
