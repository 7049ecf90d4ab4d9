package template

import (
	"strings"
	"testing"
)

// The JSON document is the YAML file's shape with every default spelled out; it is what the
// registry stores, so its form is pinned here.
func TestMarshalJSONWritesTheDocument(t *testing.T) {
	tpl := mustParse(t, "namespace: demo\nname: x\nversion: '1'\nsteps:\n"+
		"  - name: a\n    handler: {callable: demo.a}\n"+
		"  - name: b\n    handler: {callable: demo.b, initialization: {addend: 10}}\n    dependencies: [a]\n    retry: {retryable: false, backoff_max: 90s}\n")
	got, err := tpl.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"namespace":"demo","name":"x","version":"1","identity_strategy":"strict","steps":[` +
		`{"name":"a","handler":{"callable":"demo.a","initialization":{}},"dependencies":[],"retry":{"retryable":true,"max_attempts":3,"backoff_base":"1s","backoff_max":"5m0s"}},` +
		`{"name":"b","handler":{"callable":"demo.b","initialization":{"addend":10}},"dependencies":["a"],"retry":{"retryable":false,"max_attempts":3,"backoff_base":"1s","backoff_max":"1m30s"}}]}`
	if string(got) != want {
		t.Errorf("MarshalJSON\n got %s\nwant %s", got, want)
	}
}

func TestParseJSONReadsWhatMarshalJSONWrote(t *testing.T) {
	tpls, err := LoadDir(fixtureDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tpl := range tpls {
		raw, err := tpl.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseJSON("stored", raw)
		if err != nil {
			t.Fatalf("%s: ParseJSON: %v", tpl.Key(), err)
		}
		again, err := back.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if string(again) != string(raw) || back.Fingerprint() != tpl.Fingerprint() || back.Source != "stored" {
			t.Errorf("%s: round trip changed the template:\n%s\n%s", tpl.Key(), raw, again)
		}
		// One shape: the stored JSON is also a template file (YAML reads JSON).
		asFile, err := Parse("stored.json", raw)
		if err != nil {
			t.Fatalf("%s: the JSON document is not a valid template file: %v", tpl.Key(), err)
		}
		if asFile.Fingerprint() != tpl.Fingerprint() {
			t.Errorf("%s: the JSON document read as a file is a different template", tpl.Key())
		}
	}
}

func TestParseJSONKeepsNumbersExact(t *testing.T) {
	raw := `{"namespace":"demo","name":"x","version":"1","steps":[{"name":"a","handler":{"callable":"demo.a","initialization":{"big":12345678901234567890123}}}]}`
	tpl, err := ParseJSON("stored", []byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	out, _ := tpl.MarshalJSON()
	if !strings.Contains(string(out), `"big":12345678901234567890123`) {
		t.Errorf("initialization number changed: %s", out)
	}
	if r := tpl.Steps[0].Retry; r != RetryDefault() {
		t.Errorf("missing retry block: %+v, want the defaults", r)
	}
}

func TestParseJSONRejects(t *testing.T) {
	for name, c := range map[string]struct{ raw, want string }{
		"unknown field":  {`{"namespace":"demo","name":"x","version":"1","stepz":[]}`, `unknown field "stepz"`},
		"invalid":        {`{"namespace":"Demo","name":"x","version":"1","steps":[{"name":"a","handler":{"callable":"demo.a"}}]}`, `stored: namespace "Demo" is invalid`},
		"bad duration":   {`{"namespace":"demo","name":"x","version":"1","steps":[{"name":"a","handler":{"callable":"demo.a"},"retry":{"backoff_base":"soon"}}]}`, `stored: step "a": retry.backoff_base: invalid duration "soon"`},
		"not a document": {`[1]`, "stored: json: cannot unmarshal array"},
	} {
		_, err := ParseJSON("stored", []byte(c.raw))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: ParseJSON error %v, want it to contain %q", name, err, c.want)
		}
	}
}
