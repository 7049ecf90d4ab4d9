package tasker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tasker-systems/consumer/internal/testdb"
	"github.com/tasker-systems/consumer/pgmq"
)

const testQueue = "jobs"

// setup gives a test its own migrated database with testQueue created.
func setup(t *testing.T) (context.Context, *testdb.DB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	db := testdb.New(t, 4)
	if err := pgmq.Create(ctx, db.Pool, testQueue); err != nil {
		t.Fatal(err)
	}
	return ctx, db
}

func body(s string) json.RawMessage { return json.RawMessage(s) }

// assertJSON compares JSON semantically (jsonb normalizes spacing and key order).
func assertJSON(t *testing.T, what string, got, want json.RawMessage) {
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

func send(t *testing.T, ctx context.Context, db pgmq.DB, queue, b string) int64 {
	t.Helper()
	id, err := pgmq.Send(ctx, db, queue, body(b), pgmq.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func ids(msgs []pgmq.Message) []int64 {
	out := make([]int64, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

func sorted(ids []int64) []int64 {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

// makeVisible moves the messages' vt into the past, as if their visibility timeout expired.
func makeVisible(t *testing.T, ctx context.Context, db pgmq.DB, queue string, msgIDs ...int64) {
	t.Helper()
	sql := fmt.Sprintf("UPDATE %s SET vt = now() - interval '1 second' WHERE msg_id = ANY($1)",
		pgx.Identifier{"pgmq", "q_" + queue}.Sanitize())
	tag, err := db.Exec(ctx, sql, msgIDs)
	if err != nil {
		t.Fatal(err)
	}
	if tag.RowsAffected() != int64(len(msgIDs)) {
		t.Fatalf("makeVisible updated %d rows, want %d", tag.RowsAffected(), len(msgIDs))
	}
}

// clock returns the database server's current time (clock_timestamp, not the transaction's).
func clock(t *testing.T, ctx context.Context, db pgmq.DB) time.Time {
	t.Helper()
	var now time.Time
	if err := db.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&now); err != nil {
		t.Fatal(err)
	}
	return now
}

// assertVTAfter checks that vt was set to (server clock at the call) + want, the call having
// happened between before and after (both read from the server's clock).
func assertVTAfter(t *testing.T, vt, before, after time.Time, want time.Duration) {
	t.Helper()
	const slack = 50 * time.Millisecond
	lo, hi := before.Add(want-slack), after.Add(want+slack)
	if vt.Before(lo) || vt.After(hi) {
		t.Fatalf("vt = %v, want between %v and %v (now + %v)", vt, lo, hi, want)
	}
}

func queueLength(t *testing.T, ctx context.Context, db pgmq.DB, queue string) int64 {
	t.Helper()
	m, err := pgmq.QueueMetrics(ctx, db, queue)
	if err != nil {
		t.Fatal(err)
	}
	return m.Length
}

// countingDB counts the statements sent through it (package tasker sends Exec and Query
// only). With a nil DB it fails the test on any statement: for arguments that must be
// rejected client-side.
type countingDB struct {
	pgmq.DB
	t *testing.T
	n atomic.Int64
}

var errUnexpected = errors.New("unexpected statement")

func (d *countingDB) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	d.n.Add(1)
	if d.DB == nil {
		d.t.Errorf("unexpected Exec %s", sql)
		return pgconn.CommandTag{}, errUnexpected
	}
	return d.DB.Exec(ctx, sql, args...)
}

func (d *countingDB) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	d.n.Add(1)
	if d.DB == nil {
		d.t.Errorf("unexpected Query %s", sql)
		return nil, errUnexpected
	}
	return d.DB.Query(ctx, sql, args...)
}
