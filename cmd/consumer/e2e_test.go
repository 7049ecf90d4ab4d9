package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tasker-systems/consumer/internal/proc"
	"github.com/tasker-systems/consumer/internal/testdb"
	"github.com/tasker-systems/consumer/template"
	"github.com/tasker-systems/consumer/workflow"
)

// TestEndToEndWithRealProcesses runs the consumer binary and the example worker as processes and
// drives them with the CLI, as an operator would.
func TestEndToEndWithRealProcesses(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	db := testdb.New(t, 4)
	dir := t.TempDir()
	bins, err := proc.Build(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	root, err := proc.ModuleRoot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"DATABASE_URL=" + db.URL, "LOG_LEVEL=info"}
	consumer, worker := startConsumerAndWorker(ctx, t, bins, root, dir, env)

	cli := func(args ...string) (int, string) { return runCLI(ctx, bins.Consumer, env, args...) }
	submit := func(name, taskContext string, extra ...string) (int, string) {
		return cli(append([]string{"submit", "--namespace", "demo", "--name", name, "--version", "1.0.0", "--context", taskContext, "--wait", "--timeout", "60s"}, extra...)...)
	}
	taskRE := regexp.MustCompile(`task ([0-9a-f-]{36}) created`)

	// Results for n=6 come from each template's header comment.
	for name, want := range map[string]string{"linear": "82", "diamond": "2592", "tree": "5441", "mixed": "20848"} {
		code, out := submit(name, `{"n":6}`)
		if code != 0 || !strings.Contains(out, "state=complete") || !regexp.MustCompile(`(?m)\s`+want+`\s`).MatchString(out) {
			t.Fatalf("submit %s: exit %d\n%s\nconsumer log:\n%s\nworker log:\n%s", name, code, out, consumer.Log(), worker.Log())
		}
		m := taskRE.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("submit %s printed no task uuid:\n%s", name, out)
		}
		code, status := cli("status", m[1])
		if code != 0 || !strings.Contains(status, "state=complete") || !strings.Contains(status, want) || !strings.Contains(status, "STEP") {
			t.Fatalf("status %s: exit %d\n%s", m[1], code, status)
		}
	}

	// The retry template fails twice, then completes on attempt 3.
	if code, out := submit("retry", `{"n":6}`); code != 0 || !regexp.MustCompile(`flaky\s+complete\s+3/3`).MatchString(out) {
		t.Fatalf("retry: exit %d\n%s", code, out)
	}

	// The same idempotency key twice: one task.
	if code, out := submit("linear", `{"n":7}`, "--idempotency-key", "order-1"); code != 0 || !strings.Contains(out, "created") {
		t.Fatalf("first keyed submit: %d\n%s", code, out)
	}
	if code, out := submit("linear", `{"n":8}`, "--idempotency-key", "order-1"); code != 0 || !strings.Contains(out, "duplicate") {
		t.Fatalf("second keyed submit: %d\n%s", code, out)
	}

	// An unknown template is dead-lettered; once the template exists, replaying it succeeds.
	code, out := submit("late", `{"n":6}`)
	if code != 1 || !strings.Contains(out, "dead-lettered (unknown_template)") {
		t.Fatalf("unknown template: exit %d\n%s", code, out)
	}
	code, list := cli("dlq", "list")
	if code != 0 || !strings.Contains(list, "orchestration_task_requests") || !strings.Contains(list, "unknown_template") || !strings.Contains(list, "1 dead letter(s)") {
		t.Fatalf("dlq list: exit %d\n%s", code, list)
	}
	dlqID := regexp.MustCompile(`(?m)^(\d+)\s`).FindStringSubmatch(list)[1]
	late, err := template.Parse("late.yaml", []byte("namespace: demo\nname: late\nversion: 1.0.0\nsteps:\n  - name: only\n    handler: {callable: demo.square}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := workflow.Register(ctx, db.Pool, []*template.Template{late}, nil); err != nil {
		t.Fatal(err)
	}
	if code, out := cli("dlq", "replay", dlqID); code != 0 || !strings.Contains(out, "replayed dead letter "+dlqID) {
		t.Fatalf("dlq replay: exit %d\n%s", code, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var state string
		err := db.Pool.QueryRow(ctx, "SELECT state FROM tasker.task_status WHERE name = 'late'").Scan(&state)
		if err == nil && state == "complete" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replayed request did not complete (state %q, err %v)\n%s", state, err, consumer.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, list := cli("dlq", "list"); code != 0 || !strings.Contains(list, "0 dead letter(s)") {
		t.Fatalf("dlq after replay: %d\n%s", code, list)
	}

	// SIGTERM: both exit 0.
	for _, p := range []*proc.Process{worker, consumer} {
		code, took, err := p.Terminate(30 * time.Second)
		if err != nil || code != 0 {
			t.Fatalf("%s: exit %d after %s (%v)\n%s", p.Name, code, took, err, p.Log())
		}
	}
}

// runCLI runs the consumer binary bin with args, env added to the environment, and returns its
// exit code and combined output: -1 and the error when it could not be run at all.
func runCLI(ctx context.Context, bin string, env []string, args ...string) (int, string) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return exit.ExitCode(), string(out)
	case err != nil:
		return -1, err.Error()
	}
	return 0, string(out)
}

// startConsumerAndWorker starts `consumer run` with the test templates, waits until it is ready,
// then starts the example worker; both are stopped when the test ends.
func startConsumerAndWorker(ctx context.Context, t *testing.T, bins proc.Binaries, root, dir string, env []string) (consumer, worker *proc.Process) {
	t.Helper()
	addr, err := proc.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	consumer, err = proc.Start("consumer", bins.Consumer, []string{"run"},
		append(env, "CONSUMER_TEMPLATE_PATH="+filepath.Join(root, "testdata", "templates"), "CONSUMER_HTTP_ADDR="+addr),
		filepath.Join(dir, "consumer.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(consumer.Stop)
	if err := proc.WaitReady(ctx, consumer, addr); err != nil {
		t.Fatal(err)
	}
	worker, err = proc.Start("example-worker", bins.Worker, nil, append(env, "WORKER_NAMESPACE=demo"), filepath.Join(dir, "worker.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(worker.Stop)
	return consumer, worker
}
