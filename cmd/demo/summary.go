package main

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-systems/consumer/internal/stats"
	"github.com/tasker-systems/consumer/template"
)

// tally is the outcome of a group of tasks (one template, or all).
type tally struct {
	name                   string
	tasks, complete, error int
	unfinished, wrong      int
	unchecked              int
	steps, retries         int
	latencies              []time.Duration
}

func (s *tally) ok() bool {
	return s.complete == s.tasks && s.wrong == 0
}

func (s *tally) add(t *task) {
	s.tasks++
	s.steps += t.steps
	s.retries += t.retries
	switch {
	case t.complete():
		s.complete++
		switch {
		case !t.checked:
			s.unchecked++
		case t.wrong != "":
			s.wrong++
		}
	case t.finished():
		s.error++
	default:
		s.unfinished++
	}
	if t.completedAt != nil {
		s.latencies = append(s.latencies, t.completedAt.Sub(t.createdAt))
	}
}

// summary holds per-template and overall statistics.
type summary struct {
	templates []*tally
	total     *tally
}

// summarize groups the tasks by template, in the templates' order.
func summarize(ts []*template.Template, tasks []*task) summary {
	s := summary{total: &tally{name: "total"}}
	byKey := make(map[string]*tally)
	for _, t := range ts {
		st := &tally{name: t.Name}
		byKey[t.Key()] = st
		s.templates = append(s.templates, st)
	}
	for _, t := range tasks {
		byKey[t.tmpl.Key()].add(t)
		s.total.add(t)
	}
	return s
}

// resultsColumn says whether the results of a group's complete tasks are the expected ones.
func (s *tally) resultsColumn() string {
	switch {
	case s.complete == 0:
		return "-"
	case s.wrong > 0:
		return fmt.Sprintf("%d WRONG", s.wrong)
	case s.unchecked == s.complete:
		return "not checked"
	case s.unchecked > 0:
		return fmt.Sprintf("ok (%d not checked)", s.unchecked)
	default:
		return "ok"
	}
}

// printSummary writes the table, the problems and where to look next.
func (d *demo) printSummary(s summary) {
	w := d.stdout
	fmt.Fprintln(w)
	width := len("template")
	for _, st := range s.templates {
		width = max(width, len(st.name))
	}
	row := func(name, tasks, complete, failed, unfinished, retries, p50, p99, results string) {
		fmt.Fprintf(w, "%-*s %6s %9s %6s %11s %8s %8s %8s  %s\n", width, name, tasks, complete, failed, unfinished, retries, p50, p99, results)
	}
	row("template", "tasks", "complete", "error", "unfinished", "retries", "p50", "p99", "results")
	for _, st := range append(s.templates, s.total) {
		row(st.name, fmt.Sprint(st.tasks), fmt.Sprint(st.complete), fmt.Sprint(st.error), fmt.Sprint(st.unfinished),
			fmt.Sprint(st.retries), shortDuration(stats.Percentile(st.latencies, 50)), shortDuration(stats.Percentile(st.latencies, 99)),
			st.resultsColumn())
	}
	fmt.Fprintln(w)

	t := s.total
	rate := 0.0
	if d.waited > 0 {
		rate = float64(t.complete) / d.waited.Seconds()
	}
	fmt.Fprintf(w, "%d of %d tasks complete (%d steps, %d retried attempts) in %s: %.0f tasks/s. p50/p99: created_at → completed_at.\n",
		t.complete, t.tasks, t.steps, t.retries, d.waited.Round(10*time.Millisecond), rate)
	if t.unchecked < t.complete && t.wrong == 0 {
		fmt.Fprintln(w, "Every checked step result is the value the example worker computes.")
	}
	if t.unfinished > 0 {
		why := "Interrupted"
		if d.timedOut {
			why = fmt.Sprintf("TIMED OUT after %s (see -timeout)", d.timeout)
		}
		fmt.Fprintf(w, "%s with %d tasks unfinished: %s.\n", why, t.unfinished, d.unfinishedStates())
	}
	problems := d.problems()
	for i, p := range problems {
		if i == 5 {
			fmt.Fprintf(w, "  … and %d more\n", len(problems)-i)
			break
		}
		fmt.Fprintln(w, "  "+p)
	}
	if pick := d.pickTask(); pick != nil {
		fmt.Fprintf(w, "One task in detail (%s, n=%d):  scripts/with-db.sh go run ./cmd/consumer status %s\n", pick.tmpl.Name, pick.n, pick.taskUUID)
	}
}

// problems lists, one line each, every task that did not end as expected.
func (d *demo) problems() []string {
	var out []string
	for _, t := range d.tasks {
		label := fmt.Sprintf("%s n=%d", t.tmpl.Name, t.n)
		switch {
		case t.deadLetter != "":
			out = append(out, fmt.Sprintf("%s: request dead-lettered (%s)", label, t.deadLetter))
		case t.duplicate:
			out = append(out, fmt.Sprintf("%s: request acknowledged as a duplicate of an earlier task", label))
		case !t.finished():
			// Summarized by unfinishedStates.
		case !t.complete():
			out = append(out, fmt.Sprintf("%s: task %s is %s", label, t.taskUUID, t.state))
		case t.wrong != "":
			out = append(out, fmt.Sprintf("%s: task %s: %s", label, t.taskUUID, t.wrong))
		}
	}
	return out
}

// unfinishedStates counts the unfinished tasks by state: "steps_in_process 3, no task yet 1".
func (d *demo) unfinishedStates() string {
	counts := make(map[string]int)
	for _, t := range d.tasks {
		if !t.finished() {
			state := t.state
			if t.taskUUID == uuid.Nil {
				state = "no task yet"
			}
			counts[state]++
		}
	}
	states := slices.Collect(maps.Keys(counts))
	slices.SortFunc(states, func(a, b string) int {
		return cmp.Or(counts[b]-counts[a], strings.Compare(a, b))
	})
	parts := make([]string, len(states))
	for i, s := range states {
		parts[i] = fmt.Sprintf("%s %d", s, counts[s])
	}
	return strings.Join(parts, ", ")
}

// pickTask chooses the task worth inspecting: the first that went wrong, else the first that
// needed retries, else the first.
func (d *demo) pickTask() *task {
	var retried, first *task
	for _, t := range d.tasks {
		if t.taskUUID == uuid.Nil {
			continue
		}
		if !t.complete() || t.wrong != "" {
			return t
		}
		if retried == nil && t.retries > 0 {
			retried = t
		}
		if first == nil {
			first = t
		}
	}
	if retried != nil {
		return retried
	}
	return first
}
