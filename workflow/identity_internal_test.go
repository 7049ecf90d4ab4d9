package workflow

import (
	"context"
	"strings"
	"testing"

	"github.com/tasker-systems/consumer/internal/testdb"
	"github.com/tasker-systems/consumer/messages"
	"github.com/tasker-systems/consumer/template"
)

func TestCanonicalJSON(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`{"b":2,"a":1}`, `{"a":1,"b":2}`},
		{` { "a" : { "z" : [ 3 , 1 ], "y" : null } } `, `{"a":{"y":null,"z":[3,1]}}`},
		{`{"n": 1.50, "big": 12345678901234567890}`, `{"big":12345678901234567890,"n":1.50}`},
		{`{"s": "<&>é"}`, `{"s":"<&>é"}`},
	} {
		got, err := canonicalJSON([]byte(c.in))
		if err != nil || string(got) != c.want {
			t.Errorf("canonicalJSON(%s) = %s, %v; want %s", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{``, `{`, `{} {}`} {
		if _, err := canonicalJSON([]byte(bad)); err == nil {
			t.Errorf("canonicalJSON(%q): no error", bad)
		}
	}
}

func TestTaskIdentity(t *testing.T) {
	strict := &template.Template{Namespace: "demo", Name: "x", Version: "1"}
	other := &template.Template{Namespace: "demo", Name: "y", Version: "1"}
	id := func(tm *template.Template, ctx, key string) string {
		t.Helper()
		h, err := taskIdentity(tm, messages.TaskRequestSpec{Context: []byte(ctx), IdempotencyKey: key})
		if err != nil {
			t.Fatal(err)
		}
		if h == nil {
			return ""
		}
		return *h
	}
	if id(strict, `{"a":1,"b":2}`, "") != id(strict, `{"b":2, "a":1}`, "") {
		t.Error("key order changes the identity")
	}
	if id(strict, `{"a":1}`, "") == id(other, `{"a":1}`, "") {
		t.Error("the template is not part of the identity")
	}
	if id(strict, `{"a":1}`, "k") != id(strict, `{"a":2}`, "k") {
		t.Error("the idempotency key is not the identity")
	}
	if id(strict, `{"a":1}`, "k") == id(strict, `{"a":1}`, "") {
		t.Error("key and context identities collide")
	}
	unique := &template.Template{Namespace: "demo", Name: "u", Version: "1", IdentityStrategy: template.IdentityAlwaysUnique}
	if id(unique, `{}`, "") != "" {
		t.Error("always_unique has an identity")
	}
}

func TestDefinitionRoundTrip(t *testing.T) {
	tmpls, err := template.LoadDir("../testdata/templates")
	if err != nil {
		t.Fatal(err)
	}
	for _, tm := range tmpls {
		raw, err := tm.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		back, err := decodeDefinition(raw, tm.Fingerprint(), tm.Source)
		if err != nil {
			t.Fatalf("%s: %v", tm.Key(), err)
		}
		if back.Key() != tm.Key() || len(back.Steps) != len(tm.Steps) || back.Source != tm.Source {
			t.Fatalf("%s: decoded %s from %q with %d steps", tm.Key(), back.Key(), back.Source, len(back.Steps))
		}
	}
	raw, err := tmpls[0].MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decodeDefinition(raw, "nope", ""); err == nil || !strings.Contains(err.Error(), "does not match its fingerprint") {
		t.Fatalf("fingerprint mismatch: %v", err)
	}
	if _, err := decodeDefinition([]byte(`{"namespace":"demo","steps":[]}`), "nope", ""); err == nil {
		t.Fatal("invalid definition decoded")
	}
}

// A registry row whose fingerprint was computed another way (by an earlier release) but whose
// definition is the template being registered gets its fingerprint rewritten; a row holding a
// different template is still refused.
func TestRegisterUpgradesFingerprint(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.New(t, 4)
	tmpls, err := template.LoadDir("../testdata/templates")
	if err != nil {
		t.Fatal(err)
	}
	if err := Register(ctx, db.Pool, tmpls, nil); err != nil {
		t.Fatal(err)
	}
	tm := tmpls[0]
	stored := func() (fp string) {
		t.Helper()
		if err := db.Pool.QueryRow(ctx, `SELECT fingerprint FROM tasker.workflow_templates
			WHERE namespace = $1 AND name = $2 AND version = $3`, tm.Namespace, tm.Name, tm.Version).Scan(&fp); err != nil {
			t.Fatal(err)
		}
		return fp
	}
	setFingerprint := func(fp string) {
		t.Helper()
		if _, err := db.Pool.Exec(ctx, `UPDATE tasker.workflow_templates SET fingerprint = $4
			WHERE namespace = $1 AND name = $2 AND version = $3`, tm.Namespace, tm.Name, tm.Version, fp); err != nil {
			t.Fatal(err)
		}
	}

	setFingerprint("computed-another-way")
	if err := Register(ctx, db.Pool, []*template.Template{tm}, nil); err != nil {
		t.Fatalf("register over an old-style fingerprint: %v", err)
	}
	if got := stored(); got != tm.Fingerprint() {
		t.Fatalf("stored fingerprint %q, want %q", got, tm.Fingerprint())
	}

	// The stored definition is another template: refused, and the row is left alone.
	other := *tm
	other.Steps = append([]template.Step(nil), tm.Steps...)
	other.Steps[0].Handler.Callable += "_changed"
	if other.Fingerprint() == tm.Fingerprint() {
		t.Fatal("the changed template has the same fingerprint")
	}
	setFingerprint("computed-another-way")
	err = Register(ctx, db.Pool, []*template.Template{&other}, nil)
	if err == nil || !strings.Contains(err.Error(), "a different template is already registered") {
		t.Fatalf("changed template over an old-style fingerprint: %v", err)
	}
	if got := stored(); got != "computed-another-way" {
		t.Fatalf("stored fingerprint rewritten to %q by a refused registration", got)
	}
}
