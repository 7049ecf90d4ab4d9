package config

import (
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
