package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-systems/consumer/internal/fixtures"
	"github.com/tasker-systems/consumer/template"
)

func TestProgressLine(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		complete, failed, total int
		elapsed                 time.Duration
		want                    string
	}{
		{0, 0, 100, 0, "[------------------------------] 0/100 complete, 0 error  0.0s"},
		{63, 0, 100, 12345 * time.Millisecond, "[##################------------] 63/100 complete, 0 error  12.3s"},
		{60, 3, 100, time.Second, "[##################------------] 60/100 complete, 3 error  1.0s"},
		{100, 0, 100, 2 * time.Second, "[##############################] 100/100 complete, 0 error  2.0s"},
		{0, 0, 0, 0, "[------------------------------] 0/0 complete, 0 error  0.0s"},
	} {
		if got := progressLine(tc.complete, tc.failed, tc.total, tc.elapsed); got != tc.want {
			t.Errorf("progressLine(%d, %d, %d, %s)\n got %q\nwant %q", tc.complete, tc.failed, tc.total, tc.elapsed, got, tc.want)
		}
	}
}

func TestProgressPlainOutputIsThrottled(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	p := &progress{w: &buf, plainEvery: time.Hour}
	p.update("a")
	p.update("b") // within plainEvery: not printed
	p.finish("c")
	p.finish("c") // unchanged: not repeated
	if got, want := buf.String(), "a\nc\n"; got != want {
		t.Errorf("plain output %q, want %q", got, want)
	}

	buf.Reset()
	p = &progress{w: &buf, terminal: true}
	p.update("a")
	p.update("a") // unchanged: not redrawn
	p.finish("b")
	if got, want := buf.String(), "\ra\x1b[K\rb\x1b[K\n"; got != want {
		t.Errorf("terminal output %q, want %q", got, want)
	}
}

func TestShortDuration(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		0:                          "-",
		850 * time.Microsecond:     "850µs",
		12345 * time.Microsecond:   "12.3ms",
		456789 * time.Microsecond:  "457ms",
		1234567 * time.Microsecond: "1.23s",
	} {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%s) = %q, want %q", d, got, want)
		}
	}
}

const templateDir = "../../testdata/templates"

// headerValues reads what a template's header comment promises for context {"n": 6}.
func headerValues(t *testing.T, path string) map[string]string {
	t.Helper()
	want, err := fixtures.HeaderResults(path)
	if err != nil {
		t.Fatal(err)
	}
	return want
}

// TestExpectedResultsMatchTemplateHeaders checks the demo's computation against the values
// each template's header comment gives for n=6.
func TestExpectedResultsMatchTemplateHeaders(t *testing.T) {
	t.Parallel()
	paths, err := filepath.Glob(filepath.Join(templateDir, "*.yaml"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no templates in %s: %v", templateDir, err)
	}
	for _, path := range paths {
		tmpl, err := template.LoadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		got, err := expectedResults(tmpl, 6)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		header := headerValues(t, path)
		for _, s := range tmpl.Steps {
			want, ok := header[s.Name]
			if !ok {
				t.Errorf("%s: the header gives no value for step %s", path, s.Name)
				continue
			}
			if got[s.Name].String() != want {
				t.Errorf("%s: step %s = %s, header says %s", path, s.Name, got[s.Name], want)
			}
			if !sameNumber([]byte(" "+want+"\n"), got[s.Name]) {
				t.Errorf("%s: sameNumber(%q, %s) = false", path, want, got[s.Name])
			}
		}
	}
}

func TestExpectedResultsLargeNumbersStayExact(t *testing.T) {
	t.Parallel()
	tmpl, err := template.LoadFile(filepath.Join(templateDir, "mixed.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// rank = (2·2·n²)² = 16·n⁴; for n = 10⁶ that is 1.6e25, beyond float64's exact integers.
	got, err := expectedResults(tmpl, 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	if want := "16000000000000000000000000"; got["rank"].String() != want {
		t.Errorf("rank = %s, want %s", got["rank"], want)
	}
}

func TestExpectedResultsRejectsUnknownCallablesAndAddends(t *testing.T) {
	t.Parallel()
	for name, yaml := range map[string]string{
		"callable": "namespace: demo\nname: x\nversion: 1.0.0\nsteps:\n  - name: a\n    handler: {callable: other.thing}\n",
		"addend":   "namespace: demo\nname: x\nversion: 1.0.0\nsteps:\n  - name: a\n    handler: {callable: demo.add, initialization: {addend: 1.5}}\n",
		"missing":  "namespace: demo\nname: x\nversion: 1.0.0\nsteps:\n  - name: a\n    handler: {callable: demo.add}\n",
	} {
		tmpl, err := template.Parse(name, []byte(yaml))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := expectedResults(tmpl, 6); err == nil {
			t.Errorf("%s: expectedResults succeeded, want an error", name)
		}
	}
}

func TestSameNumber(t *testing.T) {
	t.Parallel()
	want, _ := expectedResults(&template.Template{Namespace: "demo", Name: "x", Version: "1",
		Steps: []template.Step{{Name: "a", Handler: template.Handler{Callable: "demo.square"}}}}, 6)
	for in, ok := range map[string]bool{"36": true, " 36\n": true, "36.0": false, `"36"`: false, "null": false, "": false, "35": false} {
		if got := sameNumber([]byte(in), want["a"]); got != ok {
			t.Errorf("sameNumber(%q, 36) = %v, want %v", in, got, ok)
		}
	}
}

func TestSummaryAndProblems(t *testing.T) {
	t.Parallel()
	linear := &template.Template{Namespace: "demo", Name: "linear", Version: "1.0.0"}
	retry := &template.Template{Namespace: "demo", Name: "retry", Version: "1.0.0"}
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	done := func(d time.Duration) *time.Time { v := at.Add(d); return &v }
	tasks := []*task{
		{tmpl: linear, n: 1, taskUUID: uuid.New(), state: "complete", createdAt: at, completedAt: done(10 * time.Millisecond), checked: true, steps: 4},
		{tmpl: linear, n: 2, taskUUID: uuid.New(), state: "complete", createdAt: at, completedAt: done(30 * time.Millisecond), checked: true, steps: 4, wrong: "step finish returned 1, want 2"},
		{tmpl: retry, n: 1, taskUUID: uuid.New(), state: "complete", createdAt: at, completedAt: done(2 * time.Second), checked: true, steps: 3, retries: 2},
		{tmpl: retry, n: 2, taskUUID: uuid.New(), state: "error", createdAt: at, completedAt: done(time.Second), steps: 3, retries: 2},
		{tmpl: retry, n: 3, msgID: 42},
		{tmpl: retry, n: 4, msgID: 43, deadLetter: "validation: bad"},
	}
	s := summarize([]*template.Template{linear, retry}, tasks)
	l, r, total := s.templates[0], s.templates[1], s.total
	if l.tasks != 2 || l.complete != 2 || l.wrong != 1 || l.ok() || l.resultsColumn() != "1 WRONG" {
		t.Errorf("linear stats %+v", l)
	}
	if r.tasks != 4 || r.complete != 1 || r.error != 2 || r.unfinished != 1 || r.retries != 4 || r.resultsColumn() != "ok" {
		t.Errorf("retry stats %+v", r)
	}
	if total.tasks != 6 || total.ok() || total.steps != 14 || len(total.latencies) != 4 {
		t.Errorf("total stats %+v", total)
	}
	if ok := (&tally{tasks: 1, complete: 1}).ok(); !ok {
		t.Error("one complete task with right results is not ok")
	}

	d := &demo{tasks: tasks}
	problems := strings.Join(d.problems(), "\n")
	for _, want := range []string{"linear n=2: task", "returned 1, want 2", "retry n=2: task", "is error",
		"retry n=4: request dead-lettered (validation: bad)"} {
		if !strings.Contains(problems, want) {
			t.Errorf("problems lack %q:\n%s", want, problems)
		}
	}
	if strings.Contains(problems, "n=3") || strings.Contains(problems, "linear n=1") {
		t.Errorf("problems list an unfinished or a good task:\n%s", problems)
	}
	dup := &task{tmpl: linear, n: 9, msgID: 45, duplicate: true}
	if !dup.finished() || dup.complete() {
		t.Error("a duplicate request is not finished without completing")
	}
	if p := (&demo{tasks: []*task{dup}}).problems(); len(p) != 1 || !strings.Contains(p[0], "linear n=9: request acknowledged as a duplicate") {
		t.Errorf("problems of a duplicate: %q", p)
	}
	d.tasks = append(d.tasks, &task{tmpl: linear, taskUUID: uuid.New(), state: "steps_in_process"},
		&task{tmpl: linear, taskUUID: uuid.New(), state: "steps_in_process"}, &task{tmpl: linear, taskUUID: uuid.New(), state: "pending"})
	if got, want := d.unfinishedStates(), "steps_in_process 2, no task yet 1, pending 1"; got != want {
		t.Errorf("unfinishedStates = %q, want %q", got, want)
	}
	d.tasks = tasks
	if got := d.pickTask(); got != tasks[1] {
		t.Errorf("pickTask chose %+v, want the first task that went wrong", got)
	}
	d.tasks = []*task{tasks[0], tasks[2]}
	if got := d.pickTask(); got != tasks[2] {
		t.Errorf("pickTask chose %+v, want the first retried task", got)
	}
}

func TestWithDefaults(t *testing.T) {
	t.Setenv("DEMO_TEST_SET", "x")
	got := withDefaults([]string{"A=1"}, "DEMO_TEST_SET=y", "DEMO_TEST_UNSET_4711=z")
	if want := "A=1 DEMO_TEST_UNSET_4711=z"; strings.Join(got, " ") != want {
		t.Errorf("withDefaults = %v, want %s", got, want)
	}
}

func TestTail(t *testing.T) {
	t.Parallel()
	if got, want := tail("a\nb\nc\n", 2), "    b\n    c"; got != want {
		t.Errorf("tail = %q, want %q", got, want)
	}
}
