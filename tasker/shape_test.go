package tasker_test

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/tasker-systems/consumer/internal/pgmqtest"
	"github.com/tasker-systems/consumer/pgmq"
	"github.com/tasker-systems/consumer/tasker"
)

// The project's claim and notify functions (tasker.*) name the columns they use, so they work on
// queue tables of PGMQ before 1.10, which have no last_read_at, as on the 1.10 shape. Here a
// queue table is given the older shape by dropping the column; TEST_DATABASE_URL pointing at a
// real PGMQ 1.5 runs the whole suite on it.
func TestTaskerFunctionsOnPre110Shape(t *testing.T) {
	t.Parallel()
	ctx, db := notifySetup(t)
	const queue = "old_shape"
	if err := pgmq.Create(ctx, db.Pool, queue); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, "ALTER TABLE pgmq.q_old_shape DROP COLUMN IF EXISTS last_read_at"); err != nil {
		t.Fatal(err)
	}
	if err := tasker.EnableNotify(ctx, db.Pool, queue); err != nil {
		t.Fatal(err)
	}
	channel := tasker.NotifyChannel(queue)
	conn := listen(t, ctx, db, channel)

	id, err := pgmq.Send(ctx, db.Pool, queue, json.RawMessage(`{"n": 1}`), pgmq.SendOptions{Headers: json.RawMessage(`{"h": 1}`)})
	if err != nil {
		t.Fatal(err)
	}
	assertMessageReady(t, nextEvent(t, ctx, conn, channel), queue, id)
	batch, err := pgmq.SendBatch(ctx, db.Pool, queue, []json.RawMessage{json.RawMessage(`2`), json.RawMessage(`3`)}, pgmq.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, ctx, conn, channel); ev.EventType != "batch_ready" || !slices.Equal(ev.MsgIDs, batch) {
		t.Fatalf("batch event %+v, want batch_ready %v", ev, batch)
	}

	m, ok, err := tasker.ReadSpecific(ctx, db.Pool, queue, id, 30*time.Second)
	if err != nil || !ok || m.ReadCount != 1 || string(m.Headers) != `{"h": 1}` {
		t.Fatalf("ReadSpecific = %+v, %v, %v", m, ok, err)
	}
	claimed, err := tasker.ReadSpecificBatch(ctx, db.Pool, queue, append([]int64{id}, batch...), 30*time.Second)
	if err != nil || !slices.Equal(pgmqtest.IDs(claimed), batch) {
		t.Fatalf("ReadSpecificBatch = %v, %v; want %v (the first is claimed already)", pgmqtest.IDs(claimed), err, batch)
	}
	if done, err := pgmq.DeleteBatch(ctx, db.Pool, queue, append(batch, id)); err != nil || len(done) != 3 {
		t.Fatalf("DeleteBatch = %v, %v", done, err)
	}
}
