package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tasker-systems/consumer/internal/proc"
	"github.com/tasker-systems/consumer/internal/testdb"
	"github.com/tasker-systems/consumer/messages"
)

// The short suite runs inside `make test`: every scenario but the full-only ones, with fewer
// requests and faults, three at a time. The PostgreSQL restarts are skipped unless
// CONSUMER_CHAOS_RESTART=1, because other tests may be using the same server.

var (
	suiteOnce sync.Once
	suiteVal  *Suite
	suiteErr  error
)

// testSuite builds the binaries once for every test of the package.
func testSuite(t *testing.T) *Suite {
	t.Helper()
	if testing.Short() {
		t.Skip("chaos suite skipped in -short mode")
	}
	admin := testdb.AdminURL(t)
	suiteOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		root, err := proc.ModuleRoot(ctx)
		if err != nil {
			suiteErr = err
			return
		}
		opts := Options{
			Short:             true,
			Parallel:          3,
			Restart:           os.Getenv("CONSUMER_CHAOS_RESTART") == "1",
			RestartSkipReason: "set CONSUMER_CHAOS_RESTART=1 (it restarts the shared server)",
			LogDir:            filepath.Join(root, ".chaos", time.Now().Format("20060102-150405")+"-test"),
		}
		if testing.Verbose() {
			opts.Progress = os.Stderr
		}
		suiteVal, suiteErr = NewSuite(ctx, admin, opts)
	})
	if suiteErr != nil {
		t.Fatalf("chaos suite: %v", suiteErr)
	}
	return suiteVal
}

func TestMain(m *testing.M) {
	code := m.Run()
	if suiteVal != nil {
		suiteVal.Close()
		if code == 0 {
			// Logs are evidence for failures only.
			_ = os.RemoveAll(suiteVal.opts.LogDir)
		}
	}
	os.Exit(code)
}

// TestChaosShort runs the short suite: zero lost and zero duplicated in every row.
func TestChaosShort(t *testing.T) {
	t.Parallel()
	s := testSuite(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	rows := s.Run(ctx)
	var b strings.Builder
	printTable(&b, rows)
	own, server := s.PeakConnections()
	t.Logf("chaos suite (short, seed %d) in %s, peak connections %d (server %d):\n%s",
		s.opts.Seed, time.Since(start).Round(100*time.Millisecond), own, server, b.String())
	for _, r := range rows {
		if r == nil || !r.Failed() {
			continue
		}
		var d strings.Builder
		printDetails(&d, []*Row{r})
		t.Errorf("scenario %s failed (seed %d):%s", r.Scenario, s.opts.Seed, d.String())
	}
}

// TestChecksCatchViolations proves the checks are not vacuous: on a clean run they find
// nothing; after the database is doctored with a lost request, a stuck task, a duplicated task,
// a second accepted result, a second dispatch and an invalid message missing from the DLQ, they
// count each one.
//
// It is not parallel, so it runs (alone, quickly) before TestChaosShort.
func TestChecksCatchViolations(t *testing.T) {
	s := testSuite(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sc := scenario{
		name: "checks", consumers: 1, workers: 1,
		size: func(Options) sizing {
			return sizing{requests: 10, spread: 200 * time.Millisecond, settle: time.Minute}
		},
	}
	h, err := newHarness(ctx, s, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		h.stopAll()
		h.pool.Close()
		h.dropDB()
	}()
	if _, err := h.addConsumer(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := h.addWorker(ctx); err != nil {
		t.Fatal(err)
	}
	b := h.startBurst(ctx, h.buildBurst(), h.size.spread)
	<-b.done
	if b.err != nil {
		t.Fatal(b.err)
	}
	if st, ok := h.waitQuiescent(ctx, h.size.settle); !ok {
		t.Fatalf("not quiescent: %s (logs in %s)", st, h.dir)
	}
	h.stopAll()

	var clean findings
	if err := h.checkAll(ctx, &clean); err != nil {
		t.Fatal(err)
	}
	if clean.lost != 0 || clean.duplicated != 0 || len(h.problems) != 0 {
		t.Fatalf("clean run: lost %d, duplicated %d, problems %q (logs in %s)", clean.lost, clean.duplicated, h.problems, h.dir)
	}

	doctor := []string{
		// A task that never finished (lost).
		`UPDATE tasker.workflow_tasks SET state = 'steps_in_process'
		 WHERE task_uuid = (SELECT min(task_uuid::text)::uuid FROM tasker.workflow_tasks)`,
		// A request that became a second task (duplicated).
		`INSERT INTO tasker.workflow_tasks (task_uuid, correlation_id, template_id, namespace, name, version, state,
		   context, identity_hash, request_id)
		 SELECT gen_random_uuid(), correlation_id, template_id, namespace, name, version, 'complete', context,
		   'doctored', request_id
		 FROM tasker.workflow_tasks WHERE task_uuid = (SELECT max(task_uuid::text)::uuid FROM tasker.workflow_tasks)`,
		// A second accepted result for one attempt (duplicated).
		`INSERT INTO tasker.workflow_step_transitions (step_uuid, task_uuid, from_state, to_state, attempt, reason)
		 SELECT step_uuid, task_uuid, from_state, to_state, attempt, reason FROM tasker.workflow_step_transitions
		 WHERE to_state = 'complete' ORDER BY id LIMIT 1`,
		// A second dispatch message for one attempt (duplicated).
		`INSERT INTO chaos.sent (queue, msg_id, step_uuid, attempt)
		 SELECT queue, msg_id + 1000000, step_uuid, attempt FROM chaos.sent WHERE queue = 'worker_demo_queue' ORDER BY id LIMIT 1`,
	}
	for _, q := range doctor {
		if _, err := h.pool.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// A valid request and an invalid message that were sent but left no trace (lost).
	h.valid["doctored"] = &request{id: "doctored", template: demoTemplates[0], n: 1, msgIDs: []int64{999999}}
	h.invalid = append(h.invalid, &badMsg{kind: "doctored", queue: messages.QueueTaskRequests, body: []byte(`{}`), msgIDs: []int64{999998}})
	h.problems = nil

	var f findings
	if err := h.checkAll(ctx, &f); err != nil {
		t.Fatal(err)
	}
	if f.lost != 3 {
		t.Errorf("lost = %d, want 3 (stuck task, valid request, invalid message): %q", f.lost, f.lostIDs)
	}
	if f.duplicated != 3 {
		t.Errorf("duplicated = %d, want 3 (task, accepted result, dispatch): %q", f.duplicated, f.dupIDs)
	}
	all := strings.Join(h.problems, "\n")
	for _, want := range []string{"tasks not finished", "invalid messages missing from the DLQ", "dispatch bookkeeping inconsistent", "wrong outcome"} {
		if !strings.Contains(all, want) {
			t.Errorf("problems do not mention %q:\n%s", want, all)
		}
	}
}
