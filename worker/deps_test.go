package worker_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The SDK's dependency set stays one a worker author accepts: none of the consumer's
// operational libraries (Prometheus, the migration library, the configuration loader) and none
// of its implementation packages beyond the intake the SDK runs on.
func TestDependencies(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	out, err := exec.Command(goBin, "list", "-deps", "github.com/tasker-systems/consumer/worker").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const self = "github.com/tasker-systems/consumer/"
	allowed := map[string]bool{
		"worker": true, "messages": true, "pgmq": true, "tasker": true,
		"listener": true, "poller": true, "commands": true,
	}
	for dep := range strings.FieldsSeq(string(out)) {
		for _, banned := range []string{"prometheus", "jackc/tern", "go-envconfig", "yaml"} {
			if strings.Contains(dep, banned) {
				t.Errorf("the worker SDK depends on %s", dep)
			}
		}
		if rest, ok := strings.CutPrefix(dep, self); ok && !allowed[rest] && !strings.HasPrefix(rest, "internal/") {
			t.Errorf("the worker SDK depends on the consumer's package %s", rest)
		}
	}
}
