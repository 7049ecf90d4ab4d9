// Package pgmqtest holds the helpers the tests of the queue packages (pgmq, tasker, dlq) share:
// a fresh database with a queue, sending a message, and checks of what PGMQ returned. Each
// helper fails the test on an error instead of returning it.
package pgmqtest

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/consumer/internal/testdb"
	"github.com/tasker-systems/consumer/pgmq"
)

// Setup gives a test its own migrated database with queue created, and a context that ends
// with the test (or after two minutes).
func Setup(t *testing.T, queue string) (context.Context, *testdb.DB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	db := testdb.New(t, 4)
	if err := pgmq.Create(ctx, db.Pool, queue); err != nil {
		t.Fatal(err)
	}
	return ctx, db
}

// Send sends body to queue and returns the message id.
func Send(t *testing.T, ctx context.Context, db pgmq.DB, queue, body string) int64 {
	t.Helper()
	id, err := pgmq.Send(ctx, db, queue, json.RawMessage(body), pgmq.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// IDs returns the ids of msgs, in their order.
func IDs(msgs []pgmq.Message) []int64 {
	out := make([]int64, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

// Sorted returns a sorted copy of ids.
func Sorted(ids []int64) []int64 {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

// AssertJSON compares JSON semantically (jsonb normalizes spacing and key order).
func AssertJSON(t *testing.T, what string, got, want json.RawMessage) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%s: %q is not JSON: %v", what, got, err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("%s: bad expectation %q: %v", what, want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("%s = %s, want %s", what, got, want)
	}
}

// MakeVisible moves the messages' vt into the past, as if their visibility timeout expired.
func MakeVisible(t *testing.T, ctx context.Context, db pgmq.DB, queue string, msgIDs ...int64) {
	t.Helper()
	sql := fmt.Sprintf("UPDATE %s SET vt = now() - interval '1 second' WHERE msg_id = ANY($1)",
		pgx.Identifier{"pgmq", "q_" + queue}.Sanitize())
	tag, err := db.Exec(ctx, sql, msgIDs)
	if err != nil {
		t.Fatal(err)
	}
	if tag.RowsAffected() != int64(len(msgIDs)) {
		t.Fatalf("MakeVisible updated %d rows, want %d", tag.RowsAffected(), len(msgIDs))
	}
}

// Clock returns the database server's current time (clock_timestamp, not the transaction's).
func Clock(t *testing.T, ctx context.Context, db pgmq.DB) time.Time {
	t.Helper()
	var now time.Time
	if err := db.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&now); err != nil {
		t.Fatal(err)
	}
	return now
}

// AssertVTAfter checks that vt was set to (server clock at the call) + want, the call having
// happened between before and after (both read with Clock).
func AssertVTAfter(t *testing.T, vt, before, after time.Time, want time.Duration) {
	t.Helper()
	const slack = 50 * time.Millisecond
	lo, hi := before.Add(want-slack), after.Add(want+slack)
	if vt.Before(lo) || vt.After(hi) {
		t.Fatalf("vt = %v, want between %v and %v (now + %v)", vt, lo, hi, want)
	}
}

// QueueLength returns the number of messages in queue (pgmq.metrics).
func QueueLength(t *testing.T, ctx context.Context, db pgmq.DB, queue string) int64 {
	t.Helper()
	m, err := pgmq.QueueMetrics(ctx, db, queue)
	if err != nil {
		t.Fatal(err)
	}
	return m.Length
}
