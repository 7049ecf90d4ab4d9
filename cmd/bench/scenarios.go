package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/consumer/config"
	"github.com/tasker-systems/consumer/messages"
	"github.com/tasker-systems/consumer/pgmq"
)

// baselineConcurrency is the consumer's default CONSUMER_CONCURRENCY, used by the raw baselines.
const baselineConcurrency = 8

// rawQueue is the plain PGMQ queue of the baselines (no notify trigger: raw PGMQ).
const rawQueue = "bench_raw"

func runBaselineSingle(ctx context.Context, e *env, _ int) (runResult, error) {
	return runBaseline(ctx, e, 1, "pgmq_single")
}

func runBaselineBatched(ctx context.Context, e *env, _ int) (runResult, error) {
	return runBaseline(ctx, e, 100, "pgmq_batched")
}

// runBaseline drains a pre-filled queue with 8 goroutines, each on its own connection, reading
// qty messages and deleting them per round.
func runBaseline(ctx context.Context, e *env, qty int, key string) (runResult, error) {
	db, err := e.newDB(ctx, baselineConcurrency+1)
	if err != nil {
		return runResult{}, err
	}
	defer db.close()
	if err := pgmq.Create(ctx, db.pool, rawQueue); err != nil {
		return runResult{}, err
	}
	n := e.opts.Messages
	if err := fill(ctx, db.pool, rawQueue, n, func(i int) json.RawMessage {
		return taskRequest("raw-"+strconv.Itoa(i), "linear", `{"i":`+strconv.Itoa(i)+`}`)
	}); err != nil {
		return runResult{}, fmt.Errorf("fill: %w", err)
	}
	conns := make([]*pgxpool.Conn, baselineConcurrency)
	for i := range conns {
		if conns[i], err = db.pool.Acquire(ctx); err != nil {
			return runResult{}, err
		}
		defer conns[i].Release()
	}
	var done atomic.Int64
	errs := make(chan error, len(conns))
	var wg sync.WaitGroup
	start := time.Now()
	for _, c := range conns {
		wg.Go(func() {
			for {
				msgs, err := pgmq.Read(ctx, c, rawQueue, 30*time.Second, qty)
				if err != nil {
					errs <- err
					return
				}
				if len(msgs) == 0 {
					return
				}
				if qty == 1 {
					ok, err := pgmq.Delete(ctx, c, rawQueue, msgs[0].ID)
					if err == nil && !ok {
						err = fmt.Errorf("delete %d: not found", msgs[0].ID)
					}
					if err != nil {
						errs <- err
						return
					}
				} else {
					ids := make([]int64, len(msgs))
					for i, m := range msgs {
						ids[i] = m.ID
					}
					deleted, err := pgmq.DeleteBatch(ctx, c, rawQueue, ids)
					if err == nil && len(deleted) != len(ids) {
						err = fmt.Errorf("deleted %d of %d", len(deleted), len(ids))
					}
					if err != nil {
						errs <- err
						return
					}
				}
				done.Add(int64(len(msgs)))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	if err := errors.Join(collect(errs)...); err != nil {
		return runResult{}, err
	}
	if got := done.Load(); got != int64(n) {
		return runResult{}, fmt.Errorf("processed %d of %d messages", got, n)
	}
	rate := float64(n) / elapsed.Seconds()
	return runResult{
		values:  map[string]float64{key: rate},
		detail:  map[string]any{"messages": n, "elapsed_s": elapsed.Seconds(), "qty": qty, "connections": baselineConcurrency},
		summary: fmt.Sprintf("%s msg/s (%d messages in %s)", formatValue(rate, ""), n, elapsed.Round(time.Millisecond)),
	}, nil
}

func collect[T any](ch <-chan T) []T {
	var out []T
	for v := range ch {
		out = append(out, v)
	}
	return out
}

// runNotifyRTT measures pg_notify (autocommit) on one connection to receipt on another.
func runNotifyRTT(ctx context.Context, e *env, _ int) (runResult, error) {
	db, err := e.newDB(ctx, 1)
	if err != nil {
		return runResult{}, err
	}
	defer db.close()
	listen, err := pgx.Connect(ctx, db.url)
	if err != nil {
		return runResult{}, err
	}
	defer listen.Close(context.Background())
	send, err := pgx.Connect(ctx, db.url)
	if err != nil {
		return runResult{}, err
	}
	defer send.Close(context.Background())
	const channel = "bench_ping"
	if _, err := listen.Exec(ctx, "LISTEN "+channel); err != nil {
		return runResult{}, err
	}
	n := e.opts.Pings
	const warmup = 20
	rtts := make([]time.Duration, 0, n)
	for i := range n + warmup {
		payload := strconv.Itoa(i)
		t0 := time.Now()
		if _, err := send.Exec(ctx, "SELECT pg_notify($1, $2)", channel, payload); err != nil {
			return runResult{}, err
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		note, err := listen.WaitForNotification(wctx)
		cancel()
		if err != nil {
			return runResult{}, fmt.Errorf("ping %d: %w", i, err)
		}
		rtt := time.Since(t0)
		if note.Payload != payload {
			return runResult{}, fmt.Errorf("ping %d: got payload %q", i, note.Payload)
		}
		if i >= warmup {
			rtts = append(rtts, rtt)
		}
	}
	l := latencies(rtts)
	return runResult{
		values:  map[string]float64{"notify_rtt_p50": l.P50, "notify_rtt_p99": l.P99},
		detail:  map[string]any{"latency": l},
		summary: fmt.Sprintf("p50 %s, p99 %s over %d pings", formatValue(l.P50, "ms"), formatValue(l.P99, "ms"), l.N),
	}, nil
}

func runThroughput(ctx context.Context, e *env, _ int) (runResult, error) {
	return runThroughputMode(ctx, e, config.ModeHybrid, "consumer_throughput")
}

func runThroughputPolling(ctx context.Context, e *env, _ int) (runResult, error) {
	return runThroughputMode(ctx, e, config.ModePolling, "polling_throughput")
}

// runThroughputMode drains a pre-filled task request queue with the in-process consumer.
func runThroughputMode(ctx context.Context, e *env, mode config.Mode, key string) (runResult, error) {
	db, err := e.newDB(ctx, 2)
	if err != nil {
		return runResult{}, err
	}
	defer db.close()
	n := e.opts.Messages
	if err := fill(ctx, db.pool, messages.QueueTaskRequests, n, func(i int) json.RawMessage {
		return taskRequest("tp-"+strconv.Itoa(i), "linear", `{"i":`+strconv.Itoa(i)+`}`)
	}); err != nil {
		return runResult{}, fmt.Errorf("fill: %w", err)
	}
	cfg, err := defaultConfig(ctx, db.url, mode)
	if err != nil {
		return runResult{}, err
	}
	h := &noop{}
	cpu0, err := cpuSnapshot(ctx, db.pool, os.Getpid())
	if err != nil {
		return runResult{}, err
	}
	start := time.Now()
	svc, err := startService(ctx, cfg, h.handlers())
	if err != nil {
		return runResult{}, err
	}
	defer func() { _ = svc.stop() }()
	// The handler count reaches n just before the last commits; then the queue empties.
	deadline := time.Now().Add(2*time.Minute + time.Duration(n)*time.Millisecond)
	for h.handled.Load() < int64(n) {
		if time.Now().After(deadline) {
			return runResult{}, fmt.Errorf("handled %d of %d messages before the deadline", h.handled.Load(), n)
		}
		if err := sleep(ctx, time.Millisecond); err != nil {
			return runResult{}, err
		}
	}
	for {
		left, err := queueLength(ctx, db.pool, messages.QueueTaskRequests)
		if err != nil {
			return runResult{}, err
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			return runResult{}, fmt.Errorf("%d messages still in the queue after every handler ran", left)
		}
		if err := sleep(ctx, time.Millisecond); err != nil {
			return runResult{}, err
		}
	}
	elapsed := time.Since(start)
	cpu1, err := cpuSnapshot(ctx, db.pool, os.Getpid())
	if err != nil {
		return runResult{}, err
	}
	cpu := cpu1.since(cpu0)
	stats, serr := svc.svc.Stats(ctx)
	if err := svc.stop(); err != nil {
		return runResult{}, fmt.Errorf("stop: %w", err)
	}
	rate := float64(n) / elapsed.Seconds()
	detail := map[string]any{"messages": n, "elapsed_s": elapsed.Seconds(), "handler_calls": h.handled.Load(),
		"concurrency": cfg.Concurrency, "batch_size": cfg.BatchSize, "poll_batch_size": cfg.PollBatchSize,
		"cpu_seconds": cpu, "cpu_us_per_message": map[string]float64{
			"bench_process": 1e6 * cpu["consumer_process"] / float64(n), "consumer_backends": 1e6 * cpu["consumer_backends"] / float64(n)}}
	extra := ""
	if serr == nil {
		detail["stats"] = stats.Total
		if stats.Total.Failed+stats.Total.DeadLettered > 0 {
			return runResult{}, fmt.Errorf("%d failed, %d dead-lettered (a no-op handler cannot fail)", stats.Total.Failed, stats.Total.DeadLettered)
		}
		if stats.Total.NotFound > 0 {
			extra = fmt.Sprintf(", %d not-found claims", stats.Total.NotFound)
		}
	}
	if calls := h.handled.Load(); calls != int64(n) {
		extra += fmt.Sprintf(", %d handler calls for %d messages", calls, n)
	}
	extra += fmt.Sprintf("; CPU per message: in-process consumer %.0f µs + its backends %.0f µs",
		1e6*cpu["consumer_process"]/float64(n), 1e6*cpu["consumer_backends"]/float64(n))
	return runResult{
		values:  map[string]float64{key: rate},
		detail:  detail,
		summary: fmt.Sprintf("%s msg/s (%d messages in %s%s)", formatValue(rate, ""), n, elapsed.Round(time.Millisecond), extra),
	}, nil
}

func runLatencyHybrid(ctx context.Context, e *env, _ int) (runResult, error) {
	return runLatency(ctx, e, config.ModeHybrid, "latency_hybrid")
}

func runLatencyPolling(ctx context.Context, e *env, _ int) (runResult, error) {
	return runLatency(ctx, e, config.ModePolling, "latency_polling")
}

// latencyWarmup messages at the start of a latency run are not counted.
const latencyWarmup = 20

// runLatency sends task requests at a steady rate to the in-process consumer and records, in
// the no-op handler, the time from just before each send to the handler's start.
func runLatency(ctx context.Context, e *env, mode config.Mode, key string) (runResult, error) {
	db, err := e.newDB(ctx, 2)
	if err != nil {
		return runResult{}, err
	}
	defer db.close()
	if err := warmPool(ctx, db.pool, 1); err != nil {
		return runResult{}, err
	}
	cfg, err := defaultConfig(ctx, db.url, mode)
	if err != nil {
		return runResult{}, err
	}
	interval := time.Second / time.Duration(e.opts.Rate)
	total := int(time.Duration(e.opts.LatencySeconds*float64(time.Second))/interval) + latencyWarmup
	h := &noop{record: true, warmup: latencyWarmup, lat: make(chan sample, total)}
	svc, err := startService(ctx, cfg, h.handlers())
	if err != nil {
		return runResult{}, err
	}
	defer func() { _ = svc.stop() }()
	if err := svc.waitReady(ctx); err != nil {
		return runResult{}, err
	}

	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	sendStart := time.Now()
	var sent int
	for sent < total {
		select {
		case <-ctx.Done():
			return runResult{}, ctx.Err()
		case <-ticker.C:
		}
		body := taskRequest("lat-"+strconv.Itoa(sent), "linear",
			fmt.Sprintf(`{"seq":%d,"sent_at_ns":%d}`, sent, time.Now().UnixNano()))
		if _, err := pgmq.Send(ctx, db.pool, messages.QueueTaskRequests, body, pgmq.SendOptions{}); err != nil {
			return runResult{}, err
		}
		sent++
	}
	sendTime := time.Since(sendStart)
	// Everything sent must be handled: within a poll interval or two in polling mode.
	deadline := time.Now().Add(5*time.Second + 2*cfg.PollInterval)
	for h.handled.Load() < int64(total) {
		if time.Now().After(deadline) {
			return runResult{}, fmt.Errorf("handled %d of %d messages", h.handled.Load(), total)
		}
		if err := sleep(ctx, 2*time.Millisecond); err != nil {
			return runResult{}, err
		}
	}
	if err := svc.stop(); err != nil {
		return runResult{}, fmt.Errorf("stop: %w", err)
	}
	close(h.lat)
	samples := collect(h.lat)
	ds := make([]time.Duration, len(samples))
	for i, x := range samples {
		ds[i] = x.d
	}
	l := latencies(ds)
	rate := float64(sent) / sendTime.Seconds()
	return runResult{
		values: map[string]float64{key + "_p50": l.P50, key + "_p99": l.P99},
		detail: map[string]any{"latency": l, "sent": sent, "rate_per_s": rate, "mode": string(mode), "poll_interval": cfg.PollInterval.String(),
			"slowest": slowest(samples, sendStart, 15)},
		summary: fmt.Sprintf("p50 %s, p99 %s, max %s (%d messages at %.0f/s)", formatValue(l.P50, "ms"), formatValue(l.P99, "ms"), formatValue(l.Max, "ms"), l.N, rate),
	}, nil
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// slowest describes the n slowest samples (when they were sent, relative to the start of
// sending, and how long they took), slowest first: clusters and periods point at their cause.
func slowest(samples []sample, start time.Time, n int) []string {
	s := slices.Clone(samples)
	slices.SortFunc(s, func(a, b sample) int { return cmp.Compare(b.d, a.d) })
	var out []string
	for i := 0; i < n && i < len(s); i++ {
		at := time.Duration(s[i].sentAt - start.UnixNano())
		out = append(out, fmt.Sprintf("seq %d sent at +%.3fs: %s", s[i].seq, at.Seconds(), formatValue(float64(s[i].d)/1e6, "ms")))
	}
	return out
}
