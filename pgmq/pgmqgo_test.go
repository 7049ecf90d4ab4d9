package pgmq_test

// A stock third-party client, github.com/craigpastro/pgmq-go, against the PGMQ under test (the
// bundled schema by default), next to the project's own client. pgmq-go v0.6.0 predates PGMQ
// 1.10: it scans read and pop results by position into six columns, so on the 1.10 shape (real
// PGMQ 1.10+ and the bundled schema alike) those calls fail on the extra last_read_at column;
// everything else works. The assertions follow what real PGMQ 1.11 does.

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	pgmqgo "github.com/craigpastro/pgmq-go"

	"github.com/tasker-systems/consumer/internal/pgmqtest"
	"github.com/tasker-systems/consumer/pgmq"
)

// hasLastReadAt reports whether the PGMQ under test has the 1.10 record shape.
func (u underTest) hasLastReadAt(t *testing.T) bool {
	t.Helper()
	var ok bool
	err := u.db.Pool.QueryRow(t.Context(), `SELECT EXISTS (SELECT 1 FROM pg_attribute
		WHERE attrelid = 'pgmq.message_record'::regclass AND attname = 'last_read_at' AND NOT attisdropped)`).Scan(&ok)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// wantShapeMismatch checks the error pgmq-go v0.6.0 gets scanning a 1.10-shaped row.
func wantShapeMismatch(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), "number of field descriptions must equal number of destinations, got 7 and 6") {
		t.Fatalf("pgmq-go %s on the 1.10 shape: error %v, want its six-column scan to fail on seven", what, err)
	}
}

func TestPgmqGoLifecycle(t *testing.T) {
	ctx, u := compatSetup(t)
	db := u.db.Pool
	// pgmq-go's own tests name queues after the test, in mixed case.
	const queue = "PgmqGoQueue"
	if err := pgmqgo.CreateQueue(ctx, db, queue); err != nil {
		t.Fatalf("CreateQueue: %v", err)
	}
	if err := pgmqgo.CreateQueue(ctx, db, queue); err != nil {
		t.Fatalf("CreateQueue again: %v", err)
	}
	if err := pgmqgo.CreateUnloggedQueue(ctx, db, "PgmqGoUnlogged"); err != nil {
		t.Fatalf("CreateUnloggedQueue: %v", err)
	}

	msg := json.RawMessage(`{"foo": "bar1"}`)
	id1, err := pgmqgo.Send(ctx, db, queue, msg)
	if err != nil || id1 != 1 {
		t.Fatalf("Send = %d, %v; want id 1", id1, err)
	}
	delayed, err := pgmqgo.SendWithDelay(ctx, db, queue, msg, 3600)
	if err != nil || delayed != 2 {
		t.Fatalf("SendWithDelay = %d, %v", delayed, err)
	}
	at := time.Now().Add(time.Hour)
	stamped, err := pgmqgo.SendWithDelayTimestamp(ctx, db, queue, msg, at)
	if err != nil || stamped != 3 {
		t.Fatalf("SendWithDelayTimestamp = %d, %v", stamped, err)
	}
	batch, err := pgmqgo.SendBatch(ctx, db, queue, []json.RawMessage{msg, json.RawMessage(`{"foo": "bar2"}`)})
	if err != nil || !slices.Equal(batch, []int64{4, 5}) {
		t.Fatalf("SendBatch = %v, %v", batch, err)
	}
	if ids, err := pgmqgo.SendBatchWithDelay(ctx, db, queue, []json.RawMessage{msg}, 3600); err != nil || !slices.Equal(ids, []int64{6}) {
		t.Fatalf("SendBatchWithDelay = %v, %v", ids, err)
	}
	if ids, err := pgmqgo.SendBatchWithDelayTimestamp(ctx, db, queue, []json.RawMessage{msg}, at); err != nil || !slices.Equal(ids, []int64{7}) {
		t.Fatalf("SendBatchWithDelayTimestamp = %v, %v", ids, err)
	}
	if _, err := pgmqgo.Send(ctx, db, queue, json.RawMessage(`{"foo":}`)); err == nil {
		t.Fatal("Send of invalid JSON succeeded")
	}
	var stampedVT time.Time
	if err := db.QueryRow(ctx, "SELECT vt FROM pgmq.q_pgmqgoqueue WHERE msg_id = 3").Scan(&stampedVT); err != nil || !stampedVT.Equal(at.Truncate(time.Microsecond)) {
		t.Fatalf("vt of the timestamp-delayed message = %v, %v; want %v", stampedVT, err, at)
	}

	// Pops and reads: the visible messages are 1, 4 and 5. The statements run whatever the
	// shape; on 1.10 only pgmq-go's scan of their result fails.
	if u.hasLastReadAt(t) {
		_, err := pgmqgo.Pop(ctx, db, queue)
		wantShapeMismatch(t, "Pop", err)
		_, err = pgmqgo.Read(ctx, db, queue, 30)
		wantShapeMismatch(t, "Read", err)
		_, err = pgmqgo.ReadBatch(ctx, db, queue, 30, 5)
		wantShapeMismatch(t, "ReadBatch", err)
	} else {
		p, err := pgmqgo.Pop(ctx, db, queue)
		if err != nil || p.MsgID != 1 || string(p.Message) != string(msg) {
			t.Fatalf("Pop = %+v, %v", p, err)
		}
		m, err := pgmqgo.Read(ctx, db, queue, 30)
		if err != nil || m.MsgID != 4 || m.ReadCount != 1 {
			t.Fatalf("Read = %+v, %v", m, err)
		}
		ms, err := pgmqgo.ReadBatch(ctx, db, queue, 30, 5)
		if err != nil || len(ms) != 1 || ms[0].MsgID != 5 {
			t.Fatalf("ReadBatch = %v, %v", ms, err)
		}
	}
	if left := recordIDs(u.records(t, ctx, "pgmq.q_pgmqgoqueue")); !slices.Equal(left, []int64{2, 3, 4, 5, 6, 7}) {
		t.Fatalf("after pop and reads the queue holds %v, want 1 popped", left)
	}
	if rs := u.records(t, ctx, "pgmq.q_pgmqgoqueue WHERE msg_id IN (4, 5)"); rs[0].ReadCount != 1 || rs[1].ReadCount != 1 {
		t.Fatalf("read messages %+v, want each read once", rs)
	}
	// Whatever the shape, an empty read or pop is ErrNoRows.
	if err := pgmqgo.CreateQueue(ctx, db, "PgmqGoEmpty"); err != nil {
		t.Fatal(err)
	}
	if _, err := pgmqgo.Read(ctx, db, "PgmqGoEmpty", 30); !errors.Is(err, pgmqgo.ErrNoRows) {
		t.Fatalf("Read of an empty queue: %v, want ErrNoRows", err)
	}
	if _, err := pgmqgo.Pop(ctx, db, "PgmqGoEmpty"); !errors.Is(err, pgmqgo.ErrNoRows) {
		t.Fatalf("Pop of an empty queue: %v, want ErrNoRows", err)
	}

	ok, err := pgmqgo.Archive(ctx, db, queue, 2)
	if err != nil || !ok {
		t.Fatalf("Archive = %v, %v", ok, err)
	}
	if ok, err := pgmqgo.Archive(ctx, db, queue, 100); err != nil || ok {
		t.Fatalf("Archive of a missing message = %v, %v", ok, err)
	}
	if ids, err := pgmqgo.ArchiveBatch(ctx, db, queue, []int64{3, 6, 100}); err != nil || !slices.Equal(pgmqtest.Sorted(ids), []int64{3, 6}) {
		t.Fatalf("ArchiveBatch = %v, %v", ids, err)
	}
	// As pgmq-go's own test checks: the archive table is pgmq.a_<lower-cased name>.
	tag, err := db.Exec(ctx, fmt.Sprintf("SELECT * FROM pgmq.a_%s", queue))
	if err != nil || tag.RowsAffected() != 3 {
		t.Fatalf("archive rows = %v, %v; want 3", tag.RowsAffected(), err)
	}
	if ok, err := pgmqgo.Delete(ctx, db, queue, 7); err != nil || !ok {
		t.Fatalf("Delete = %v, %v", ok, err)
	}
	if ok, err := pgmqgo.Delete(ctx, db, queue, 100); err != nil || ok {
		t.Fatalf("Delete of a missing message = %v, %v", ok, err)
	}
	leftIDs := recordIDs(u.records(t, ctx, "pgmq.q_pgmqgoqueue"))
	if ids, err := pgmqgo.DeleteBatch(ctx, db, queue, append(leftIDs, 100)); err != nil || !slices.Equal(pgmqtest.Sorted(ids), leftIDs) {
		t.Fatalf("DeleteBatch of %v = %v, %v", leftIDs, ids, err)
	}

	if err := pgmqgo.DropQueue(ctx, db, queue); err != nil {
		t.Fatalf("DropQueue: %v", err)
	}
	if u.tableExists(t, ctx, "q_pgmqgoqueue") {
		t.Fatal("DropQueue left the table")
	}
	// PGMQ 1.6+ answers false (with a notice) for a queue that does not exist, so pgmq-go,
	// which expects an error there, gets none: its TestDropQueueWhichDoesNotExist fails on
	// real PGMQ 1.11 just the same.
	u.need(t, ctx, "drop_queue returning false for a missing queue (PGMQ 1.6+)", "pgmq.acquire_queue_lock(text)")
	if err := pgmqgo.DropQueue(ctx, db, "PgmqGoNeverCreated"); err != nil {
		t.Fatalf("DropQueue of a missing queue: %v, want no error (drop_queue returns false)", err)
	}
}

// Messages flow between pgmq-go and the project's client in both directions.
func TestPgmqGoAndProjectClientInterwork(t *testing.T) {
	ctx, u := compatSetup(t)
	db := u.db.Pool
	const queue = "interwork"
	if err := pgmqgo.CreateQueue(ctx, db, queue); err != nil {
		t.Fatal(err)
	}
	fromGo, err := pgmqgo.SendBatch(ctx, db, queue, []json.RawMessage{json.RawMessage(`{"from": "pgmq-go"}`), json.RawMessage(`[1, 2]`)})
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgmq.Read(ctx, db, queue, 30*time.Second, 10)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(pgmqtest.Sorted(pgmqtest.IDs(got)), fromGo) {
		t.Fatalf("project client read %v, pgmq-go sent %v", pgmqtest.IDs(got), fromGo)
	}
	for _, m := range got {
		if m.ReadCount != 1 || m.Headers != nil {
			t.Fatalf("message %+v", m)
		}
	}
	if ids, err := pgmqgo.ArchiveBatch(ctx, db, queue, fromGo); err != nil || !slices.Equal(pgmqtest.Sorted(ids), fromGo) {
		t.Fatalf("pgmq-go archived %v, %v; want the messages the project client read", ids, err)
	}

	fromProject, err := pgmq.SendBatch(ctx, db, queue, []json.RawMessage{json.RawMessage(`{"from": "project"}`)}, pgmq.SendOptions{Headers: json.RawMessage(`{"h": 1}`)})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := pgmqgo.Delete(ctx, db, queue, fromProject[0]); err != nil || !ok {
		t.Fatalf("pgmq-go delete of the project client's message = %v, %v", ok, err)
	}
	if m, err := pgmq.QueueMetrics(ctx, db, queue); err != nil || m.Length != 0 || m.TotalMessages != 3 {
		t.Fatalf("metrics = %+v, %v; want an empty queue that handed out 3 ids", m, err)
	}
}
