package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/tasker-systems/consumer/internal/timeutil"
)

// sizing is how big a scenario is.
type sizing struct {
	requests  int           // valid task requests
	big       int           // of which with a ~1 MB context
	badCopies int           // copies of the invalid and poison set (malformed only)
	spread    time.Duration // the burst's sends are spread over this long
	faults    int           // how many times the fault is injected
	settle    time.Duration // deadline for quiescence after the burst
}

// scenario is one row of the table.
type scenario struct {
	name        string
	restartMode string // "fast" or "immediate" for the PostgreSQL restart scenarios
	consumers   int
	workers     int
	consumerEnv []string
	workerEnv   []string
	size        func(o Options) sizing
	// inject runs the faults while the burst is being sent; it returns when it is done.
	inject func(ctx context.Context, h *harness, b *burst) error
	// verify runs scenario-specific checks after quiescence, before the replay.
	verify func(ctx context.Context, h *harness) error
	// recovery says what the recovery column measures; "" means it does not apply.
	recovery string
	// fullOnly leaves the scenario out of the short set (`go test`).
	fullOnly bool
	// duplicate sends every step result a worker commits a second time, at once, while the
	// workflow is still running.
	duplicate bool
	// noValidDLQ fails the row when a valid request was dead-lettered (elsewhere that is
	// allowed, and only counted).
	noValidDLQ bool
}

// standard sizes a scenario from Options.Requests: full-size spread and faults, or the short
// ones.
func standard(fullSpread, shortSpread time.Duration, fullFaults, shortFaults int) func(Options) sizing {
	return func(o Options) sizing {
		if o.Short {
			return sizing{requests: o.Requests, spread: shortSpread, faults: shortFaults, settle: 60 * time.Second}
		}
		return sizing{requests: o.Requests, spread: fullSpread, faults: fullFaults, settle: 120 * time.Second}
	}
}

func scenarios() []scenario {
	slow := func(o Options) sizing {
		s := sizing{requests: max(6, o.Requests/10), spread: 2 * time.Second, settle: 120 * time.Second}
		if o.Short {
			s.requests, s.spread, s.settle = max(5, o.Requests/6), time.Second, 60*time.Second
		}
		return s
	}
	// Steps take 3s, the worker's visibility timeout is 2s. With heartbeats every 250ms a
	// stall of up to 1.75s still keeps the claim; without them every dispatch reappears after
	// 2s and the worker's next poll (every 250ms) claims it again while the first run goes on.
	slowEnv := []string{"WORKER_VISIBILITY_TIMEOUT=2s", "WORKER_STEP_DELAY=3s", "WORKER_CONCURRENCY=16", "WORKER_POLL_INTERVAL=250ms"}
	return []scenario{
		{
			name: "sigkill", consumers: 1, workers: 1,
			size:     standard(12*time.Second, 4*time.Second, 10, 3),
			inject:   injectSigkill,
			recovery: "kill → restarted consumer ready and a task completed",
		},
		{
			name: "listener", consumers: 1, workers: 1,
			size:     standard(8*time.Second, 3*time.Second, 8, 3),
			inject:   injectListenerTermination,
			recovery: "pg_terminate_backend → new LISTEN connection, /readyz 200, a task completed",
		},
		{
			name: "restart-fast", restartMode: "fast", consumers: 1, workers: 1,
			size:     standard(8*time.Second, 4*time.Second, 1, 1),
			inject:   injectRestart("fast"),
			recovery: "restart begins → new LISTEN connection, /readyz 200, a task completed",
		},
		{
			name: "restart-immediate", restartMode: "immediate", consumers: 1, workers: 1,
			size:     standard(8*time.Second, 4*time.Second, 1, 1),
			inject:   injectRestart("immediate"),
			recovery: "restart begins → new LISTEN connection, /readyz 200, a task completed",
		},
		{
			name: "multi", consumers: 3, workers: 2, duplicate: true,
			size: func(o Options) sizing {
				s := standard(6*time.Second, 2*time.Second, 0, 0)(o)
				s.requests = o.Requests * 3 / 2
				return s
			},
			inject: func(ctx context.Context, h *harness, b *burst) error {
				h.fault("3 consumers + 2 workers", "they share the queues")
				return nil
			},
		},
		{
			name: "malformed", consumers: 1, workers: 1,
			size: func(o Options) sizing {
				s := standard(6*time.Second, 2*time.Second, 0, 0)(o)
				s.badCopies, s.big = 2, 2
				if o.Short {
					s.badCopies, s.big = 1, 1
				}
				return s
			},
			inject: func(ctx context.Context, h *harness, b *burst) error {
				h.fault(fmt.Sprintf("%d invalid/poison + %d ~1 MB valid", len(h.invalid), h.size.big), "mixed into the burst")
				return nil
			},
		},
		{
			name: "slow-heartbeat", consumers: 1, workers: 1, size: slow,
			workerEnv: append([]string{"WORKER_HEARTBEAT_INTERVAL=250ms"}, slowEnv...),
			inject: func(ctx context.Context, h *harness, b *burst) error {
				h.fault("step 3s > worker VT 2s, heartbeat", "heartbeats every 250ms")
				return nil
			},
			verify: verifySlow(true),
		},
		{
			name: "slow-no-heartbeat", consumers: 1, workers: 1, size: slow, duplicate: true,
			workerEnv: append([]string{"WORKER_HEARTBEAT_INTERVAL=-1s"}, slowEnv...),
			inject: func(ctx context.Context, h *harness, b *burst) error {
				h.fault("step 3s > worker VT 2s, no heartbeat", "WORKER_HEARTBEAT_INTERVAL=-1s")
				return nil
			},
			verify: verifySlow(false),
		},
		{
			name: "stall", consumers: 1, workers: 1, noValidDLQ: true,
			size:     standard(8*time.Second, 4*time.Second, 2, 1),
			inject:   injectStall,
			recovery: "lock released → a task completed",
		},
		{
			name: "sigterm", consumers: 1, workers: 1,
			size:     standard(10*time.Second, 3*time.Second, 3, 2),
			inject:   injectSigterm,
			recovery: "SIGTERM → restarted consumer ready and a task completed",
		},
	}
}

// injectSigkill kills the consumer at random moments of the burst and restarts it at once.
func injectSigkill(ctx context.Context, h *harness, b *burst) error {
	c := h.consumers[0]
	if err := b.waitSent(ctx, 0.1); err != nil {
		return err
	}
	for i := range h.size.faults {
		if err := timeutil.Sleep(ctx, h.jitter(200*time.Millisecond, 900*time.Millisecond)); err != nil {
			return err
		}
		at := time.Now()
		h.kill(c)
		h.fault("SIGKILL", "consumer killed (%d/%d), burst %s", i+1, h.size.faults, b.progress())
		if err := h.start(ctx, c); err != nil {
			return err
		}
		if err := h.awaitRecovery(ctx, at, 0); err != nil {
			return err
		}
	}
	return nil
}

// injectListenerTermination terminates the consumer's LISTEN backend repeatedly; the consumer
// must reconnect by itself.
func injectListenerTermination(ctx context.Context, h *harness, b *burst) error {
	c := h.consumers[0]
	if err := b.waitSent(ctx, 0.1); err != nil {
		return err
	}
	for i := range h.size.faults {
		if err := timeutil.Sleep(ctx, h.jitter(200*time.Millisecond, 800*time.Millisecond)); err != nil {
			return err
		}
		pids, err := h.listenerPIDs(ctx, time.Time{})
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return fmt.Errorf("no consumer-listener connection to %s before fault %d", h.dbName, i+1)
		}
		at := time.Now()
		for _, pid := range pids {
			if _, err := h.pool.Exec(ctx, "SELECT pg_terminate_backend($1)", pid); err != nil {
				return fmt.Errorf("pg_terminate_backend(%d): %w", pid, err)
			}
		}
		h.fault("listener terminated", "pg_terminate_backend(%v) (%d/%d), burst %s", pids, i+1, h.size.faults, b.progress())
		if err := h.awaitRecovery(ctx, at, len(pids)); err != nil {
			return err
		}
	}
	if c.starts != 1 || c.down {
		h.problemf("the consumer was restarted (%d starts): it must survive a lost LISTEN connection", c.starts)
	}
	if v, ok := metricValue(c, "consumer_listener_reconnects_total"); ok {
		h.notef("consumer_listener_reconnects_total %s after %d terminations", v, h.size.faults)
	}
	return nil
}

// injectRestart restarts PostgreSQL once in the middle of the burst.
func injectRestart(mode string) func(ctx context.Context, h *harness, b *burst) error {
	return func(ctx context.Context, h *harness, b *burst) error {
		if err := b.waitSent(ctx, 0.4); err != nil {
			return err
		}
		at := time.Now()
		h.fault("PostgreSQL restart "+mode, "scripts/pg.sh restart %s, burst %s", mode, b.progress())
		took, err := h.restartServer(ctx, mode)
		if err != nil {
			return err
		}
		h.notef("pg.sh restart %s took %s", mode, took.Round(time.Millisecond))
		if err := h.awaitRecovery(ctx, at, len(h.runningConsumers())); err != nil {
			return err
		}
		for _, n := range h.nodes() {
			if n.starts != 1 {
				h.problemf("%s was restarted: it must survive a server restart", n.name())
			}
		}
		return nil
	}
}

// stallFor is how long a stall holds the lock: longer than the consumer's visibility timeout.
const stallFor = 5 * consumerVT

// injectStall makes the consumer's handlers slower than its visibility timeout: a transaction
// of the suite holds an EXCLUSIVE lock on tasker.workflow_tasks (reads pass, every handler's
// task insert or row lock waits) for three visibility timeouts. Messages are not poison because
// the consumer was slow: after the stall everything must complete, nothing dead-lettered.
func injectStall(ctx context.Context, h *harness, b *burst) error {
	if err := b.waitSent(ctx, 0.25); err != nil {
		return err
	}
	for i := range h.size.faults {
		if i > 0 {
			if err := timeutil.Sleep(ctx, h.jitter(time.Second, 2*time.Second)); err != nil {
				return err
			}
		}
		tx, err := h.pool.Begin(ctx)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "LOCK TABLE tasker.workflow_tasks IN EXCLUSIVE MODE"); err != nil {
			_ = tx.Rollback(ctx)
			return err
		}
		h.fault(fmt.Sprintf("handlers stalled %s > VT %s", stallFor, consumerVT), "tasker.workflow_tasks locked (%d/%d), burst %s", i+1, h.size.faults, b.progress())
		// Probe readiness meanwhile: the database answers and the actor is alive, only slow.
		var probes, unready int
		end := time.Now().Add(stallFor)
		for err == nil && time.Now().Before(end) {
			probes++
			if !ready(h.consumers[0]) {
				unready++
			}
			err = timeutil.Sleep(ctx, 250*time.Millisecond)
		}
		_ = tx.Rollback(context.WithoutCancel(ctx))
		if err != nil {
			return err
		}
		h.notef("stall %d: /readyz was not 200 in %d of %d probes (every 250ms) while the handlers waited", i+1, unready, probes)
		if err := h.awaitRecovery(ctx, time.Now(), 0); err != nil {
			return err
		}
	}
	return nil
}

// injectSigterm stops the consumer gracefully during the burst and starts it again.
func injectSigterm(ctx context.Context, h *harness, b *burst) error {
	c := h.consumers[0]
	if err := b.waitSent(ctx, 0.15); err != nil {
		return err
	}
	var drains []string
	for i := range h.size.faults {
		if err := timeutil.Sleep(ctx, h.jitter(300*time.Millisecond, 1200*time.Millisecond)); err != nil {
			return err
		}
		at := time.Now()
		code, took, err := h.terminate(c, consumerShutdown+10*time.Second)
		h.fault("SIGTERM", "consumer terminated (%d/%d): exit %d after %s, burst %s", i+1, h.size.faults, code, took.Round(time.Millisecond), b.progress())
		drains = append(drains, fmt.Sprintf("exit %d in %s", code, took.Round(time.Millisecond)))
		switch {
		case err != nil:
			h.problemf("SIGTERM %d: %v (log %s)", i+1, err, c.log)
		case code != 0:
			h.problemf("SIGTERM %d: exit code %d, want 0 (log %s)", i+1, code, c.log)
		case took > consumerShutdown+2*time.Second:
			h.problemf("SIGTERM %d: took %s to exit, more than CONSUMER_SHUTDOWN_TIMEOUT %s", i+1, took, consumerShutdown)
		}
		// Let work pile up while no consumer runs.
		if err := timeutil.Sleep(ctx, h.jitter(200*time.Millisecond, 700*time.Millisecond)); err != nil {
			return err
		}
		if err := h.start(ctx, c); err != nil {
			return err
		}
		if err := h.awaitRecovery(ctx, at, 0); err != nil {
			return err
		}
	}
	h.notef("drains: %s", strings.Join(drains, ", "))
	return nil
}

// verifySlow checks the slow-handler scenarios: with heartbeats every attempt ran once; without,
// the dispatches were delivered again (the scenario did what it says) — the common checks then
// prove that still one result per attempt was accepted.
func verifySlow(heartbeat bool) func(ctx context.Context, h *harness) error {
	return func(ctx context.Context, h *harness) error {
		multi, most, examples, err := h.resultsPerAttempt(ctx)
		if err != nil {
			return err
		}
		logs := h.logTotals()
		if heartbeat {
			if multi > 0 || logs.workerDuplicate > 0 {
				h.problemf("with heartbeats a step ran more than once: %d attempts got several results (%s); %d redelivered dispatches in the worker log",
					multi, strings.Join(examples, "; "), logs.workerDuplicate)
			}
			h.notef("every attempt ran once (max %d result per attempt)", most)
			return nil
		}
		redelivered := logs.workerDuplicate + multi
		if redelivered == 0 {
			h.problemf("no redelivery observed: the scenario did not exercise a step outliving its visibility timeout")
		}
		h.notef("%d dispatch(es) ran again after their visibility timeout (worker dropped %d duplicate results; %d attempts sent several results)",
			redelivered, logs.workerDuplicate, multi)
		return nil
	}
}

// metricValue reads one unlabelled sample from a consumer's /metrics.
func metricValue(n *node, name string) (string, bool) {
	resp, err := httpClient.Get("http://" + n.addr + "/metrics")
	if err != nil {
		return "", false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", false
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}
