package config

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/sethvargo/go-envconfig"
)

// EnvError rewrites a go-envconfig error, which names the Go field ("VisibilityTimeout: …"), so
// that it names the environment variable instead ("CONSUMER_VISIBILITY_TIMEOUT: …"): that is
// what the operator set. target is the pointer to the struct that was processed.
func EnvError(err error, target any) error {
	msg := err.Error()
	t := reflect.TypeOf(target)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	for i := range t.NumField() {
		f := t.Field(i)
		tag, ok := f.Tag.Lookup("env")
		if !ok || !strings.HasPrefix(msg, f.Name+": ") {
			continue
		}
		name := strings.TrimSpace(strings.Split(tag, ",")[0])
		if errors.Is(err, envconfig.ErrMissingRequired) {
			return fmt.Errorf("%s: required", name)
		}
		return fmt.Errorf("%s: %s", name, strings.TrimPrefix(msg, f.Name+": "))
	}
	return err
}

// Process fills target, a pointer to a zero struct whose fields carry env tags, through lookuper.
// A variable that is not set takes the value of the same field of defaults, a struct of the
// target's type whose zero fields mean "no default": a program states its defaults once, as
// XxxDefault constants in such a struct. A variable that is set wins even when it is empty. An
// error names the variable (see EnvError).
func Process(ctx context.Context, target, defaults any, lookuper envconfig.Lookuper) error {
	byName, err := defaultValues(target, defaults)
	if err != nil {
		return err
	}
	l := envconfig.MultiLookuper(lookuper, envconfig.MapLookuper(byName))
	if err := envconfig.ProcessWith(ctx, &envconfig.Config{Target: target, Lookuper: l}); err != nil {
		return EnvError(err, target)
	}
	return nil
}

// defaultValues returns, by variable name, the text of every non-zero field of defaults, as
// envconfig parses it back (durations in Go syntax).
func defaultValues(target, defaults any) (map[string]string, error) {
	v := reflect.ValueOf(defaults)
	if t := reflect.TypeOf(target); t.Kind() != reflect.Pointer || t.Elem() != v.Type() || v.Kind() != reflect.Struct {
		return nil, fmt.Errorf("config: defaults of type %T do not fit target %T", defaults, target)
	}
	out := map[string]string{}
	for i := range v.NumField() {
		f := v.Type().Field(i)
		tag, ok := f.Tag.Lookup("env")
		if !ok || v.Field(i).IsZero() {
			continue
		}
		out[strings.TrimSpace(strings.Split(tag, ",")[0])] = fmt.Sprint(v.Field(i).Interface())
	}
	return out, nil
}
