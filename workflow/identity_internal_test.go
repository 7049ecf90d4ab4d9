package workflow

import (
	"testing"

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
		raw, err := encodeDefinition(tm)
		if err != nil {
			t.Fatal(err)
		}
		back, err := decodeDefinition(raw, tm.Fingerprint(), tm.Source)
		if err != nil {
			t.Fatalf("%s: %v", tm.Key(), err)
		}
		if back.Key() != tm.Key() || len(back.Steps) != len(tm.Steps) {
			t.Fatalf("%s: decoded %s with %d steps", tm.Key(), back.Key(), len(back.Steps))
		}
	}
	if _, err := decodeDefinition([]byte(`{"namespace":"demo","steps":[]}`), "nope", ""); err == nil {
		t.Fatal("fingerprint mismatch not detected")
	}
}
