package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-systems/consumer/internal/timeutil"
	"github.com/tasker-systems/consumer/messages"
)

// demoTemplate is a template of testdata/templates with its last step and the value the
// example worker computes for it from r = n*n (see the comments in the YAML files).
type demoTemplate struct {
	name   string
	last   string
	expect func(r int64) int64
}

var demoTemplates = []demoTemplate{
	{"linear", "finish", func(r int64) int64 { return 2*r + 10 }},
	{"diamond", "join", func(r int64) int64 { return 2 * r * r }},
	{"tree", "merge", func(r int64) int64 { return 4*r*r + 7*r + 5 }},
	{"mixed", "report", func(r int64) int64 { return 16*r*r + 3*r + 4 }},
	{"retry", "finish", func(r int64) int64 { return r }},
}

// lastSteps maps each template to its last step, for the outcome check.
func lastSteps() map[string]string {
	m := map[string]string{}
	for _, t := range demoTemplates {
		m[t.name] = t.last
	}
	return m
}

// request is one valid task request of a burst.
type request struct {
	id       string
	template demoTemplate
	n        int64
	big      bool
	msgIDs   []int64 // every send (a send retried across a server restart may have committed twice)
}

// badMsg is an invalid or poison message: it must end in the DLQ.
type badMsg struct {
	kind    string
	queue   string
	body    json.RawMessage
	readCt  int      // > 0: inserted directly with this delivery count
	reasons []string // the dead-letter reasons that fit
	msgIDs  []int64
}

// outMsg is one message of a burst.
type outMsg struct {
	req *request
	bad *badMsg
}

func (m outMsg) queue() string {
	if m.bad != nil {
		return m.bad.queue
	}
	return messages.QueueTaskRequests
}

// bigPadding is about 1 MB of text.
var bigPadding = strings.Repeat("chaos-padding-0123456789abcdef-", (1<<20)/31)

// taskRequestBody is the body of a valid task request (see docs/protocol.md).
func taskRequestBody(scenario string, r *request, i int) json.RawMessage {
	ctx := map[string]any{"n": r.n, "request": r.id}
	if r.big {
		ctx["pad"] = bigPadding
	}
	spec := map[string]any{
		"namespace": "demo", "name": r.template.name, "version": "1.0.0", "context": ctx,
		"initiator": "chaos", "source_system": "chaos", "reason": "chaos scenario " + scenario,
		"tags": []string{"chaos", scenario}, "priority": i % 3,
	}
	if i%4 == 1 {
		spec["idempotency_key"] = "chaos-" + r.id
	}
	b, err := json.Marshal(map[string]any{
		"request_id":   r.id,
		"task_request": spec,
		"metadata":     map[string]any{"requested_at": time.Now().UTC().Format(time.RFC3339Nano), "requester": "chaos"},
	})
	if err != nil {
		panic(err) // maps of strings and numbers always encode
	}
	return b
}

// validRequests returns n valid requests cycling through the templates, the first big ones
// with a ~1 MB context (on the linear template).
func (h *harness) validRequests(n, big int) []*request {
	out := make([]*request, n)
	for i := range out {
		r := &request{id: uuid.NewString(), template: demoTemplates[i%len(demoTemplates)], n: int64(1 + i%9)}
		if i < big {
			r.big, r.template = true, demoTemplates[0]
		}
		out[i] = r
	}
	return out
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// randomText returns n characters of incompressible text.
func randomText(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)[:n]
}

// badMessages returns the invalid and poison messages of the malformed scenario (one of each).
func badMessages(scenario string, copy int) []*badMsg {
	validation := []string{messages.ReasonValidation}
	tr := func(fields map[string]any) map[string]any {
		spec := map[string]any{"namespace": "demo", "name": "linear", "version": "1.0.0",
			"context": map[string]any{"n": 2, "request": fmt.Sprintf("bad-%s-%d", scenario, copy)}}
		for k, v := range fields {
			if v == nil {
				delete(spec, k)
			} else {
				spec[k] = v
			}
		}
		return map[string]any{"request_id": "bad-" + uuid.NewString(), "task_request": spec}
	}
	reqs := messages.QueueTaskRequests
	results := messages.QueueStepResults
	fins := messages.QueueTaskFinalizations
	okResult := map[string]any{"success": true, "status": "completed", "result": 1}
	list := []*badMsg{
		{kind: "JSON string body", queue: reqs, body: mustJSON(fmt.Sprintf("chaos-invalid-%s-%d", scenario, copy)), reasons: validation},
		{kind: "JSON array body", queue: reqs, body: mustJSON([]any{"chaos-invalid", scenario, copy}), reasons: validation},
		{kind: "JSON number body", queue: reqs, body: json.RawMessage(`12345`), reasons: validation},
		{kind: "JSON null body", queue: reqs, body: json.RawMessage(`null`), reasons: validation},
		{kind: "empty object", queue: reqs, body: json.RawMessage(`{}`), reasons: validation},
		{kind: "task_request a string", queue: reqs, body: mustJSON(map[string]any{"request_id": "bad", "task_request": "demo/linear"}), reasons: validation},
		{kind: "namespace a number", queue: reqs, body: mustJSON(tr(map[string]any{"namespace": 7})), reasons: validation},
		{kind: "context missing", queue: reqs, body: mustJSON(tr(map[string]any{"context": nil})), reasons: validation},
		{kind: "context an array", queue: reqs, body: mustJSON(tr(map[string]any{"context": []int{1, 2}})), reasons: validation},
		{kind: "context a string", queue: reqs, body: mustJSON(tr(map[string]any{"context": "n=1"})), reasons: validation},
		{kind: "version missing", queue: reqs, body: mustJSON(tr(map[string]any{"version": nil})), reasons: validation},
		{kind: "priority a string", queue: reqs, body: mustJSON(tr(map[string]any{"priority": "high"})), reasons: validation},
		{kind: "tags an object", queue: reqs, body: mustJSON(tr(map[string]any{"tags": map[string]int{"a": 1}})), reasons: validation},
		{kind: "correlation_id not a UUID", queue: reqs, body: mustJSON(tr(map[string]any{"correlation_id": "not-a-uuid"})), reasons: validation},
		{kind: "unknown template name", queue: reqs, body: mustJSON(tr(map[string]any{"name": "no_such_template"})), reasons: []string{"unknown_template"}},
		{kind: "unknown template version", queue: reqs, body: mustJSON(tr(map[string]any{"version": "9.9.9"})), reasons: []string{"unknown_template"}},
		{kind: "unknown namespace", queue: reqs, body: mustJSON(tr(map[string]any{"namespace": "ghost"})), reasons: []string{"unknown_template"}},
		{kind: "~1 MB body without context", queue: reqs,
			body: mustJSON(map[string]any{"request_id": "bad-big", "padding": bigPadding,
				"task_request": map[string]any{"namespace": "demo", "name": "linear", "version": "1.0.0"}}), reasons: validation},
		{kind: "~1 MB body, unknown template", queue: reqs, body: mustJSON(tr(map[string]any{"name": "huge_unknown",
			"context": map[string]any{"pad": bigPadding}})), reasons: []string{"unknown_template"}},
		{kind: "step result for an unknown step", queue: results, body: mustJSON(map[string]any{
			"task_uuid": uuid.NewString(), "step_uuid": uuid.NewString(), "correlation_id": uuid.NewString(),
			"attempt": 1, "result": okResult}), reasons: []string{"unknown_step"}},
		{kind: "step result with task_uuid not a UUID", queue: results, body: mustJSON(map[string]any{
			"task_uuid": "nope", "step_uuid": uuid.NewString(), "attempt": 1, "result": okResult}), reasons: validation},
		{kind: "step result an array", queue: results, body: mustJSON([]any{"chaos-invalid-result", copy}), reasons: validation},
		{kind: "step result with unknown status", queue: results, body: mustJSON(map[string]any{
			"task_uuid": uuid.NewString(), "step_uuid": uuid.NewString(), "attempt": 1,
			"result": map[string]any{"success": true, "status": "exploded"}}), reasons: validation},
		{kind: "step result with attempt 0", queue: results, body: mustJSON(map[string]any{
			"task_uuid": uuid.NewString(), "step_uuid": uuid.NewString(), "attempt": 0, "result": okResult}), reasons: validation},
		{kind: "finalization of an unknown task", queue: fins, body: mustJSON(map[string]any{"task_uuid": uuid.NewString()}), reasons: []string{"unknown_task"}},
		{kind: "finalization with task_uuid a number", queue: fins, body: json.RawMessage(`{"task_uuid": 5}`), reasons: validation},
		{kind: "finalization a string", queue: fins, body: mustJSON("finalize!"), reasons: validation},
		// Poison: valid in shape, but the database refuses it on every delivery (the request_id
		// is too long for the btree index on it), so only the delivery count stops it.
		{kind: "poison: request failing on every delivery", queue: reqs,
			body:    mustJSON(map[string]any{"request_id": randomText(16 << 10), "task_request": tr(nil)["task_request"]}),
			reasons: []string{messages.ReasonRetriesExceeded, messages.ReasonValidation, messages.ReasonPermanentError}},
		// Poison: messages that were already delivered too often.
		{kind: "poison: request delivered 50 times", queue: reqs, readCt: 50,
			body: mustJSON(tr(map[string]any{"context": map[string]any{"n": 3, "aged": uuid.NewString()}})), reasons: []string{messages.ReasonMaxReadCount}},
		{kind: "poison: result delivered 50 times", queue: results, readCt: 50, body: mustJSON(map[string]any{
			"task_uuid": uuid.NewString(), "step_uuid": uuid.NewString(), "attempt": 1, "result": okResult}),
			reasons: []string{messages.ReasonMaxReadCount}},
	}
	return list
}

// burst sends messages over a period in the background.
type burst struct {
	done  chan struct{}
	err   error
	sent  atomic.Int64
	total int
}

// waitSent waits until a fraction of the burst was sent (or the burst ended).
func (b *burst) waitSent(ctx context.Context, fraction float64) error {
	for float64(b.sent.Load()) < fraction*float64(b.total) {
		select {
		case <-b.done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

func (b *burst) progress() string { return fmt.Sprintf("%d/%d sent", b.sent.Load(), b.total) }

// startBurst sends msgs in order, spread evenly over spread, in chunks every 50 ms; every other
// chunk goes out as one pgmq.send_batch per queue (announced as batch_ready), the others one
// pgmq.send each. Aged messages are inserted directly.
func (h *harness) startBurst(ctx context.Context, msgs []outMsg, spread time.Duration) *burst {
	b := &burst{done: make(chan struct{}), total: len(msgs)}
	const tick = 50 * time.Millisecond
	chunks := max(1, int(spread/tick))
	per := max(1, (len(msgs)+chunks-1)/chunks)
	record := func(m outMsg, id int64) {
		h.mu.Lock()
		defer h.mu.Unlock()
		if m.req != nil {
			m.req.msgIDs = append(m.req.msgIDs, id)
		} else {
			m.bad.msgIDs = append(m.bad.msgIDs, id)
		}
	}
	go func() {
		defer close(b.done)
		t := time.NewTicker(tick)
		defer t.Stop()
		for c := 0; c*per < len(msgs); c++ {
			chunk := msgs[c*per : min(len(msgs), (c+1)*per)]
			if err := h.sendChunk(ctx, chunk, c%2 == 1, record); err != nil {
				b.err = err
				return
			}
			b.sent.Add(int64(len(chunk)))
			select {
			case <-t.C:
			case <-ctx.Done():
				b.err = ctx.Err()
				return
			}
		}
	}()
	return b
}

func (h *harness) sendChunk(ctx context.Context, chunk []outMsg, batched bool, record func(outMsg, int64)) error {
	byQueue := map[string][]outMsg{}
	var order []string
	for _, m := range chunk {
		switch {
		case m.bad != nil && m.bad.readCt > 0:
			id, err := h.insertAged(ctx, m.bad.queue, m.bad.body, m.bad.readCt)
			if err != nil {
				return fmt.Errorf("insert aged message: %w", err)
			}
			record(m, id)
		case batched:
			q := m.queue()
			if _, ok := byQueue[q]; !ok {
				order = append(order, q)
			}
			byQueue[q] = append(byQueue[q], m)
		default:
			id, err := h.send(ctx, m.queue(), m.body(h.sc.name))
			if err != nil {
				return err
			}
			record(m, id)
		}
	}
	for _, q := range order {
		ms := byQueue[q]
		bodies := make([]json.RawMessage, len(ms))
		for i, m := range ms {
			bodies[i] = m.body(h.sc.name)
		}
		ids, err := h.sendBatch(ctx, q, bodies)
		if err != nil {
			return err
		}
		for i, m := range ms {
			record(m, ids[i])
		}
	}
	return nil
}

// body returns the message's body (a request's is built when sent, so requested_at is real).
func (m outMsg) body(scenario string) json.RawMessage {
	if m.bad != nil {
		return m.bad.body
	}
	return taskRequestBody(scenario, m.req, int(m.req.n))
}

// buildBurst returns the scenario's messages in a random order: its valid requests and, for
// the malformed scenario, the invalid and poison messages mixed in.
func (h *harness) buildBurst() []outMsg {
	var msgs []outMsg
	for _, r := range h.validRequests(h.size.requests, h.size.big) {
		h.valid[r.id] = r
		msgs = append(msgs, outMsg{req: r})
	}
	for c := range h.size.badCopies {
		for _, bm := range badMessages(h.sc.name, c) {
			h.invalid = append(h.invalid, bm)
			msgs = append(msgs, outMsg{bad: bm})
		}
	}
	h.rngMu.Lock()
	h.rng.Shuffle(len(msgs), func(i, j int) { msgs[i], msgs[j] = msgs[j], msgs[i] })
	h.rngMu.Unlock()
	return msgs
}

// startDuplicator sends every step result a worker commits a second time (marked with the
// field chaos_duplicate, which the consumer ignores), within tens of milliseconds, racing the
// original. stop ends it (it may be called more than once) and returns how many duplicates it
// sent.
func (h *harness) startDuplicator(ctx context.Context) (stop func() int) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	var sent int
	go func() {
		defer close(done)
		var last int64
		for timeutil.Sleep(ctx, 30*time.Millisecond) == nil {
			rows, err := h.pool.Query(ctx, `
				SELECT id, body FROM chaos.sent
				WHERE queue = 'orchestration_step_results' AND id > $1 AND jsonb_typeof(body) = 'object'
				  AND NOT body ? 'chaos_duplicate'
				ORDER BY id LIMIT 500`, last)
			if err != nil {
				continue
			}
			var bodies []json.RawMessage
			for rows.Next() {
				var id int64
				var body map[string]json.RawMessage
				if rows.Scan(&id, &body) != nil {
					break
				}
				last = id
				body["chaos_duplicate"] = json.RawMessage("true")
				bodies = append(bodies, mustJSON(body))
			}
			rows.Close()
			if len(bodies) == 0 {
				continue
			}
			if _, err := h.sendBatch(ctx, messages.QueueStepResults, bodies); err == nil {
				sent += len(bodies)
			}
		}
	}()
	var once sync.Once
	return func() int {
		once.Do(func() {
			cancel()
			<-done
		})
		return sent
	}
}
