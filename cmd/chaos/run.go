package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/tasker-systems/consumer/internal/stats"
)

// run runs the scenario in the harness and fills the row. It always stops the processes and
// drops the database (unless kept).
func (h *harness) run(ctx context.Context, sc scenario, row *Row) {
	var f findings
	h.execute(ctx, sc, &f)
	h.pool.Close()
	h.dropDB()
	h.fill(row, &f)
}

func (h *harness) execute(ctx context.Context, sc scenario, f *findings) {
	defer func() {
		h.stopAll()
		logs := h.checkLogs()
		if logs.batchFailed+logs.redelivered > 0 {
			h.notef("consumer logs: %d failed batch transaction(s), %d message(s) failed and left for redelivery",
				logs.batchFailed, logs.redelivered)
		}
	}()
	for range sc.consumers {
		if _, err := h.addConsumer(ctx, sc.consumerEnv...); err != nil {
			h.problemf("start consumer: %v", err)
			return
		}
	}
	for range sc.workers {
		if _, err := h.addWorker(ctx, sc.workerEnv...); err != nil {
			h.problemf("start worker: %v", err)
			return
		}
	}

	stopDuplicator := func() int { return 0 }
	if sc.duplicate {
		stopDuplicator = h.startDuplicator(ctx)
		defer stopDuplicator()
	}
	msgs := h.buildBurst()
	h.progress("burst of %d valid and %d invalid messages over %s", len(h.valid), len(msgs)-len(h.valid), h.size.spread)
	b := h.startBurst(ctx, msgs, h.size.spread)
	if err := sc.inject(ctx, h, b); err != nil {
		h.problemf("fault injection stopped: %v", err)
	}
	if sc.duplicate {
		h.fault("every result sent twice", "step results are duplicated as they are committed")
	}
	select {
	case <-b.done:
	case <-ctx.Done():
		h.problemf("interrupted")
		return
	}
	if b.err != nil {
		h.problemf("burst: %v", b.err)
	}

	settleStart := time.Now()
	st, quiet := h.waitQuiescent(ctx, h.size.settle)
	if n := stopDuplicator(); n > 0 {
		h.notef("%d step results were sent twice while the workflows ran", n)
		if quiet {
			st, quiet = h.waitQuiescent(ctx, h.size.settle)
		}
	}
	if !quiet {
		h.problemf("not quiescent %s after the burst: %s", h.size.settle, st)
	} else {
		h.progress("quiescent %s after the burst", time.Since(settleStart).Round(100*time.Millisecond))
	}
	for _, e := range h.exitedByItself() {
		h.problemf("%s", e)
	}
	if sc.verify != nil {
		if err := sc.verify(ctx, h); err != nil {
			h.problemf("verify: %v", err)
		}
	}
	if quiet {
		n, err := h.replay(ctx, 60*time.Second)
		if err != nil {
			h.problemf("replay: %v", err)
		} else {
			h.progress("replayed %d duplicate results and finalizations: no effect", n)
		}
	}
	for _, n := range h.runningConsumers() {
		if !ready(n) {
			h.problemf("%s does not answer /readyz 200 at the end (log %s)", n.name(), n.log)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := h.checkAll(cctx, f); err != nil {
		h.problemf("checks: %v", err)
	}
}

// fill writes the harness's findings into the row.
func (h *harness) fill(row *Row, f *findings) {
	row.Requests = len(h.valid)
	for _, bm := range h.invalid {
		row.Invalid += len(bm.msgIDs)
	}
	row.Faults = summarizeFaults(h.faults)
	row.Lost, row.Duplicated, row.DLQValid = f.lost, f.duplicated, f.dlqValid
	row.Recovery = summarizeRecovery(h.recoveries)
	row.RecoveryWhat = h.sc.recovery
	row.LogDir = h.dir
	row.Problems = append(row.Problems, h.problems...)
	row.Notes = append(row.Notes, h.notes...)
	if h.sc.noValidDLQ && f.dlqValid > 0 {
		row.Problems = append(row.Problems, fmt.Sprintf(
			"%d valid request(s) dead-lettered for their delivery count although nothing in this scenario is poison (see the notes)", f.dlqValid))
	}
	if len(f.lostIDs) > 0 {
		row.Problems = append(row.Problems, fmt.Sprintf("lost %d: %s", f.lost, strings.Join(f.lostIDs, "; ")))
	}
	if len(f.dupIDs) > 0 {
		row.Problems = append(row.Problems, fmt.Sprintf("duplicated %d: %s", f.duplicated, strings.Join(f.dupIDs, "; ")))
	}
	for _, n := range h.nodes() {
		row.Logs = append(row.Logs, n.log)
	}
	row.Verdict = verdictPass
	if row.Lost > 0 || row.Duplicated > 0 || len(row.Problems) > 0 {
		row.Verdict = verdictFail
	}
}

// summarizeFaults counts faults by kind, in order of first occurrence: "10× SIGKILL".
func summarizeFaults(kinds []string) string {
	if len(kinds) == 0 {
		return "none"
	}
	var order []string
	count := map[string]int{}
	for _, k := range kinds {
		if count[k] == 0 {
			order = append(order, k)
		}
		count[k]++
	}
	parts := make([]string, len(order))
	for i, k := range order {
		if count[k] > 1 {
			parts[i] = fmt.Sprintf("%d× %s", count[k], k)
		} else {
			parts[i] = k
		}
	}
	return strings.Join(parts, ", ")
}

// summarizeRecovery is the worst recovery time and, for several faults, their p50.
func summarizeRecovery(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	s := stats.NewSample(ds)
	if s.Len() == 1 {
		return fmtDuration(s.Max())
	}
	return fmt.Sprintf("max %s, p50 %s", fmtDuration(s.Max()), fmtDuration(s.Percentile(50)))
}

func fmtDuration(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%dms", d.Milliseconds())
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}
