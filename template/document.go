package template

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// document is the one written shape of a template. A YAML file is decoded into it, the
// registry stores it as JSON (Template.MarshalJSON, ParseJSON), and the fingerprint hashes it.
// Optional fields whose zero value is meaningful are pointers, so that "not written" (use the
// default) can be told apart from an explicit false or 0 (honour it, or reject it); the
// document a Template writes spells every default out.
type document struct {
	Namespace        string         `yaml:"namespace" json:"namespace"`
	Name             string         `yaml:"name" json:"name"`
	Version          string         `yaml:"version" json:"version"`
	IdentityStrategy string         `yaml:"identity_strategy" json:"identity_strategy"`
	Steps            []stepDocument `yaml:"steps" json:"steps"`
}

type stepDocument struct {
	Name         string          `yaml:"name" json:"name"`
	Handler      handlerDocument `yaml:"handler" json:"handler"`
	Dependencies []string        `yaml:"dependencies" json:"dependencies"`
	Retry        *retryDocument  `yaml:"retry" json:"retry"`
}

type handlerDocument struct {
	Callable       string         `yaml:"callable" json:"callable"`
	Initialization map[string]any `yaml:"initialization" json:"initialization"`
}

type retryDocument struct {
	Retryable   *bool   `yaml:"retryable" json:"retryable"`
	MaxAttempts *int    `yaml:"max_attempts" json:"max_attempts"`
	BackoffBase *string `yaml:"backoff_base" json:"backoff_base"`
	BackoffMax  *string `yaml:"backoff_max" json:"backoff_max"`
}

// document returns t as written with every default explicit: the identity strategy, each
// step's retry policy (durations in Go syntax), and empty rather than absent dependencies and
// initialization, which mean the same to a worker.
func (t *Template) document() document {
	d := document{
		Namespace:        t.Namespace,
		Name:             t.Name,
		Version:          t.Version,
		IdentityStrategy: string(t.Strategy()),
		Steps:            make([]stepDocument, len(t.Steps)),
	}
	for i, s := range t.Steps {
		base, maxDelay := s.Retry.BackoffBase.String(), s.Retry.BackoffMax.String()
		init, deps := s.Handler.Initialization, s.Dependencies
		if init == nil {
			init = map[string]any{}
		}
		if deps == nil {
			deps = []string{}
		}
		d.Steps[i] = stepDocument{
			Name:         s.Name,
			Handler:      handlerDocument{Callable: s.Handler.Callable, Initialization: init},
			Dependencies: deps,
			Retry: &retryDocument{
				Retryable:   &s.Retry.Retryable,
				MaxAttempts: &s.Retry.MaxAttempts,
				BackoffBase: &base,
				BackoffMax:  &maxDelay,
			},
		}
	}
	return d
}

// template converts a decoded document, applying the defaults. It returns the conversion
// problems (bad durations, initialization JSON cannot carry), each naming its step; the caller
// validates the result.
func (d document) template(source string) (*Template, []error) {
	label := sourceLabel(source)
	t := &Template{
		Namespace:        d.Namespace,
		Name:             d.Name,
		Version:          d.Version,
		IdentityStrategy: cmp.Or(IdentityStrategy(d.IdentityStrategy), IdentityStrategyDefault),
		Source:           source,
	}
	var errs []error
	for i, sd := range d.Steps {
		s, stepErrs := sd.step()
		for _, err := range stepErrs {
			errs = append(errs, fmt.Errorf("%s: %s: %w", label, stepLabel(i, sd.Name), err))
		}
		t.Steps = append(t.Steps, s)
	}
	return t, errs
}

func (sd stepDocument) step() (Step, []error) {
	var errs []error
	s := Step{
		Name:         sd.Name,
		Handler:      Handler{Callable: sd.Handler.Callable},
		Dependencies: sd.Dependencies,
		Retry:        RetryDefault(),
	}
	if sd.Handler.Initialization != nil {
		init, err := normalizeInitialization(sd.Handler.Initialization)
		if err != nil {
			errs = append(errs, err)
		}
		s.Handler.Initialization = init
	}
	if r := sd.Retry; r != nil {
		s.Retry.Retryable = orDefault(r.Retryable, RetryableDefault)
		s.Retry.MaxAttempts = orDefault(r.MaxAttempts, MaxAttemptsDefault)
		for _, f := range []struct {
			field string
			text  *string
			to    *time.Duration
		}{{"retry.backoff_base", r.BackoffBase, &s.Retry.BackoffBase}, {"retry.backoff_max", r.BackoffMax, &s.Retry.BackoffMax}} {
			if f.text == nil {
				continue
			}
			d, err := parseDuration(f.field, *f.text)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			*f.to = d
		}
	}
	return s, errs
}

// orDefault is the value of an optional document field: what was written, else the default.
func orDefault[T any](written *T, def T) T {
	if written == nil {
		return def
	}
	return *written
}

func parseDuration(field, v string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil {
		return 0, fmt.Errorf("%s: invalid duration %q (use Go syntax such as \"250ms\", \"1s\", \"5m\")", field, v)
	}
	return d, nil
}

// normalizeInitialization makes the handler's initialization representable as JSON, because
// it travels to workers inside every step dispatch. YAML allows non-string keys (for example
// `1: x`), which become strings here; values JSON cannot carry (such as .nan or .inf) are
// rejected now rather than when the first dispatch fails to encode.
func normalizeInitialization(m map[string]any) (map[string]any, error) {
	out := normalizeValue(m).(map[string]any)
	if _, err := json.Marshal(out); err != nil {
		return out, fmt.Errorf("handler.initialization cannot be encoded as JSON: %w", err)
	}
	return out, nil
}

func normalizeValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = normalizeValue(e)
		}
		return out
	case map[any]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[fmt.Sprint(k)] = normalizeValue(e)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = normalizeValue(e)
		}
		return out
	default:
		return v
	}
}

// MarshalJSON writes the template as its JSON document (the YAML file's shape, every default
// spelled out); ParseJSON reads it back. Source is not part of it.
func (t *Template) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal(t.document())
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", t.Key(), err)
	}
	return b, nil
}

// ParseJSON decodes a template from its JSON document, applies the defaults and validates it,
// as Parse does for YAML. Numbers in handler initializations keep their exact text. source
// names the input in error messages and is stored in Template.Source.
func ParseJSON(source string, data []byte) (*Template, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	var d document
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("%s: %w", sourceLabel(source), err)
	}
	t, errs := d.template(source)
	if err := t.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return t, nil
}

// Fingerprint returns a hex SHA-256 of the template's canonical document. Two templates have
// the same fingerprint when they mean the same thing, however their YAML was written: defaults
// are explicit, durations are normalized, Source is excluded and the order of a step's
// dependencies is ignored. Step order is kept because it breaks ties in dispatch order.
//
// A registry compares fingerprints to tell a re-registration of the same template from a
// different template published under an existing version.
func (t *Template) Fingerprint() string {
	sum := sha256.Sum256(t.canonical())
	return hex.EncodeToString(sum[:])
}

// canonical is the document with each step's dependencies sorted, as JSON; encoding/json
// sorts map keys, which makes the initializations canonical too.
func (t *Template) canonical() []byte {
	d := t.document()
	for i := range d.Steps {
		d.Steps[i].Dependencies = slices.Sorted(slices.Values(d.Steps[i].Dependencies))
		if d.Steps[i].Dependencies == nil {
			d.Steps[i].Dependencies = []string{}
		}
	}
	b, err := json.Marshal(d)
	if err != nil {
		// Only reachable for a hand-built template whose initialization JSON cannot represent
		// (Parse rejects those). fmt prints maps in sorted key order, so the fallback is still
		// deterministic.
		return fmt.Appendf(nil, "unencodable:%#v", d)
	}
	return b
}
