package migrate_test

import (
	"context"
	_ "embed"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/consumer/internal/testdb"
	"github.com/tasker-systems/consumer/migrate"
)

// bundledV1 is the first bundled PGMQ schema, as the project first shipped it (version 1: no
// last_read_at, no version record).
//
//go:embed testdata/bundled-pgmq-v1.sql
var bundledV1 string

// storedMessage is a queue or archive row as stored, for before/after comparison.
type storedMessage struct {
	Table      string
	ID         int64
	ReadCount  int32
	EnqueuedAt time.Time
	VT         time.Time
	Body       string
	Headers    *string
}

func storedMessages(t *testing.T, ctx context.Context, db *testdb.DB) []storedMessage {
	t.Helper()
	rows, err := db.Pool.Query(ctx, `
		SELECT 'q', msg_id, read_ct, enqueued_at, vt, message::text, headers::text FROM pgmq.q_legacy
		UNION ALL
		SELECT 'a', msg_id, read_ct, enqueued_at, vt, message::text, headers::text FROM pgmq.a_legacy
		ORDER BY 1, 2`)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (storedMessage, error) {
		var m storedMessage
		err := r.Scan(&m.Table, &m.ID, &m.ReadCount, &m.EnqueuedAt, &m.VT, &m.Body, &m.Headers)
		return m, err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func exec(t *testing.T, ctx context.Context, db *testdb.DB, sql string, args ...any) {
	t.Helper()
	if _, err := db.Pool.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// functionSet lists the pgmq functions with their signatures and return types.
func functionSet(t *testing.T, ctx context.Context, db *testdb.DB) []string {
	t.Helper()
	rows, err := db.Pool.Query(ctx, `
		SELECT p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ') ' || pg_get_function_result(p.oid) || ' ' || md5(p.prosrc)
		FROM pg_proc p WHERE p.pronamespace = 'pgmq'::regnamespace ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	fns, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return fns
}

// A database created by the first bundled version, holding visible, delayed, read and archived
// messages with and without headers, is upgraded in place by migrate: every message keeps its
// id, body, headers, read count and timestamps, and the schema ends up as a fresh install's.
func TestUpgradeFromFirstBundledVersionKeepsMessages(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	db := testdb.NewBlank(t, 4)
	if _, err := db.Pool.Exec(ctx, bundledV1, pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatalf("install bundled version 1: %v", err)
	}
	exec(t, ctx, db, "SELECT pgmq.create('legacy')")
	exec(t, ctx, db, `SELECT pgmq.send('legacy', '{"n": 1}')`)
	exec(t, ctx, db, `SELECT pgmq.send('legacy', '{"n": 2}', '{"h": "x"}'::jsonb)`)
	exec(t, ctx, db, `SELECT pgmq.send('legacy', '{"n": 3}', 3600)`)
	exec(t, ctx, db, `SELECT pgmq.send_batch('legacy', ARRAY['{"n": 4}', '{"n": 5}']::jsonb[])`)
	exec(t, ctx, db, "SELECT * FROM pgmq.read('legacy', 600, 1)") // message 1: read_ct 1, hidden
	exec(t, ctx, db, "SELECT pgmq.archive('legacy', 5::bigint)")
	before := storedMessages(t, ctx, db)
	if len(before) != 5 {
		t.Fatalf("set-up stored %d messages, want 5", len(before))
	}

	rep, err := migrate.Up(ctx, db.Pool, nil)
	if err != nil {
		t.Fatalf("migrate over bundled version 1: %v", err)
	}
	if rep.PGMQ != migrate.PGMQBundled || rep.PGMQVersion != "2" {
		t.Fatalf("report = %+v, want the bundled schema at version 2", rep)
	}
	if after := storedMessages(t, ctx, db); !reflect.DeepEqual(after, before) {
		t.Fatalf("messages changed by the upgrade:\nbefore %+v\nafter  %+v", before, after)
	}

	// The upgraded queue works as a fresh one: reads set last_read_at, ids continue.
	var id, readCt int64
	var body json.RawMessage
	var lastReadAt *time.Time
	err = db.Pool.QueryRow(ctx, "SELECT msg_id, read_ct, message, last_read_at FROM pgmq.read('legacy', 600, 1)").
		Scan(&id, &readCt, &body, &lastReadAt)
	if err != nil {
		t.Fatalf("read after upgrade: %v", err)
	}
	if id != 2 || readCt != 1 || lastReadAt == nil {
		t.Fatalf("read after upgrade = id %d read_ct %d last_read_at %v, want 2, 1 and set", id, readCt, lastReadAt)
	}
	if err := db.Pool.QueryRow(ctx, `SELECT pgmq.send('legacy', '{"n": 6}')`).Scan(&id); err != nil || id != 6 {
		t.Fatalf("send after upgrade = %d, %v; want id 6", id, err)
	}
	var archivedLastRead *time.Time
	exec(t, ctx, db, "SELECT pgmq.archive('legacy', 2::bigint)")
	if err := db.Pool.QueryRow(ctx, "SELECT last_read_at FROM pgmq.a_legacy WHERE msg_id = 2").Scan(&archivedLastRead); err != nil || archivedLastRead == nil {
		t.Fatalf("archived message's last_read_at = %v, %v; want it kept", archivedLastRead, err)
	}

	// The project's claim and notify functions work on the upgraded table too.
	exec(t, ctx, db, "SELECT tasker.enable_queue_notify('legacy')")
	var claimed int
	if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM tasker.pgmq_read_specific_messages('legacy', ARRAY[4, 6]::bigint[], 30)").Scan(&claimed); err != nil || claimed != 2 {
		t.Fatalf("claim on upgraded queue = %d, %v; want 2", claimed, err)
	}

	fresh := testdb.NewBlank(t, 2)
	if _, err := migrate.Up(ctx, fresh.Pool, nil); err != nil {
		t.Fatal(err)
	}
	if got, want := functionSet(t, ctx, db), functionSet(t, ctx, fresh); !reflect.DeepEqual(got, want) {
		t.Fatalf("upgraded functions differ from a fresh install's:\ngot  %q\nwant %q", got, want)
	}
	var versions []int32
	rows, err := db.Pool.Query(ctx, "SELECT version FROM pgmq.bundled_version ORDER BY version")
	if err == nil {
		versions, err = pgx.CollectRows(rows, pgx.RowTo[int32])
	}
	if err != nil || !reflect.DeepEqual(versions, []int32{2}) {
		t.Fatalf("bundled versions recorded = %v, %v; want [2]", versions, err)
	}
	second, err := migrate.Up(ctx, db.Pool, nil)
	if err != nil || second.PGMQVersion != "2" {
		t.Fatalf("second migrate = %+v, %v", second, err)
	}
}
