package pgmq_test

// The PGMQ conformance suite: PGMQ's client-facing SQL API driven as a stock client drives it
// (plain SQL, names as users write them), asserting PGMQ 1.11's behaviour. It runs against
// whatever PGMQ the test database has: the bundled schema (the default), or a real PGMQ when
// TEST_DATABASE_URL points at a server with one. A feature that the PGMQ under test predates is
// skipped there; the bundled schema must have every one. docs/pgmq-compatibility.md is the
// table these tests back.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tasker-systems/consumer/internal/pgmqtest"
	"github.com/tasker-systems/consumer/internal/testdb"
	"github.com/tasker-systems/consumer/internal/testsignal"
)

// underTest describes the PGMQ of a test database.
type underTest struct {
	db      *testdb.DB
	bundled bool
	source  string // for skip messages: "bundled schema 2", "extension 1.5.1", "SQL-only install"
}

func compatSetup(t *testing.T) (context.Context, underTest) {
	t.Helper()
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	db := testdb.New(t, 6)
	u := underTest{db: db, source: "SQL-only install"}
	var bundled, ext *string
	err := db.Pool.QueryRow(ctx, `
		SELECT (SELECT max(version)::text FROM pgmq.bundled_version WHERE to_regclass('pgmq.bundled_version') IS NOT NULL),
		       (SELECT extversion FROM pg_extension WHERE extname = 'pgmq')`).Scan(&bundled, &ext)
	if err != nil {
		// pgmq.bundled_version is referenced only when it exists, but the parser needs it:
		// a real PGMQ has no such table.
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42P01" {
			t.Fatal(err)
		}
		if err := db.Pool.QueryRow(ctx, "SELECT extversion FROM pg_extension WHERE extname = 'pgmq'").Scan(&ext); err != nil && !errors.Is(err, pgx.ErrNoRows) {
			t.Fatal(err)
		}
	}
	switch {
	case bundled != nil:
		u.bundled, u.source = true, "bundled schema "+*bundled
	case ext != nil:
		u.source = "extension " + *ext
	}
	return ctx, u
}

// need skips the test unless the PGMQ under test has the feature. The bundled schema has all.
func (u underTest) need(t *testing.T, ctx context.Context, feature, regprocedure string) {
	t.Helper()
	var ok bool
	if err := u.db.Pool.QueryRow(ctx, "SELECT to_regprocedure($1) IS NOT NULL", regprocedure).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	if ok {
		return
	}
	if u.bundled {
		t.Fatalf("the bundled schema lacks %s (%s)", feature, regprocedure)
	}
	t.Skipf("%s has no %s (%s)", u.source, feature, regprocedure)
}

// needLastReadAt skips the test on PGMQ before 1.10, whose messages have no last_read_at.
func (u underTest) needLastReadAt(t *testing.T, ctx context.Context) {
	t.Helper()
	var ok bool
	err := u.db.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_attribute
		WHERE attrelid = 'pgmq.message_record'::regclass AND attname = 'last_read_at' AND NOT attisdropped)`).Scan(&ok)
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		if u.bundled {
			t.Fatal("the bundled pgmq.message_record has no last_read_at")
		}
		t.Skipf("%s predates last_read_at (PGMQ 1.10)", u.source)
	}
}

func (u underTest) exec(t *testing.T, ctx context.Context, sql string, args ...any) {
	t.Helper()
	if _, err := u.db.Pool.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func (u underTest) int64s(t *testing.T, ctx context.Context, sql string, args ...any) []int64 {
	t.Helper()
	rows, err := u.db.Pool.Query(ctx, sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return out
}

// record is one pgmq.message_record, selected by name.
type record struct {
	ID         int64
	ReadCount  int32
	EnqueuedAt time.Time
	LastReadAt *time.Time
	VT         time.Time
	Body       *string
	Headers    *string
}

// records runs a query over a function returning pgmq.message_record rows and returns them in
// msg_id order (PGMQ promises no order; the bundled schema returns this one). On PGMQ before
// 1.10 last_read_at is not selected.
func (u underTest) records(t *testing.T, ctx context.Context, from string, args ...any) []record {
	t.Helper()
	var hasLast bool
	if err := u.db.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_attribute
		WHERE attrelid = 'pgmq.message_record'::regclass AND attname = 'last_read_at')`).Scan(&hasLast); err != nil {
		t.Fatal(err)
	}
	last := "NULL::timestamptz"
	if hasLast {
		last = "last_read_at"
	}
	sql := "SELECT msg_id, read_ct, enqueued_at, " + last + ", vt, message::text, headers::text FROM " + from
	rows, err := u.db.Pool.Query(ctx, sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (record, error) {
		var m record
		err := r.Scan(&m.ID, &m.ReadCount, &m.EnqueuedAt, &m.LastReadAt, &m.VT, &m.Body, &m.Headers)
		return m, err
	})
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	slices.SortFunc(out, func(a, b record) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

func recordIDs(rs []record) []int64 {
	out := make([]int64, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	return out
}

// expectError runs sql and checks that it fails with PGMQ's message (and SQLSTATE, if given).
func (u underTest) expectError(t *testing.T, ctx context.Context, code, message, sql string, args ...any) {
	t.Helper()
	_, err := u.db.Pool.Exec(ctx, sql, args...)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		t.Fatalf("%s: error %v, want %q", sql, err, message)
	}
	if pgErr.Message != message || (code != "" && pgErr.Code != code) {
		t.Fatalf("%s: error %s %q, want %s %q", sql, pgErr.Code, pgErr.Message, code, message)
	}
}

// noticeConn is a dedicated connection that collects the notices and warnings it receives.
func (u underTest) noticeConn(t *testing.T, ctx context.Context) (*pgx.Conn, func() []string) {
	t.Helper()
	cfg, err := pgx.ParseConfig(u.db.URL)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var notices []string
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		mu.Lock()
		defer mu.Unlock()
		notices = append(notices, n.Severity+": "+n.Message)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn, func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := notices
		notices = nil
		return out
	}
}

func (u underTest) tableExists(t *testing.T, ctx context.Context, table string) bool {
	t.Helper()
	var ok bool
	if err := u.db.Pool.QueryRow(ctx, "SELECT to_regclass(format('pgmq.%I', $1::text)) IS NOT NULL", table).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

func (u underTest) serverNow(t *testing.T, ctx context.Context) time.Time {
	t.Helper()
	var now time.Time
	if err := u.db.Pool.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&now); err != nil {
		t.Fatal(err)
	}
	return now
}

const (
	errInvalidName = `queue name contains invalid characters: $, ;, --, or \'`
	errTooLong     = "queue name is too long, maximum length is 47 characters"
)

// Queue names as PGMQ takes them: any case and punctuation but $ ; -- and quotes, folded to lower
// case in the (quoted) table names, kept as given in pgmq.meta; 47 characters at most.
func TestCompatQueueNames(t *testing.T) {
	ctx, u := compatSetup(t)
	for _, tc := range []struct{ name, table string }{
		{"QueueCased", "q_queuecased"},
		{"queue-hyphened", "q_queue-hyphened"},
		{"with space.and.dots", "q_with space.and.dots"},
	} {
		u.exec(t, ctx, "SELECT pgmq.create($1)", tc.name)
		if !u.tableExists(t, ctx, tc.table) || !u.tableExists(t, ctx, "a"+tc.table[1:]) {
			t.Fatalf("create(%q) did not make tables %q and its archive", tc.name, tc.table)
		}
		ids := u.int64s(t, ctx, `SELECT pgmq.send($1, '{"hello": "world"}')`, tc.name)
		got := u.records(t, ctx, "pgmq.read($1, 1, 1)", tc.name)
		if !slices.Equal(recordIDs(got), ids) || got[0].ReadCount != 1 || *got[0].Body != `{"hello": "world"}` {
			t.Fatalf("read %q after send %v = %+v", tc.name, ids, got)
		}
		var archived bool
		if err := u.db.Pool.QueryRow(ctx, "SELECT pgmq.archive($1, $2::bigint)", tc.name, ids[0]).Scan(&archived); err != nil || !archived {
			t.Fatalf("archive %q: %v, %v", tc.name, archived, err)
		}
	}
	var listed []string
	rows, err := u.db.Pool.Query(ctx, "SELECT queue_name::text FROM pgmq.list_queues()")
	if err == nil {
		listed, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil || !slices.Contains(listed, "QueueCased") || slices.Contains(listed, "queuecased") {
		t.Fatalf("list_queues = %v, %v; want the name as given", listed, err)
	}

	u.exec(t, ctx, "SELECT pgmq.create($1)", strings.Repeat("a", 47))
	u.exec(t, ctx, "SELECT pgmq.validate_queue_name($1)", strings.Repeat("a", 47))
	u.need(t, ctx, "validate_queue_name", "pgmq.validate_queue_name(text)")
	u.need(t, ctx, "the 47-character wording of PGMQ 1.6+", "pgmq.acquire_queue_lock(text)")
	u.expectError(t, ctx, "P0001", errTooLong, "SELECT pgmq.create($1)", strings.Repeat("a", 48))
	u.expectError(t, ctx, "P0001", errTooLong, "SELECT pgmq.create_unlogged($1)", strings.Repeat("b", 48))
	u.expectError(t, ctx, "P0001", errTooLong, "SELECT pgmq.validate_queue_name($1)", strings.Repeat("a", 48))

	for _, bad := range []string{"dollar$-signed", "semicolon;name", "double--hyphen", "single'quote",
		"abc where false;\n create table public.attack_vector(id int);\n delete from pgmq.q_abc"} {
		u.expectError(t, ctx, "P0001", errInvalidName, "SELECT pgmq.create($1)", bad)
		u.expectError(t, ctx, "P0001", errInvalidName, "SELECT pgmq.delete($1, 1::bigint)", bad)
		u.expectError(t, ctx, "P0001", errInvalidName, "SELECT pgmq.format_table_name($1, 'q')", bad)
	}
	if u.tableExists(t, ctx, "attack_vector") {
		t.Fatal("a queue name reached SQL")
	}
	for _, tc := range []struct{ name, prefix, want string }{
		{"cat", "q", "q_cat"}, {"cat-dog", "a", "a_cat-dog"}, {"Cat_Dog", "q", "q_cat_dog"},
	} {
		var got string
		if err := u.db.Pool.QueryRow(ctx, "SELECT pgmq.format_table_name($1, $2)", tc.name, tc.prefix).Scan(&got); err != nil || got != tc.want {
			t.Fatalf("format_table_name(%q, %q) = %q, %v; want %q", tc.name, tc.prefix, got, err, tc.want)
		}
	}
	// Any other function on a queue that does not exist fails on the missing table.
	u.expectError(t, ctx, "42P01", `relation "pgmq.q_missing" does not exist`, `SELECT pgmq.send('missing', '{}')`)
}

// The tables and record have PGMQ 1.10's shape, with columns in PGMQ's order on a new queue.
func TestCompatShape(t *testing.T) {
	ctx, u := compatSetup(t)
	u.needLastReadAt(t, ctx)
	u.exec(t, ctx, "SELECT pgmq.create('shape')")
	columns := func(rel string) []string {
		rows, err := u.db.Pool.Query(ctx, `SELECT attname::text FROM pg_attribute
			WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`, rel)
		if err != nil {
			t.Fatal(err)
		}
		cols, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return cols
	}
	for rel, want := range map[string][]string{
		"pgmq.message_record": {"msg_id", "read_ct", "enqueued_at", "last_read_at", "vt", "message", "headers"},
		"pgmq.q_shape":        {"msg_id", "read_ct", "enqueued_at", "last_read_at", "vt", "message", "headers"},
		"pgmq.a_shape":        {"msg_id", "read_ct", "enqueued_at", "last_read_at", "archived_at", "vt", "message", "headers"},
		"pgmq.meta":           {"queue_name", "is_partitioned", "is_unlogged", "created_at"},
		"pgmq.queue_record":   {"queue_name", "is_partitioned", "is_unlogged", "created_at"},
		"pgmq.metrics_result": {"queue_name", "queue_length", "newest_msg_age_sec", "oldest_msg_age_sec", "total_messages", "scrape_time", "queue_visible_length"},
	} {
		got := columns(rel)
		// PGMQ 1.12.1 adds default_partition_length to metrics_result.
		newer := rel == "pgmq.metrics_result" && slices.Equal(got, append(want, "default_partition_length"))
		if !slices.Equal(got, want) && !newer {
			t.Errorf("%s columns = %v, want %v", rel, got, want)
		}
	}
	// SELECT * returns the record's columns, in order, as stock clients scan them.
	rows, err := u.db.Pool.Query(ctx, "SELECT * FROM pgmq.read('shape', 1, 1)")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range rows.FieldDescriptions() {
		names = append(names, f.Name)
	}
	rows.Close()
	if want := columns("pgmq.message_record"); !slices.Equal(names, want) {
		t.Fatalf("SELECT * FROM pgmq.read columns = %v, want %v", names, want)
	}
}

func TestCompatCreateUnloggedAndDropQueue(t *testing.T) {
	ctx, u := compatSetup(t)
	u.exec(t, ctx, "SELECT pgmq.create_unlogged('unlogged_q')")
	var qPersistence, aPersistence string
	if err := u.db.Pool.QueryRow(ctx, `SELECT (SELECT relpersistence::text FROM pg_class WHERE oid = 'pgmq.q_unlogged_q'::regclass),
		(SELECT relpersistence::text FROM pg_class WHERE oid = 'pgmq.a_unlogged_q'::regclass)`).Scan(&qPersistence, &aPersistence); err != nil {
		t.Fatal(err)
	}
	if qPersistence != "u" || aPersistence != "p" {
		t.Fatalf("unlogged queue persistence = %s, archive %s; want u and p", qPersistence, aPersistence)
	}
	var unlogged, partitioned bool
	if err := u.db.Pool.QueryRow(ctx, "SELECT is_unlogged, is_partitioned FROM pgmq.list_queues() WHERE queue_name = 'unlogged_q'").Scan(&unlogged, &partitioned); err != nil || !unlogged || partitioned {
		t.Fatalf("list_queues unlogged_q: unlogged %v partitioned %v, %v", unlogged, partitioned, err)
	}
	ids := u.int64s(t, ctx, `SELECT pgmq.send('unlogged_q', '{"x": 1}')`)
	if got := u.records(t, ctx, "pgmq.read('unlogged_q', 10, 5)"); !slices.Equal(recordIDs(got), ids) {
		t.Fatalf("read unlogged queue = %v, want %v", recordIDs(got), ids)
	}

	// Creating again is a no-op that keeps the messages.
	u.exec(t, ctx, "SELECT pgmq.create('dropme')")
	u.exec(t, ctx, `SELECT pgmq.send('dropme', '{}')`)
	u.exec(t, ctx, "SELECT pgmq.create('dropme')")
	if n := u.int64s(t, ctx, "SELECT count(*) FROM pgmq.q_dropme"); n[0] != 1 {
		t.Fatalf("second create left %d messages, want 1", n[0])
	}

	conn, notices := u.noticeConn(t, ctx)
	var dropped bool
	for _, q := range []string{"unlogged_q", "dropme"} {
		if err := conn.QueryRow(ctx, "SELECT pgmq.drop_queue($1)", q).Scan(&dropped); err != nil || !dropped {
			t.Fatalf("drop_queue(%s) = %v, %v; want true", q, dropped, err)
		}
		if u.tableExists(t, ctx, "q_"+q) || u.tableExists(t, ctx, "a_"+q) {
			t.Fatalf("drop_queue(%s) left its tables", q)
		}
	}
	if n := u.int64s(t, ctx, "SELECT count(*) FROM pgmq.list_queues() WHERE queue_name IN ('unlogged_q', 'dropme')"); n[0] != 0 {
		t.Fatalf("dropped queues still listed: %d", n[0])
	}
	notices()

	u.need(t, ctx, "drop_queue returning false for a missing queue (PGMQ 1.6+)", "pgmq.acquire_queue_lock(text)")
	if err := conn.QueryRow(ctx, "SELECT pgmq.drop_queue('does_not_exist')").Scan(&dropped); err != nil || dropped {
		t.Fatalf("drop_queue of a missing queue = %v, %v; want false", dropped, err)
	}
	if got, want := notices(), []string{"NOTICE: pgmq queue `does_not_exist` does not exist"}; !slices.Equal(got, want) {
		t.Fatalf("notices = %q, want %q", got, want)
	}

	// The deprecated two-argument form warns, drops, and returns true whatever it found.
	u.exec(t, ctx, "SELECT pgmq.create('old_style')")
	for _, q := range []string{"old_style", "does_not_exist"} {
		if err := conn.QueryRow(ctx, "SELECT pgmq.drop_queue($1, false)", q).Scan(&dropped); err != nil || !dropped {
			t.Fatalf("drop_queue(%s, false) = %v, %v; want true", q, dropped, err)
		}
	}
	if u.tableExists(t, ctx, "q_old_style") {
		t.Fatal("drop_queue(old_style, false) left the table")
	}
	const deprecated = "WARNING: drop_queue(queue_name, partitioned) is deprecated and will be removed in PGMQ v2.0. Use drop_queue(queue_name) instead"
	if got := notices(); len(got) < 2 || got[0] != deprecated {
		t.Fatalf("notices = %q, want the deprecation warning first", got)
	}
}

// Every send and send_batch overload: delay in seconds or as a timestamp, headers or none.
func TestCompatSendForms(t *testing.T) {
	ctx, u := compatSetup(t)
	u.exec(t, ctx, "SELECT pgmq.create('sends')")
	at := u.serverNow(t, ctx).Add(time.Hour).Truncate(time.Microsecond)
	type sent struct {
		ids     []int64
		headers *string
		delay   time.Duration // seconds form; 0 with a timestamp
		at      *time.Time
	}
	h := `{"h": 1}`
	before := u.serverNow(t, ctx)
	var cases []sent
	for _, tc := range []struct {
		sql     string
		args    []any
		headers *string
		delay   time.Duration
		at      *time.Time
	}{
		{`SELECT pgmq.send('sends', '{"f": 1}'::jsonb)`, nil, nil, 0, nil},
		{`SELECT pgmq.send('sends', '{"f": 2}'::jsonb, $1::jsonb)`, []any{h}, &h, 0, nil},
		{`SELECT pgmq.send('sends', '{"f": 3}'::jsonb, $1::integer)`, []any{5}, nil, 5 * time.Second, nil},
		{`SELECT pgmq.send('sends', '{"f": 4}'::jsonb, $1::timestamptz)`, []any{at}, nil, 0, &at},
		{`SELECT pgmq.send('sends', '{"f": 5}'::jsonb, $1::jsonb, $2::integer)`, []any{h, 7}, &h, 7 * time.Second, nil},
		{`SELECT pgmq.send('sends', '{"f": 6}'::jsonb, $1::jsonb, $2::timestamptz)`, []any{h, at}, &h, 0, &at},
		{`SELECT pgmq.send_batch('sends', ARRAY['{"b": 1}', '{"b": 2}']::jsonb[])`, nil, nil, 0, nil},
		{`SELECT pgmq.send_batch('sends', ARRAY['{"b": 3}', '{"b": 4}']::jsonb[], ARRAY[$1, $1]::jsonb[])`, []any{h}, &h, 0, nil},
		{`SELECT pgmq.send_batch('sends', ARRAY['{"b": 5}', '{"b": 6}']::jsonb[], $1::integer)`, []any{9}, nil, 9 * time.Second, nil},
		{`SELECT pgmq.send_batch('sends', ARRAY['{"b": 7}', '{"b": 8}']::jsonb[], $1::timestamptz)`, []any{at}, nil, 0, &at},
		{`SELECT pgmq.send_batch('sends', ARRAY['{"b": 9}', '{"b": 10}']::jsonb[], ARRAY[$1, $1]::jsonb[], $2::integer)`, []any{h, 11}, &h, 11 * time.Second, nil},
		{`SELECT pgmq.send_batch('sends', ARRAY['{"b": 11}', '{"b": 12}']::jsonb[], ARRAY[$1, $1]::jsonb[], $2::timestamptz)`, []any{h, at}, &h, 0, &at},
	} {
		cases = append(cases, sent{u.int64s(t, ctx, tc.sql, tc.args...), tc.headers, tc.delay, tc.at})
	}
	after := u.serverNow(t, ctx)
	stored := u.records(t, ctx, "pgmq.q_sends ORDER BY msg_id")
	byID := map[int64]record{}
	for _, r := range stored {
		byID[r.ID] = r
	}
	next := int64(1)
	for i, c := range cases {
		for _, id := range c.ids {
			if id != next {
				t.Fatalf("case %d: ids %v, want consecutive from %d", i, c.ids, next)
			}
			next++
			r := byID[id]
			if !reflect.DeepEqual(r.Headers, c.headers) {
				t.Errorf("case %d: message %d headers %v, want %v", i, id, r.Headers, c.headers)
			}
			switch {
			case c.at != nil:
				if !r.VT.Equal(*c.at) {
					t.Errorf("case %d: message %d vt %v, want %v", i, id, r.VT, *c.at)
				}
			default:
				pgmqtest.AssertVTAfter(t, r.VT, before, after, c.delay)
			}
		}
	}
	// Only the undelayed messages are visible.
	visible := recordIDs(u.records(t, ctx, "pgmq.read('sends', 30, 100)"))
	if want := []int64{1, 2, 7, 8, 9, 10}; !slices.Equal(visible, want) {
		t.Fatalf("visible after sends = %v, want %v", visible, want)
	}
	// A NULL message is a message.
	ids := u.int64s(t, ctx, "SELECT pgmq.send('sends', NULL)")
	if got := u.records(t, ctx, "pgmq.read('sends', 30, 1)"); !slices.Equal(recordIDs(got), ids) || got[0].Body != nil {
		t.Fatalf("read of a NULL message = %+v", got)
	}

	u.need(t, ctx, "send_batch validation (PGMQ 1.11)", "pgmq._validate_batch_params(jsonb[], jsonb[])")
	u.expectError(t, ctx, "P0001", "msgs cannot be NULL or empty", "SELECT pgmq.send_batch('sends', ARRAY[]::jsonb[])")
	u.expectError(t, ctx, "P0001", "msgs cannot be NULL or empty", "SELECT pgmq.send_batch('sends', ARRAY[]::jsonb[], ARRAY[]::jsonb[])")
	u.expectError(t, ctx, "P0001", "msgs cannot be NULL or empty", "SELECT pgmq.send_batch('sends', ARRAY[]::jsonb[], 5)")
	u.expectError(t, ctx, "P0001", "headers array length (3) must match msgs array length (2)",
		`SELECT pgmq.send_batch('sends', ARRAY['{"msg": 1}', '{"msg": 2}']::jsonb[], ARRAY['{"h": 1}', '{"h": 2}', '{"h": 3}']::jsonb[])`)
}

// read claims visible messages oldest first, filters by conditional, counts the read and (1.10+)
// stamps last_read_at; concurrent readers skip each other's rows.
func TestCompatRead(t *testing.T) {
	ctx, u := compatSetup(t)
	u.exec(t, ctx, "SELECT pgmq.create('reads')")
	u.exec(t, ctx, `SELECT pgmq.send_batch('reads', ARRAY['{"k": "a"}', '{"k": "b"}', '{"k": "a", "x": 1}', '{"k": "c"}']::jsonb[])`)

	before := u.serverNow(t, ctx)
	first := u.records(t, ctx, "pgmq.read('reads', 10, 1)")
	after := u.serverNow(t, ctx)
	if !slices.Equal(recordIDs(first), []int64{1}) || first[0].ReadCount != 1 {
		t.Fatalf("first read = %+v, want message 1 read once", first)
	}
	pgmqtest.AssertVTAfter(t, first[0].VT, before, after, 10*time.Second)

	if got := recordIDs(u.records(t, ctx, `pgmq.read('reads', 10, 5, '{"k": "a"}')`)); !slices.Equal(got, []int64{3}) {
		t.Fatalf("conditional read = %v, want [3] (1 is hidden)", got)
	}
	// One transaction holds message 2; a concurrent reader gets 4, not 2, and does not wait.
	tx, err := u.db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	var held int64
	if err := tx.QueryRow(ctx, "SELECT msg_id FROM pgmq.read('reads', 10, 1)").Scan(&held); err != nil || held != 2 {
		t.Fatalf("transaction read = %d, %v; want 2", held, err)
	}
	if got := recordIDs(u.records(t, ctx, "pgmq.read('reads', 10, 5)")); !slices.Equal(got, []int64{4}) {
		t.Fatalf("concurrent read = %v, want [4]", got)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	// Rolled back: message 2 is visible again, unread. vt 0 leaves it visible after the read.
	again := u.records(t, ctx, "pgmq.read('reads', 0, 5)")
	if !slices.Equal(recordIDs(again), []int64{2}) || again[0].ReadCount != 1 {
		t.Fatalf("read after rollback = %+v, want message 2 read once", again)
	}

	u.needLastReadAt(t, ctx)
	if first[0].LastReadAt == nil || first[0].LastReadAt.Before(before) || first[0].LastReadAt.After(after) {
		t.Fatalf("last_read_at = %v, want the read's time (between %v and %v)", first[0].LastReadAt, before, after)
	}
	reread := u.records(t, ctx, "pgmq.read('reads', 0, 1)")
	if reread[0].ID != 2 || reread[0].ReadCount != 2 || !reread[0].LastReadAt.After(*again[0].LastReadAt) {
		t.Fatalf("second read of message 2 = %+v, want read_ct 2 and a later last_read_at than %v", reread[0], again[0].LastReadAt)
	}
	stored := u.records(t, ctx, "pgmq.q_reads WHERE msg_id = 2")
	if !stored[0].LastReadAt.Equal(*reread[0].LastReadAt) {
		t.Fatalf("stored last_read_at %v, returned %v", stored[0].LastReadAt, reread[0].LastReadAt)
	}
}

// pollingBackend waits until the backend pid is asleep in pg_sleep (read_with_poll between tries).
func pollingBackend(t *testing.T, ctx context.Context, u underTest, pid uint32) {
	t.Helper()
	deadline := time.Now().Add(testsignal.Timeout)
	for {
		var sleeping bool
		if err := u.db.Pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'PgSleep')", pid).Scan(&sleeping); err != nil {
			t.Fatal(err)
		}
		if sleeping {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("read_with_poll never slept")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// read_with_poll returns what is visible at once, else waits for a message to come (holding no
// row locks while it sleeps), else gives up after max_poll_seconds.
func TestCompatReadWithPoll(t *testing.T) {
	ctx, u := compatSetup(t)
	u.exec(t, ctx, "SELECT pgmq.create('polls')")
	u.exec(t, ctx, `SELECT pgmq.send('polls', '{"ready": true}')`)
	if got := u.records(t, ctx, "pgmq.read_with_poll('polls', 30, 5, 5, 100)"); !slices.Equal(recordIDs(got), []int64{1}) || got[0].ReadCount != 1 {
		t.Fatalf("read_with_poll of a visible message = %+v", got)
	}

	// Message 1 is hidden now. A poller waits; meanwhile another session locks and deletes
	// message 1 without waiting (the poller holds no lock on it), then sends message 2.
	conn, err := pgx.Connect(ctx, u.db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	type result struct {
		ids []int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		rows, err := conn.Query(ctx, `SELECT msg_id FROM pgmq.read_with_poll('polls', 30, 5, 15, 20, '{"wanted": true}')`)
		if err != nil {
			done <- result{err: err}
			return
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		done <- result{ids, err}
	}()
	pollingBackend(t, ctx, u, conn.PgConn().PID())
	tx, err := u.db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT msg_id FROM pgmq.q_polls FOR UPDATE NOWAIT"); err != nil {
		t.Fatalf("locking the queue's rows while read_with_poll sleeps: %v", err)
	}
	if _, err := tx.Exec(ctx, "SELECT pgmq.delete('polls', 1::bigint)"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	u.exec(t, ctx, `SELECT pgmq.send('polls', '{"wanted": false}')`) // filtered out by conditional
	pollingBackend(t, ctx, u, conn.PgConn().PID())
	u.exec(t, ctx, `SELECT pgmq.send('polls', '{"wanted": true}')`)
	if r := <-done; r.err != nil || !slices.Equal(r.ids, []int64{3}) {
		t.Fatalf("read_with_poll while a message arrived = %v, %v; want [3]", r.ids, r.err)
	}

	// Nothing comes: it returns nothing, and only after max_poll_seconds.
	start := time.Now()
	if got := u.records(t, ctx, `pgmq.read_with_poll('polls', 30, 5, 1, 50, '{"wanted": true}')`); len(got) != 0 {
		t.Fatalf("read_with_poll of an empty queue = %+v", got)
	}
	if waited := time.Since(start); waited < time.Second {
		t.Fatalf("read_with_poll gave up after %v, want at least max_poll_seconds (1s)", waited)
	}

	u.needLastReadAt(t, ctx)
	u.exec(t, ctx, `SELECT pgmq.send('polls', '{"last": true}')`)
	if got := u.records(t, ctx, "pgmq.read_with_poll('polls', 0, 1, 1)"); len(got) != 1 || got[0].LastReadAt == nil {
		t.Fatalf("read_with_poll record = %+v, want last_read_at set", got)
	}
}

// pop deletes what it returns: visible messages, oldest first, up to qty (1.7+; 1 before).
func TestCompatPop(t *testing.T) {
	ctx, u := compatSetup(t)
	u.exec(t, ctx, "SELECT pgmq.create('pops')")
	if got := u.records(t, ctx, "pgmq.pop('pops')"); len(got) != 0 {
		t.Fatalf("pop of an empty queue = %+v", got)
	}
	u.exec(t, ctx, `SELECT pgmq.send_batch('pops', ARRAY['1', '2', '3', '4', '5']::jsonb[])`)
	u.exec(t, ctx, `SELECT pgmq.send('pops', '6', 3600)`)
	u.exec(t, ctx, "SELECT * FROM pgmq.read('pops', 0, 1)") // message 1 read once, still visible
	got := u.records(t, ctx, "pgmq.pop('pops')")
	if !slices.Equal(recordIDs(got), []int64{1}) || got[0].ReadCount != 1 || *got[0].Body != "1" {
		t.Fatalf("pop = %+v, want message 1 as read once", got)
	}
	if left := u.int64s(t, ctx, "SELECT msg_id FROM pgmq.q_pops ORDER BY msg_id"); !slices.Equal(left, []int64{2, 3, 4, 5, 6}) {
		t.Fatalf("left after pop = %v", left)
	}

	u.need(t, ctx, "pop with qty (PGMQ 1.7+)", "pgmq.pop(text, integer)")
	if got := recordIDs(u.records(t, ctx, "pgmq.pop('pops', 3)")); !slices.Equal(got, []int64{2, 3, 4}) {
		t.Fatalf("pop 3 = %v", got)
	}
	if got := recordIDs(u.records(t, ctx, "pgmq.pop('pops', 10)")); !slices.Equal(got, []int64{5}) {
		t.Fatalf("pop 10 = %v, want only the visible [5]", got)
	}
	if left := u.int64s(t, ctx, "SELECT msg_id FROM pgmq.q_pops"); !slices.Equal(left, []int64{6}) {
		t.Fatalf("left after pops = %v, want the delayed [6]", left)
	}

	u.needLastReadAt(t, ctx)
	u.exec(t, ctx, `SELECT pgmq.send_batch('pops', ARRAY['7', '8']::jsonb[])`)
	u.exec(t, ctx, "SELECT * FROM pgmq.read('pops', 0, 1)")
	got = u.records(t, ctx, "pgmq.pop('pops', 2)")
	if len(got) != 2 || got[0].LastReadAt == nil || got[1].LastReadAt != nil {
		t.Fatalf("pop = %+v, want last_read_at set on the read message 7 only", got)
	}
}

// archive moves messages (with their headers, read count and last read) to a_<queue>; delete
// removes them; both report what they found.
func TestCompatArchiveAndDelete(t *testing.T) {
	ctx, u := compatSetup(t)
	u.exec(t, ctx, "SELECT pgmq.create('acks')")
	u.exec(t, ctx, `SELECT pgmq.send('acks', '0', '{"headers": 1}'::jsonb)`)
	u.exec(t, ctx, `SELECT pgmq.send_batch('acks', ARRAY['0', '0', '0', '0', '0']::jsonb[])`)
	read := u.records(t, ctx, "pgmq.read('acks', 0, 1)")

	if got := u.int64s(t, ctx, "SELECT pgmq.archive('acks', ARRAY[1, 2, 99]::bigint[])"); !slices.Equal(pgmqtest.Sorted(got), []int64{1, 2}) {
		t.Fatalf("archive batch = %v, want [1 2]", got)
	}
	var ok bool
	if err := u.db.Pool.QueryRow(ctx, "SELECT pgmq.archive('acks', 3::bigint)").Scan(&ok); err != nil || !ok {
		t.Fatalf("archive 3 = %v, %v", ok, err)
	}
	if err := u.db.Pool.QueryRow(ctx, "SELECT pgmq.archive('acks', 3::bigint)").Scan(&ok); err != nil || ok {
		t.Fatalf("archive 3 again = %v, %v; want false", ok, err)
	}
	archived := u.records(t, ctx, "pgmq.a_acks ORDER BY msg_id")
	if !slices.Equal(recordIDs(archived), []int64{1, 2, 3}) || archived[0].Headers == nil || *archived[0].Headers != `{"headers": 1}` ||
		archived[0].ReadCount != 1 || archived[1].Headers != nil || !archived[0].EnqueuedAt.Equal(read[0].EnqueuedAt) {
		t.Fatalf("archive table = %+v", archived)
	}
	var archivedAt time.Time
	if err := u.db.Pool.QueryRow(ctx, "SELECT archived_at FROM pgmq.a_acks WHERE msg_id = 1").Scan(&archivedAt); err != nil || archivedAt.IsZero() {
		t.Fatalf("archived_at = %v, %v", archivedAt, err)
	}

	if err := u.db.Pool.QueryRow(ctx, "SELECT pgmq.delete('acks', 4::bigint)").Scan(&ok); err != nil || !ok {
		t.Fatalf("delete 4 = %v, %v", ok, err)
	}
	if err := u.db.Pool.QueryRow(ctx, "SELECT pgmq.delete('acks', 4::bigint)").Scan(&ok); err != nil || ok {
		t.Fatalf("delete 4 again = %v, %v; want false", ok, err)
	}
	if got := u.int64s(t, ctx, "SELECT pgmq.delete('acks', ARRAY[5, 6, 4]::bigint[])"); !slices.Equal(pgmqtest.Sorted(got), []int64{5, 6}) {
		t.Fatalf("delete batch = %v, want [5 6]", got)
	}
	if n := u.int64s(t, ctx, "SELECT count(*) FROM pgmq.q_acks"); n[0] != 0 {
		t.Fatalf("%d messages left", n[0])
	}

	u.needLastReadAt(t, ctx)
	if archived[0].LastReadAt == nil || !archived[0].LastReadAt.Equal(*read[0].LastReadAt) || archived[1].LastReadAt != nil {
		t.Fatalf("archived last_read_at = %v / %v, want the read's %v / nil", archived[0].LastReadAt, archived[1].LastReadAt, read[0].LastReadAt)
	}
}

// set_vt moves visibility (seconds from now or a timestamp; one message or many) without counting
// a read.
func TestCompatSetVT(t *testing.T) {
	ctx, u := compatSetup(t)
	u.exec(t, ctx, "SELECT pgmq.create('vts')")
	if got := u.records(t, ctx, "pgmq.set_vt('vts', 9999, 0)"); len(got) != 0 {
		t.Fatalf("set_vt of a missing message = %+v", got)
	}
	u.exec(t, ctx, `SELECT pgmq.send_batch('vts', ARRAY['1', '2', '3']::jsonb[])`)
	before := u.serverNow(t, ctx)
	got := u.records(t, ctx, "pgmq.set_vt('vts', 1, 100)")
	after := u.serverNow(t, ctx)
	if !slices.Equal(recordIDs(got), []int64{1}) || got[0].ReadCount != 0 {
		t.Fatalf("set_vt = %+v", got)
	}
	pgmqtest.AssertVTAfter(t, got[0].VT, before, after, 100*time.Second)
	if ids := recordIDs(u.records(t, ctx, "pgmq.read('vts', 0, 10)")); !slices.Equal(ids, []int64{2, 3}) {
		t.Fatalf("read after hiding 1 = %v", ids)
	}
	u.exec(t, ctx, "SELECT * FROM pgmq.set_vt('vts', 1, 0)")
	if ids := recordIDs(u.records(t, ctx, "pgmq.read('vts', 0, 10)")); !slices.Equal(ids, []int64{1, 2, 3}) {
		t.Fatalf("read after showing 1 = %v", ids)
	}

	u.need(t, ctx, "batch set_vt (PGMQ 1.8+)", "pgmq.set_vt(text, bigint[], integer)")
	got = u.records(t, ctx, "pgmq.set_vt('vts', ARRAY[3, 1, 42]::bigint[], 100)")
	if !slices.Equal(recordIDs(got), []int64{1, 3}) {
		t.Fatalf("batch set_vt = %v, want [1 3]", recordIDs(got))
	}
	if ids := recordIDs(u.records(t, ctx, "pgmq.read('vts', 0, 10)")); !slices.Equal(ids, []int64{2}) {
		t.Fatalf("read after batch hide = %v", ids)
	}

	u.need(t, ctx, "set_vt to a timestamp (PGMQ 1.10+)", "pgmq.set_vt(text, bigint, timestamp with time zone)")
	future := u.serverNow(t, ctx).Add(65 * time.Second).Truncate(time.Microsecond)
	if got := u.records(t, ctx, "pgmq.set_vt('vts', 2, $1::timestamptz)", future); len(got) != 1 || !got[0].VT.Equal(future) {
		t.Fatalf("set_vt to %v = %+v", future, got)
	}
	now := u.serverNow(t, ctx).Truncate(time.Microsecond)
	got = u.records(t, ctx, "pgmq.set_vt('vts', ARRAY[1, 2, 3]::bigint[], $1::timestamptz)", now)
	if !slices.Equal(recordIDs(got), []int64{1, 2, 3}) || !got[0].VT.Equal(now) || !got[2].VT.Equal(now) {
		t.Fatalf("batch set_vt to %v = %+v", now, got)
	}
	if ids := recordIDs(u.records(t, ctx, "pgmq.read('vts', 0, 10)")); !slices.Equal(ids, []int64{1, 2, 3}) {
		t.Fatalf("read after batch show = %v", ids)
	}

	u.needLastReadAt(t, ctx)
	u.exec(t, ctx, `SELECT pgmq.send('vts', '4')`)
	if got := u.records(t, ctx, "pgmq.set_vt('vts', 4, 0)"); got[0].LastReadAt != nil {
		t.Fatalf("set_vt of an unread message = %+v, want no last_read_at", got[0])
	}
	if got := u.records(t, ctx, "pgmq.set_vt('vts', ARRAY[1, 2]::bigint[], 0)"); got[0].LastReadAt == nil || got[1].LastReadAt == nil {
		t.Fatalf("batch set_vt of read messages = %+v, want their last_read_at", got)
	}
}

// purge_queue empties a queue (not its archive); metrics and metrics_all count as PGMQ does.
func TestCompatPurgeAndMetrics(t *testing.T) {
	ctx, u := compatSetup(t)
	u.exec(t, ctx, "SELECT pgmq.create('metered')")
	u.exec(t, ctx, "SELECT pgmq.create('empty_one')")
	u.exec(t, ctx, `SELECT pgmq.send_batch('metered', ARRAY['1', '2', '3', '4', '5']::jsonb[])`)
	u.exec(t, ctx, `SELECT pgmq.send_batch('metered', ARRAY['6', '7']::jsonb[], 10)`)
	u.exec(t, ctx, "SELECT pgmq.archive('metered', 1::bigint)")

	type metrics struct {
		Name                   string
		Length, Total, Visible int64
		Newest, Oldest         *int32
		ScrapeTime             time.Time
	}
	scan := func(sql string, args ...any) []metrics {
		rows, err := u.db.Pool.Query(ctx, "SELECT queue_name, queue_length, total_messages, queue_visible_length, newest_msg_age_sec, oldest_msg_age_sec, scrape_time FROM "+sql, args...)
		if err != nil {
			t.Fatal(err)
		}
		ms, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (metrics, error) {
			var m metrics
			err := r.Scan(&m.Name, &m.Length, &m.Total, &m.Visible, &m.Newest, &m.Oldest, &m.ScrapeTime)
			return m, err
		})
		if err != nil {
			t.Fatal(err)
		}
		return ms
	}
	m := scan("pgmq.metrics('metered')")
	// Ages are whole seconds since the newest and oldest enqueue: 0 unless this machine is slow.
	age := func(a *int32) bool { return a != nil && *a >= 0 && *a <= 5 }
	if len(m) != 1 || m[0].Name != "metered" || m[0].Length != 6 || m[0].Total != 7 || m[0].Visible != 4 ||
		!age(m[0].Newest) || !age(m[0].Oldest) || m[0].ScrapeTime.IsZero() {
		t.Fatalf("metrics = %+v, want length 6, total 7, visible 4, ages of a few seconds at most", m)
	}
	if e := scan("pgmq.metrics('empty_one')"); e[0].Length != 0 || e[0].Total != 0 || e[0].Newest != nil || e[0].Oldest != nil {
		t.Fatalf("metrics of an empty queue = %+v", e)
	}
	all := scan("pgmq.metrics_all()")
	names := make([]string, len(all))
	for i, a := range all {
		names[i] = a.Name
	}
	if !slices.Contains(names, "metered") || !slices.Contains(names, "empty_one") {
		t.Fatalf("metrics_all queues = %v", names)
	}
	var queues int64
	if err := u.db.Pool.QueryRow(ctx, "SELECT count(*) FROM pgmq.list_queues()").Scan(&queues); err != nil || queues != int64(len(all)) {
		t.Fatalf("list_queues has %d queues, metrics_all %d (%v)", queues, len(all), err)
	}

	if n := u.int64s(t, ctx, "SELECT pgmq.purge_queue('metered')"); !slices.Equal(n, []int64{6}) {
		t.Fatalf("purge_queue = %v, want [6]", n)
	}
	if n := u.int64s(t, ctx, "SELECT (SELECT count(*) FROM pgmq.q_metered) * 10 + (SELECT count(*) FROM pgmq.a_metered)"); n[0] != 1 {
		t.Fatalf("after purge: queue*10+archive = %d, want the archive's 1 only", n[0])
	}
	if ids := u.int64s(t, ctx, "SELECT pgmq.send('metered', '8')"); !slices.Equal(ids, []int64{8}) {
		t.Fatalf("send after purge = %v, want id 8 (ids are never reused)", ids)
	}
}

// The bundled schema refuses what it does not implement with SQLSTATE 0A000 and a message that
// says so, rather than "function does not exist".
func TestCompatRefusesUnsupportedFeatures(t *testing.T) {
	ctx, u := compatSetup(t)
	if !u.bundled {
		t.Skipf("%s is a real PGMQ", u.source)
	}
	u.exec(t, ctx, "SELECT pgmq.create('plain')")
	for sql, feature := range map[string]string{
		"SELECT pgmq.create_partitioned('parts')":                                 "partitioned queues",
		"SELECT pgmq.create_partitioned('parts', '5 seconds', '10 seconds')":      "partitioned queues",
		"SELECT pgmq.convert_archive_partitioned('plain')":                        "partitioned queues",
		"SELECT * FROM pgmq.read_grouped('plain', 30, 1)":                         "FIFO groups",
		"SELECT * FROM pgmq.read_grouped_with_poll('plain', 30, 1)":               "FIFO groups",
		"SELECT * FROM pgmq.read_grouped_rr('plain', 30, 1)":                      "FIFO groups",
		"SELECT * FROM pgmq.read_grouped_rr_with_poll('plain', 30, 1)":            "FIFO groups",
		"SELECT * FROM pgmq.read_grouped_head('plain', 30, 1)":                    "FIFO groups",
		"SELECT * FROM pgmq.read_grouped_head_with_poll('plain', 30, 1)":          "FIFO groups",
		"SELECT pgmq.create_fifo_index('plain')":                                  "FIFO groups",
		"SELECT pgmq.create_fifo_indexes_all()":                                   "FIFO groups",
		"SELECT pgmq.bind_topic('logs.*', 'plain')":                               "topics",
		"SELECT pgmq.unbind_topic('logs.*', 'plain')":                             "topics",
		"SELECT * FROM pgmq.test_routing('logs.error')":                           "topics",
		`SELECT pgmq.send_topic('logs.error', '{}')`:                              "topics",
		`SELECT pgmq.send_topic('logs.error', '{}', 5)`:                           "topics",
		`SELECT pgmq.send_topic('logs.error', '{}', '{}', 5)`:                     "topics",
		`SELECT * FROM pgmq.send_batch_topic('logs.error', ARRAY['{}']::jsonb[])`: "topics",
		"SELECT pgmq.enable_notify_insert('plain')":                               "PGMQ insert notifications",
		"SELECT pgmq.disable_notify_insert('plain')":                              "PGMQ insert notifications",
	} {
		fn := sql[strings.Index(sql, "pgmq."):strings.Index(sql, "(")]
		u.expectError(t, ctx, "0A000", fmt.Sprintf("%s: %s are not supported by the bundled PGMQ schema", fn, feature), sql)
	}
}
