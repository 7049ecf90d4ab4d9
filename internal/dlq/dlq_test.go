package dlq_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tasker-systems/consumer/internal/dlq"
	"github.com/tasker-systems/consumer/internal/pgmqtest"
	"github.com/tasker-systems/consumer/internal/testdb"
	"github.com/tasker-systems/consumer/messages"
	"github.com/tasker-systems/consumer/pgmq"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// deadLetter writes a dead letter of source message msgID the way the consumer does: a
// messages.DeadLetter sent to the DLQ.
func deadLetter(t *testing.T, db *testdb.DB, source string, msgID int64, body string) int64 {
	t.Helper()
	raw, err := json.Marshal(messages.DeadLetter{
		SourceQueue: source, SourceMsgID: msgID, ReadCount: 1, Reason: messages.ReasonValidation,
		Error: fmt.Sprintf("bad message %d", msgID), Message: json.RawMessage(body), DeadLetteredAt: time.Now(),
	})
	if err != nil {
		t.Fatal(err)
	}
	id, err := pgmq.Send(context.Background(), db.Pool, dlq.Queue, raw, pgmq.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func msgIDs(ls []dlq.Letter) []int64 {
	out := make([]int64, len(ls))
	for i, l := range ls {
		out[i] = l.MsgID
	}
	return out
}

func TestListOldestFirstWithoutClaiming(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.New(t, 4)
	if ls, err := dlq.List(ctx, db.Pool, dlq.ListOptions{}); err != nil || len(ls) != 0 {
		t.Fatalf("empty DLQ: %v, %v", ls, err)
	}
	a := deadLetter(t, db, messages.QueueTaskRequests, 7, `{"a":1}`)
	b := deadLetter(t, db, messages.QueueStepResults, 8, `"not an object"`)
	c := pgmqtest.Send(t, t.Context(), db.Pool, dlq.Queue, `{"put":"here by hand"}`)
	archived := deadLetter(t, db, messages.QueueTaskRequests, 9, `{}`)
	if ok, err := pgmq.Archive(ctx, db.Pool, dlq.Queue, archived); err != nil || !ok {
		t.Fatalf("archive: %v %v", ok, err)
	}

	for range 2 { // listing twice: nothing was claimed or hidden
		ls, err := dlq.List(ctx, db.Pool, dlq.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := msgIDs(ls); fmt.Sprint(got) != fmt.Sprint([]int64{a, b, c}) {
			t.Fatalf("List = %v, want %v", got, []int64{a, b, c})
		}
		first := ls[0]
		if first.SourceQueue != messages.QueueTaskRequests || first.SourceMsgID != 7 || first.Reason != messages.ReasonValidation ||
			string(first.Message) != `{"a": 1}` && string(first.Message) != `{"a":1}` || first.Archived || first.EnqueuedAt.IsZero() {
			t.Errorf("first dead letter decoded as %+v", first)
		}
		if hand := ls[2]; hand.SourceQueue != "" || hand.Reason != "" || !strings.Contains(string(hand.Raw), "by hand") {
			t.Errorf("a body that is not a dead letter: %+v", hand)
		}
	}
	if ls, err := dlq.List(ctx, db.Pool, dlq.ListOptions{Limit: 2}); err != nil || fmt.Sprint(msgIDs(ls)) != fmt.Sprint([]int64{a, b}) {
		t.Errorf("List with Limit 2 = %v, %v", msgIDs(ls), err)
	}
	ls, err := dlq.List(ctx, db.Pool, dlq.ListOptions{Archived: true})
	if err != nil || fmt.Sprint(msgIDs(ls)) != fmt.Sprint([]int64{a, b, c, archived}) || !ls[3].Archived || ls[3].SourceMsgID != 9 {
		t.Errorf("List with the archive = %+v, %v", ls, err)
	}
}

func TestFindBySourceReadsOnlyAboveTheWatermark(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.New(t, 4)
	const q = messages.QueueTaskRequests
	old := deadLetter(t, db, q, 1, `{}`) // before the watermark
	w, err := dlq.Watermark(ctx, db.Pool)
	if err != nil || w != old {
		t.Fatalf("Watermark = %d, %v; want %d", w, err, old)
	}
	d2 := deadLetter(t, db, q, 2, `{"n":2}`)
	deadLetter(t, db, q, 2, `{"n":2}`) // a second dead letter of the same message: the first wins
	deadLetter(t, db, messages.QueueStepResults, 3, `{}`)
	// A hand-made dead letter whose source_msg_id is not a number must not break the lookup.
	pgmqtest.Send(t, t.Context(), db.Pool, dlq.Queue, `{"source_queue":"orchestration_task_requests","source_msg_id":"x"}`)
	d4 := deadLetter(t, db, q, 4, `{}`)
	if ok, err := pgmq.Archive(ctx, db.Pool, dlq.Queue, d4); err != nil || !ok {
		t.Fatalf("archive: %v %v", ok, err)
	}

	found, err := dlq.FindBySource(ctx, db.Pool, q, []int64{1, 2, 3, 4, 5}, w)
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 2 || found[2].MsgID != d2 || found[2].Archived || found[4].MsgID != d4 || !found[4].Archived {
		t.Errorf("FindBySource above the watermark = %+v, want the dead letters of 2 and (archived) 4", found)
	}
	if found, err := dlq.FindBySource(ctx, db.Pool, q, []int64{1}, 0); err != nil || found[1].MsgID != old {
		t.Errorf("FindBySource of the whole DLQ = %+v, %v; want the old dead letter", found, err)
	}
	if found, err := dlq.FindBySource(ctx, db.Pool, q, nil, 0); err != nil || len(found) != 0 {
		t.Errorf("FindBySource of nothing = %+v, %v", found, err)
	}
	if w2, err := dlq.Watermark(ctx, db.Pool); err != nil || w2 != d4 {
		t.Errorf("Watermark after more dead letters = %d, %v; want %d (the archived one counts)", w2, err, d4)
	}
}

func TestReplaySendsTheOriginalBackInOneTransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.New(t, 4)
	body := `{"request_id":"r-1","task_request":{"namespace":"demo"}}`
	id := deadLetter(t, db, messages.QueueTaskRequests, 41, body)

	r, err := dlq.Replay(ctx, db.Pool, id)
	if err != nil {
		t.Fatal(err)
	}
	if r.DeadLetter != id || r.Queue != messages.QueueTaskRequests || r.MsgID < 1 {
		t.Fatalf("Replay = %+v", r)
	}
	var got json.RawMessage
	if err := db.Pool.QueryRow(ctx, "SELECT message FROM pgmq.q_orchestration_task_requests WHERE msg_id = $1", r.MsgID).Scan(&got); err != nil {
		t.Fatalf("replayed message: %v", err)
	}
	var want, have any
	_ = json.Unmarshal([]byte(body), &want)
	_ = json.Unmarshal(got, &have)
	if fmt.Sprint(want) != fmt.Sprint(have) {
		t.Errorf("replayed body %s, want %s", got, body)
	}
	if ls, _ := dlq.List(ctx, db.Pool, dlq.ListOptions{}); len(ls) != 0 {
		t.Errorf("the dead letter is still there after its replay: %+v", ls)
	}
	if _, err := dlq.Replay(ctx, db.Pool, id); !errors.Is(err, dlq.ErrNotFound) {
		t.Errorf("second replay: %v, want ErrNotFound", err)
	}

	// A dead letter that cannot be replayed stays where it is: no source, or a source queue
	// that no longer exists (the send fails and the deletion rolls back with it).
	noSource := pgmqtest.Send(t, t.Context(), db.Pool, dlq.Queue, `{"reason":"hand-made"}`)
	gone := deadLetter(t, db, "worker_gone_queue", 3, `{}`)
	for _, id := range []int64{noSource, gone} {
		if _, err := dlq.Replay(ctx, db.Pool, id); err == nil {
			t.Errorf("dead letter %d replayed", id)
		}
	}
	if ls, err := dlq.List(ctx, db.Pool, dlq.ListOptions{}); err != nil || fmt.Sprint(msgIDs(ls)) != fmt.Sprint([]int64{noSource, gone}) {
		t.Errorf("after failed replays the DLQ holds %v (%v), want both dead letters", msgIDs(ls), err)
	}
}
