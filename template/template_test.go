package template

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const fixtureDir = "../testdata/templates"

func names(steps []*Step) []string {
	out := make([]string, len(steps))
	for i, s := range steps {
		out[i] = s.Name
	}
	return out
}

func mustParse(t *testing.T, src string) *Template {
	t.Helper()
	tpl, err := Parse("inline.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return tpl
}

func TestFixturesLoad(t *testing.T) {
	tests := []struct {
		file  string
		name  string
		steps []string // declaration order
		roots []string
	}{
		{"linear.yaml", "linear", []string{"start", "double", "add_ten", "finish"}, []string{"start"}},
		{"diamond.yaml", "diamond", []string{"start", "left", "right", "join"}, []string{"start"}},
		{"tree.yaml", "tree", []string{"root", "b1", "b2", "l1", "l2", "l3", "l4", "merge"}, []string{"root"}},
		{"mixed.yaml", "mixed", []string{"ingest", "normalize", "enrich", "score", "audit", "rank", "report"}, []string{"ingest"}},
		{"retry.yaml", "retry", []string{"prepare", "flaky", "finish"}, []string{"prepare"}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join(fixtureDir, tc.file)
			tpl, err := LoadFile(path)
			if err != nil {
				t.Fatalf("LoadFile: %v", err)
			}
			if err := tpl.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if tpl.Source != path {
				t.Errorf("Source = %q, want %q", tpl.Source, path)
			}
			if tpl.Namespace != "demo" || tpl.Name != tc.name || tpl.Version != "1.0.0" {
				t.Errorf("identity = %s, want demo/%s@1.0.0", tpl.Key(), tc.name)
			}
			if got, want := tpl.Key(), "demo/"+tc.name+"@1.0.0"; got != want {
				t.Errorf("Key() = %q, want %q", got, want)
			}
			if got := tpl.WorkerQueue(); got != "worker_demo_queue" {
				t.Errorf("WorkerQueue() = %q", got)
			}
			if tpl.IdentityStrategy != IdentityStrict {
				t.Errorf("IdentityStrategy = %q, want default %q", tpl.IdentityStrategy, IdentityStrict)
			}
			var got []string
			for _, s := range tpl.Steps {
				got = append(got, s.Name)
				if !strings.HasPrefix(s.Handler.Callable, "demo.") {
					t.Errorf("step %q: callable %q is not a demo callable", s.Name, s.Handler.Callable)
				}
			}
			if !reflect.DeepEqual(got, tc.steps) {
				t.Errorf("steps = %v, want %v", got, tc.steps)
			}
			if got := names(tpl.Roots()); !reflect.DeepEqual(got, tc.roots) {
				t.Errorf("Roots() = %v, want %v", got, tc.roots)
			}
			if got := tpl.TopologicalOrder(); len(got) != len(tpl.Steps) {
				t.Errorf("TopologicalOrder() has %d steps, want %d", len(got), len(tpl.Steps))
			}
		})
	}
}

func TestLoadDir(t *testing.T) {
	tpls, err := LoadDir(fixtureDir)
	if err != nil {
		t.Fatalf("LoadDir: %v", err)
	}
	var got []string
	for _, tpl := range tpls {
		got = append(got, tpl.Name)
	}
	want := []string{"diamond", "linear", "mixed", "retry", "tree"} // file-name order
	if !reflect.DeepEqual(got, want) {
		t.Errorf("LoadDir names = %v, want %v", got, want)
	}
}

func TestDefaults(t *testing.T) {
	tpl := mustParse(t, `
namespace: demo
name: defaults
version: "2"
steps:
  - name: none
    handler: {callable: demo.x}
  - name: empty
    handler: {callable: demo.x}
    retry: {}
  - name: partial
    handler: {callable: demo.x}
    retry: {backoff_base: 250ms}
  - name: off
    handler: {callable: demo.x}
    retry: {retryable: false}
`)
	def := Retry{Retryable: true, MaxAttempts: 3, BackoffBase: time.Second, BackoffMax: 5 * time.Minute}
	if RetryDefault() != def {
		t.Fatalf("RetryDefault() = %+v, want %+v", RetryDefault(), def)
	}
	partial := def
	partial.BackoffBase = 250 * time.Millisecond
	off := def
	off.Retryable = false
	tests := []struct {
		step string
		want Retry
	}{
		{"none", def},
		{"empty", def},
		{"partial", partial},
		{"off", off},
	}
	for _, tc := range tests {
		s, ok := tpl.Step(tc.step)
		if !ok {
			t.Fatalf("Step(%q) not found", tc.step)
		}
		if s.Retry != tc.want {
			t.Errorf("step %q: Retry = %+v, want %+v", tc.step, s.Retry, tc.want)
		}
	}
	if tpl.IdentityStrategy != IdentityStrict {
		t.Errorf("IdentityStrategy = %q, want %q", tpl.IdentityStrategy, IdentityStrict)
	}
	if s, _ := tpl.Step("none"); s.Handler.Initialization != nil || s.Dependencies != nil {
		t.Errorf("step none: unexpected initialization %v / dependencies %v", s.Handler.Initialization, s.Dependencies)
	}
}

func TestRetryableFalseHonoured(t *testing.T) {
	tpl, err := LoadFile(filepath.Join(fixtureDir, "diamond.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	join, ok := tpl.Step("join")
	if !ok {
		t.Fatal("no join step")
	}
	want := Retry{Retryable: false, MaxAttempts: 1, BackoffBase: time.Second, BackoffMax: 5 * time.Minute}
	if join.Retry != want {
		t.Errorf("join.Retry = %+v, want %+v", join.Retry, want)
	}
	left, _ := tpl.Step("left")
	if left.Retry != RetryDefault() {
		t.Errorf("left.Retry = %+v, want defaults", left.Retry)
	}

	retry, err := LoadFile(filepath.Join(fixtureDir, "retry.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	flaky, _ := retry.Step("flaky")
	want = Retry{Retryable: true, MaxAttempts: 3, BackoffBase: 50 * time.Millisecond, BackoffMax: time.Second}
	if flaky.Retry != want {
		t.Errorf("flaky.Retry = %+v, want %+v", flaky.Retry, want)
	}
	if got := flaky.Handler.Initialization["succeed_on_attempt"]; got != 3 {
		t.Errorf("flaky initialization succeed_on_attempt = %#v, want 3", got)
	}
}

func TestIdentityStrategy(t *testing.T) {
	tests := []struct {
		yaml    string
		want    IdentityStrategy
		wantErr string
	}{
		{"", IdentityStrict, ""},
		{"identity_strategy: strict", IdentityStrict, ""},
		{"identity_strategy: caller_provided", IdentityCallerProvided, ""},
		{"identity_strategy: always_unique", IdentityAlwaysUnique, ""},
		{"identity_strategy: sometimes", "", `inline.yaml: identity_strategy "sometimes" is invalid`},
	}
	for _, tc := range tests {
		t.Run(tc.yaml, func(t *testing.T) {
			src := "namespace: demo\nname: x\nversion: '1'\n" + tc.yaml +
				"\nsteps:\n  - name: a\n    handler: {callable: demo.a}\n"
			tpl, err := Parse("inline.yaml", []byte(src))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tpl.IdentityStrategy != tc.want {
				t.Errorf("IdentityStrategy = %q, want %q", tpl.IdentityStrategy, tc.want)
			}
		})
	}
}

func TestInvalidFixtures(t *testing.T) {
	tests := []struct {
		file string
		want []string // every line must appear in the error
	}{
		{"cycle.yaml", []string{`testdata/cycle.yaml: step "a": cycle: a -> b -> c -> a`}},
		{"missing_dep.yaml", []string{`testdata/missing_dep.yaml: step "join": unknown dependency "lefty"`}},
		{"duplicate.yaml", []string{`testdata/duplicate.yaml: step "left": duplicate step name (first declared as step #2)`}},
		{"bad_namespace.yaml", []string{`testdata/bad_namespace.yaml: namespace "Demo-Space" is invalid`}},
		{"long_namespace.yaml", []string{`testdata/long_namespace.yaml: namespace "abcdefghijklmnopqrstuvwxyz_123" is too long: 30 characters, at most 29`}},
		{"self_dep.yaml", []string{`testdata/self_dep.yaml: step "loop": depends on itself`}},
		{"unknown_field.yaml", []string{`testdata/unknown_field.yaml: step "start": line 8: unknown field "retyr"`}},
		{"bad_identity.yaml", []string{`testdata/bad_identity.yaml: identity_strategy "sometimes" is invalid`}},
		{"missing_callable.yaml", []string{`testdata/missing_callable.yaml: step "work": handler.callable is empty`}},
		{"bad_retry.yaml", []string{
			`testdata/bad_retry.yaml: step "zero_attempts": retry.max_attempts must be at least 1, got 0`,
			`testdata/bad_retry.yaml: step "zero_base": retry.backoff_base must be positive, got 0s`,
			`testdata/bad_retry.yaml: step "max_below_base": retry.backoff_max (1s) must not be less than retry.backoff_base (10s)`,
			`testdata/bad_retry.yaml: step "bad_duration": retry.backoff_base: invalid duration "fast"`,
		}},
		{"many_errors.yaml", []string{
			`testdata/many_errors.yaml: namespace "9demo" is invalid`,
			`testdata/many_errors.yaml: name is empty`,
			`testdata/many_errors.yaml: version is empty`,
			`testdata/many_errors.yaml: step "a": handler.callable is empty`,
			`testdata/many_errors.yaml: step "a": unknown dependency "nope"`,
			`testdata/many_errors.yaml: step #2: name is empty`,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			tpl, err := LoadFile(filepath.Join("testdata", tc.file))
			if err == nil {
				t.Fatalf("LoadFile succeeded: %+v", tpl)
			}
			if tpl != nil {
				t.Errorf("LoadFile returned a template with an error")
			}
			lines := strings.Split(err.Error(), "\n")
			for _, want := range tc.want {
				found := false
				for _, l := range lines {
					found = found || strings.HasPrefix(l, want)
				}
				if !found {
					t.Errorf("error lacks %q; got:\n%v", want, err)
				}
			}
			if len(lines) != len(tc.want) {
				t.Errorf("got %d errors, want %d:\n%v", len(lines), len(tc.want), err)
			}
		})
	}
}

func TestCycleReporting(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{
			name: "two step",
			yaml: "  - {name: x, handler: {callable: demo.a}, dependencies: [y]}\n" +
				"  - {name: y, handler: {callable: demo.a}, dependencies: [x]}\n",
			want: []string{`step "x": cycle: x -> y -> x`},
		},
		{
			name: "cycle below a root",
			yaml: "  - {name: r, handler: {callable: demo.a}}\n" +
				"  - {name: p, handler: {callable: demo.a}, dependencies: [r, q]}\n" +
				"  - {name: q, handler: {callable: demo.a}, dependencies: [p]}\n",
			want: []string{`step "p": cycle: p -> q -> p`},
		},
		{
			name: "two disjoint cycles",
			yaml: "  - {name: a, handler: {callable: demo.a}, dependencies: [b]}\n" +
				"  - {name: b, handler: {callable: demo.a}, dependencies: [a]}\n" +
				"  - {name: c, handler: {callable: demo.a}, dependencies: [d]}\n" +
				"  - {name: d, handler: {callable: demo.a}, dependencies: [c]}\n",
			want: []string{`step "a": cycle: a -> b -> a`, `step "c": cycle: c -> d -> c`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := "namespace: demo\nname: c\nversion: '1'\nsteps:\n" + tc.yaml
			_, err := Parse("c.yaml", []byte(src))
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			var want []string
			for _, w := range tc.want {
				want = append(want, "c.yaml: "+w)
			}
			if got := strings.Split(err.Error(), "\n"); !reflect.DeepEqual(got, want) {
				t.Errorf("errors = %q, want %q", got, want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	const head = "namespace: demo\nname: x\nversion: '1'\n"
	tests := []struct {
		name string
		src  string
		want string
	}{
		{"empty", "", "p.yaml: empty template"},
		{"comment only", "# nothing\n", "p.yaml: empty template"},
		{"two documents", head + "steps: [{name: a, handler: {callable: demo.a}}]\n---\n" + head, "p.yaml: more than one YAML document"},
		{"syntax", "namespace: [demo\n", "p.yaml: yaml: "},
		{"not a mapping", "- a\n- b\n", "p.yaml: line 1: cannot unmarshal !!seq into template"},
		{"unknown top-level field", head + "stepz: []\n", `p.yaml: line 4: unknown field "stepz"`},
		{"unknown retry field", head + "steps:\n  - name: a\n    handler: {callable: demo.a}\n    retry: {max_attempt: 2}\n",
			`p.yaml: step "a": line 7: unknown field "max_attempt"`},
		{"unknown handler field", head + "steps:\n  - name: a\n    handler: {callable: demo.a, init: {}}\n",
			`p.yaml: step "a": line 6: unknown field "init"`},
		{"wrong type", head + "steps:\n  - name: a\n    handler: {callable: demo.a}\n    retry: {max_attempts: lots}\n",
			"p.yaml: step \"a\": line 7: cannot unmarshal !!str `lots` into int"},
		{"duration without unit", head + "steps:\n  - name: a\n    handler: {callable: demo.a}\n    retry: {backoff_max: 30}\n",
			`p.yaml: step "a": retry.backoff_max: invalid duration "30"`},
		{"no steps", head, "p.yaml: no steps"},
		{"bad name", "namespace: demo\nname: My Flow\nversion: '1'\nsteps: [{name: a, handler: {callable: demo.a}}]\n", `p.yaml: name "My Flow" is invalid`},
		{"version with space", "namespace: demo\nname: x\nversion: 1 0\nsteps: [{name: a, handler: {callable: demo.a}}]\n", `p.yaml: version "1 0" must not contain white space`},
		{"duplicate dependency", head + "steps:\n  - {name: a, handler: {callable: demo.a}}\n  - {name: b, handler: {callable: demo.a}, dependencies: [a, a]}\n",
			`p.yaml: step "b": dependency "a" is listed more than once`},
		{"initialization not JSON", head + "steps:\n  - name: a\n    handler: {callable: demo.a, initialization: {x: .nan}}\n",
			`p.yaml: step "a": handler.initialization cannot be encoded as JSON`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tpl, err := Parse("p.yaml", []byte(tc.src))
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", tpl)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestInitializationNormalized(t *testing.T) {
	tpl := mustParse(t, `
namespace: demo
name: x
version: "1"
steps:
  - name: a
    handler:
      callable: demo.a
      initialization:
        url: https://example.com
        limits: {1: one, 2: [a, {3: three}]}
`)
	s, _ := tpl.Step("a")
	want := map[string]any{
		"url": "https://example.com",
		"limits": map[string]any{
			"1": "one",
			"2": []any{"a", map[string]any{"3": "three"}},
		},
	}
	if !reflect.DeepEqual(s.Handler.Initialization, want) {
		t.Errorf("Initialization = %#v, want %#v", s.Handler.Initialization, want)
	}
}

func TestVersionKeptVerbatim(t *testing.T) {
	// YAML would read 1.10 as the float 1.1; the version must stay as written.
	tpl := mustParse(t, "namespace: demo\nname: x\nversion: 1.10\nsteps: [{name: a, handler: {callable: demo.a}}]\n")
	if tpl.Version != "1.10" {
		t.Errorf("Version = %q, want %q", tpl.Version, "1.10")
	}
}

func writeFile(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLoadDirRejectsDuplicatesAndReportsEveryFile(t *testing.T) {
	dir := t.TempDir()
	good := "namespace: demo\nname: dup\nversion: 1.0.0\nsteps: [{name: a, handler: {callable: demo.a}}]\n"
	writeFile(t, dir, "a.yaml", good)
	writeFile(t, dir, "b.yml", good)
	writeFile(t, dir, "c.yaml", "namespace: demo\nname: bad\nversion: 1.0.0\nsteps: [{name: a, handler: {callable: demo.a}, dependencies: [zz]}]\n")
	writeFile(t, dir, "notes.txt", "not a template")
	if err := os.Mkdir(filepath.Join(dir, "sub.yaml"), 0o755); err != nil {
		t.Fatal(err)
	}

	tpls, err := LoadDir(dir)
	if err == nil {
		t.Fatalf("LoadDir succeeded with %d templates", len(tpls))
	}
	if tpls != nil {
		t.Errorf("LoadDir returned templates despite errors")
	}
	want := []string{
		filepath.Join(dir, "b.yml") + ": template demo/dup@1.0.0 is already defined in " + filepath.Join(dir, "a.yaml"),
		filepath.Join(dir, "c.yaml") + `: step "a": unknown dependency "zz"`,
	}
	if got := strings.Split(err.Error(), "\n"); !reflect.DeepEqual(got, want) {
		t.Errorf("errors =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestLoadDirEmptyAndMissing(t *testing.T) {
	tpls, err := LoadDir(t.TempDir())
	if err != nil || len(tpls) != 0 {
		t.Errorf("empty dir: got %d templates, err %v", len(tpls), err)
	}
	_, err = LoadDir(filepath.Join(t.TempDir(), "missing"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing dir: err = %v, want ErrNotExist", err)
	}
	_, err = LoadFile(filepath.Join(t.TempDir(), "missing.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: err = %v, want ErrNotExist", err)
	}
}

func TestGraph(t *testing.T) {
	tests := []struct {
		file     string
		roots    []string
		children map[string][]string
		topo     []string
	}{
		{
			file:  "diamond.yaml",
			roots: []string{"start"},
			children: map[string][]string{
				"start": {"left", "right"},
				"left":  {"join"},
				"right": {"join"},
				"join":  nil,
				"nope":  nil,
			},
			topo: []string{"start", "left", "right", "join"},
		},
		{
			file:  "tree.yaml",
			roots: []string{"root"},
			children: map[string][]string{
				"root":  {"b1", "b2"},
				"b1":    {"l1", "l2"},
				"b2":    {"l3", "l4"},
				"l1":    {"merge"},
				"l4":    {"merge"},
				"merge": nil,
			},
			topo: []string{"root", "b1", "b2", "l1", "l2", "l3", "l4", "merge"},
		},
		{
			file:  "mixed.yaml",
			roots: []string{"ingest"},
			children: map[string][]string{
				"ingest":    {"normalize", "audit"},
				"normalize": {"enrich", "score"},
				"score":     {"rank"},
				"audit":     {"report"},
				"enrich":    {"report"},
				"rank":      {"report"},
			},
			topo: []string{"ingest", "normalize", "enrich", "score", "audit", "rank", "report"},
		},
		{
			file:     "linear.yaml",
			roots:    []string{"start"},
			children: map[string][]string{"start": {"double"}, "double": {"add_ten"}, "add_ten": {"finish"}},
			topo:     []string{"start", "double", "add_ten", "finish"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			tpl, err := LoadFile(filepath.Join(fixtureDir, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if got := names(tpl.Roots()); !reflect.DeepEqual(got, tc.roots) {
				t.Errorf("Roots() = %v, want %v", got, tc.roots)
			}
			for parent, want := range tc.children {
				if got := tpl.Children(parent); !reflect.DeepEqual(names(got), append([]string{}, want...)) {
					t.Errorf("Children(%q) = %v, want %v", parent, names(got), want)
				}
			}
			if got := names(tpl.TopologicalOrder()); !reflect.DeepEqual(got, tc.topo) {
				t.Errorf("TopologicalOrder() = %v, want %v", got, tc.topo)
			}
		})
	}
}

func TestTopologicalOrderStable(t *testing.T) {
	// Declared out of dependency order on purpose: c needs b needs a, while d
	// is independent. Ready steps are taken in declaration order, so c (index
	// 0) overtakes d (index 3) as soon as it becomes ready.
	tpl := mustParse(t, `
namespace: demo
name: x
version: "1"
steps:
  - {name: c, handler: {callable: demo.a}, dependencies: [b]}
  - {name: a, handler: {callable: demo.a}}
  - {name: b, handler: {callable: demo.a}, dependencies: [a]}
  - {name: d, handler: {callable: demo.a}}
`)
	want := []string{"a", "b", "c", "d"}
	for range 3 { // deterministic across calls
		if got := names(tpl.TopologicalOrder()); !reflect.DeepEqual(got, want) {
			t.Fatalf("TopologicalOrder() = %v, want %v", got, want)
		}
	}
	if got := names(tpl.Roots()); !reflect.DeepEqual(got, []string{"a", "d"}) {
		t.Errorf("Roots() = %v", got)
	}
}

func TestStepLookup(t *testing.T) {
	tpl, err := LoadFile(filepath.Join(fixtureDir, "diamond.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s, ok := tpl.Step("left")
	if !ok || s.Name != "left" || s.Handler.Callable != "demo.square" || !reflect.DeepEqual(s.Dependencies, []string{"start"}) {
		t.Errorf("Step(left) = %+v, %v", s, ok)
	}
	if s != &tpl.Steps[1] {
		t.Errorf("Step should point into Steps")
	}
	if s, ok := tpl.Step("missing"); ok || s != nil {
		t.Errorf("Step(missing) = %v, %v", s, ok)
	}
}

func TestValidateHandBuilt(t *testing.T) {
	tpl := &Template{
		Namespace: "demo", Name: "built", Version: "1",
		Steps: []Step{
			{Name: "a", Handler: Handler{Callable: "demo.a"}, Retry: RetryDefault()},
			{Name: "b", Handler: Handler{Callable: "demo.b"}, Dependencies: []string{"a"}, Retry: Retry{MaxAttempts: 1, BackoffBase: time.Second}},
		},
	}
	err := tpl.Validate()
	want := `template: step "b": retry.backoff_max (0s) must not be less than retry.backoff_base (1s)`
	if err == nil || err.Error() != want {
		t.Fatalf("Validate() = %v, want %q", err, want)
	}
	tpl.Steps[1].Retry = Retry{MaxAttempts: 2, BackoffBase: time.Second, BackoffMax: 100000 * time.Hour}
	want = `template: step "b": retry.backoff_max (100000h0m0s) is above 168h0m0s`
	if err := tpl.Validate(); err == nil || err.Error() != want {
		t.Fatalf("Validate() = %v, want %q", err, want)
	}
	tpl.Steps[1].Retry = RetryDefault()
	if err := tpl.Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
}

func dur(d time.Duration) *time.Duration { return &d }

func TestBackoff(t *testing.T) {
	r := Retry{Retryable: true, MaxAttempts: 10, BackoffBase: time.Second, BackoffMax: 10 * time.Second}
	fixed := func(v float64) func() float64 { return func() float64 { return v } }
	tests := []struct {
		name    string
		r       Retry
		attempt int
		hint    *time.Duration
		rnd     func() float64
		want    time.Duration
	}{
		{"attempt 1 no jitter", r, 1, nil, nil, time.Second},
		{"attempt 2 doubles", r, 2, nil, nil, 2 * time.Second},
		{"attempt 3", r, 3, nil, nil, 4 * time.Second},
		{"attempt 4", r, 4, nil, nil, 8 * time.Second},
		{"attempt 5 capped", r, 5, nil, nil, 10 * time.Second},
		{"huge attempt capped without overflow", r, 1000, nil, nil, 10 * time.Second},
		{"attempt 0 treated as first", r, 0, nil, nil, time.Second},
		{"jitter low end", r, 3, nil, fixed(0), 2 * time.Second},
		{"jitter middle", r, 3, nil, fixed(0.5), 3 * time.Second},
		{"jitter just below high end", r, 3, nil, fixed(0.999999), 4*time.Second - 2*time.Microsecond},
		{"jitter on the cap", r, 9, nil, fixed(0.5), 7500 * time.Millisecond},
		{"rnd out of range clamped", r, 1, nil, fixed(7), time.Second},
		{"hint used without jitter", r, 3, dur(1500 * time.Millisecond), fixed(0), 1500 * time.Millisecond},
		{"hint capped", r, 1, dur(time.Hour), fixed(0), 10 * time.Second},
		{"hint zero", r, 1, dur(0), nil, 0},
		{"negative hint", r, 1, dur(-time.Second), nil, 0},
		{"no cap on hand-built retry", Retry{BackoffBase: time.Second}, 11, nil, nil, 1024 * time.Second},
		{"huge attempt without cap saturates", Retry{BackoffBase: time.Second}, 100, nil, nil, time.Duration(math.MaxInt64)},
		{"retry.yaml flaky after attempt 1", Retry{true, 3, 50 * time.Millisecond, time.Second}, 1, nil, nil, 50 * time.Millisecond},
		{"retry.yaml flaky after attempt 2", Retry{true, 3, 50 * time.Millisecond, time.Second}, 2, nil, nil, 100 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.r.Backoff(tc.attempt, tc.hint, tc.rnd); got != tc.want {
				t.Errorf("Backoff(%d) = %v, want %v", tc.attempt, got, tc.want)
			}
		})
	}
}

func TestBackoffJitterRange(t *testing.T) {
	r := RetryDefault()
	// A deterministic sequence sweeping [0, 1) stands in for a random source.
	i := 0
	rnd := func() float64 { i++; return float64(i%100) / 100 }
	for attempt := 1; attempt <= 12; attempt++ {
		full := r.Backoff(attempt, nil, nil)
		if full > r.BackoffMax {
			t.Fatalf("attempt %d: %v over the cap", attempt, full)
		}
		if attempt > 1 {
			if prev := r.Backoff(attempt-1, nil, nil); full != min(2*prev, r.BackoffMax) {
				t.Errorf("attempt %d: %v is not double %v (capped)", attempt, full, prev)
			}
		}
		for range 100 {
			if got := r.Backoff(attempt, nil, rnd); got < full/2 || got > full {
				t.Fatalf("attempt %d: %v outside [%v, %v]", attempt, got, full/2, full)
			}
		}
	}
}

func TestFingerprint(t *testing.T) {
	base, err := LoadFile(filepath.Join(fixtureDir, "diamond.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	fp := base.Fingerprint()
	if len(fp) != 64 || strings.Trim(fp, "0123456789abcdef") != "" {
		t.Fatalf("Fingerprint() = %q, want 64 hex digits", fp)
	}

	data, err := os.ReadFile(filepath.Join(fixtureDir, "diamond.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// The same meaning written differently: block style, defaults spelled
	// out, other duration spellings, dependencies reordered, explicit strict.
	reformatted := `
namespace: demo
name: diamond
version: "1.0.0"
identity_strategy: strict
steps:
  - name: start
    handler:
      callable: demo.square
      initialization: {}
    dependencies: []
    retry:
      retryable: true
      max_attempts: 3
      backoff_base: 1000ms
      backoff_max: 300s
  - name: left
    handler: {callable: demo.square}
    dependencies: [start]
  - name: right
    handler: {callable: demo.square}
    dependencies: [start]
  - name: join
    handler: {callable: demo.sum}
    dependencies: [right, left]
    retry: {retryable: false, max_attempts: 1, backoff_base: 1s}
`
	tests := []struct {
		name string
		src  string
		same bool
	}{
		{"same bytes from another file", string(data), true},
		{"same meaning reformatted", reformatted, true},
		{"callable changed", strings.Replace(string(data), "callable: demo.sum", "callable: demo.product", 1), false},
		{"retry changed", strings.Replace(string(data), "max_attempts: 1", "max_attempts: 2", 1), false},
		{"dependency removed", strings.Replace(string(data), "[left, right]", "[left]", 1), false},
		{"step renamed", strings.ReplaceAll(string(data), "right", "other"), false},
		{"initialization added", strings.Replace(string(data), "handler: {callable: demo.sum}", "handler: {callable: demo.sum, initialization: {k: 1}}", 1), false},
		{"identity strategy changed", strings.Replace(string(data), "version: 1.0.0", "version: 1.0.0\nidentity_strategy: always_unique", 1), false},
		{"version changed", strings.Replace(string(data), "version: 1.0.0", "version: 1.0.1", 1), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			other, err := Parse(filepath.Join(t.TempDir(), "copy.yaml"), []byte(tc.src))
			if err != nil {
				t.Fatal(err)
			}
			if got := other.Fingerprint() == fp; got != tc.same {
				t.Errorf("same fingerprint = %v, want %v", got, tc.same)
			}
		})
	}
}
