package main

import (
	"context"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tasker-systems/consumer/internal/proc"
	"github.com/tasker-systems/consumer/internal/testdb"
)

// pooledURL returns the connection string of db through the test PgBouncer (transaction
// pooling), with pgx's cache_describe query mode: PgBouncer before 1.21 cannot keep named
// prepared statements across transactions, and cache_describe needs none (it describes a
// statement once and then runs it unnamed, with the parameter types it learnt). make test starts
// that PgBouncer (scripts/pgbouncer.sh) and sets TEST_PGBOUNCER_URL; elsewhere the test is
// skipped, except in CI, where a missing PgBouncer is a failure.
func pooledURL(t *testing.T, db *testdb.DB) string {
	t.Helper()
	bouncer := os.Getenv("TEST_PGBOUNCER_URL")
	if bouncer == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("TEST_PGBOUNCER_URL is not set in CI: make test must start PgBouncer (scripts/pgbouncer.sh)")
		}
		t.Skip("TEST_PGBOUNCER_URL is not set: run with make test, which starts a PgBouncer")
	}
	u, err := url.Parse(bouncer)
	if err != nil {
		t.Fatalf("TEST_PGBOUNCER_URL: %v", err)
	}
	u.Path = "/" + db.Name
	q := u.Query()
	q.Set("default_query_exec_mode", "cache_describe")
	u.RawQuery = q.Encode()
	return u.String()
}

// TestThroughPgBouncerTransactionPooling runs the consumer binary and the example worker with
// every pooled connection going through PgBouncer in transaction mode, LISTEN on a direct
// connection, and checks that migrations run concurrently, workflows complete and the CLI works.
func TestThroughPgBouncerTransactionPooling(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	db := testdb.NewBlank(t, 2)
	pooled := pooledURL(t, db)
	dir := t.TempDir()
	bins, err := proc.Build(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	root, err := proc.ModuleRoot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"DATABASE_URL=" + pooled, "LISTEN_DATABASE_URL=" + db.URL, "LOG_LEVEL=info"}
	cli := func(args ...string) (int, string) { return runCLI(ctx, bins.Consumer, env, args...) }

	// Migrations at once through the pooler: a migration lock that stayed on a pooled backend
	// would block the later ones for good.
	var wg sync.WaitGroup
	outs := make([]string, 3)
	codes := make([]int, 3)
	for i := range outs {
		wg.Add(1)
		go func() { defer wg.Done(); codes[i], outs[i] = cli("migrate") }()
	}
	wg.Wait()
	for i := range outs {
		if codes[i] != 0 {
			t.Fatalf("concurrent migrate %d: exit %d\n%s", i, codes[i], outs[i])
		}
	}
	if code, out := cli("migrate"); code != 0 || !strings.Contains(out, "migrated") {
		t.Fatalf("migrate after the concurrent ones: exit %d\n%s", code, out)
	}

	consumer, worker := startConsumerAndWorker(ctx, t, bins, root, dir, env)

	for name, want := range map[string]string{"diamond": "2592", "retry": "flaky"} {
		code, out := cli("submit", "--namespace", "demo", "--name", name, "--version", "1.0.0", "--context", `{"n":6}`, "--wait", "--timeout", "60s")
		if code != 0 || !strings.Contains(out, "state=complete") || !strings.Contains(out, want) {
			t.Fatalf("submit %s through PgBouncer: exit %d\n%s\nconsumer log:\n%s\nworker log:\n%s", name, code, out, consumer.Log(), worker.Log())
		}
	}
	if code, out := cli("dlq", "list"); code != 0 || !strings.Contains(out, "0 dead letter(s)") {
		t.Fatalf("dlq list through PgBouncer: exit %d\n%s", code, out)
	}
	for _, p := range []*proc.Process{worker, consumer} {
		if code, took, err := p.Terminate(30 * time.Second); err != nil || code != 0 {
			t.Fatalf("%s: exit %d after %s (%v)\n%s", p.Name, code, took, err, p.Log())
		}
	}
}
