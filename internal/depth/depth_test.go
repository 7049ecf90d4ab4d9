package depth_test

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/consumer/internal/depth"
	"github.com/tasker-systems/consumer/internal/testdb"
	"github.com/tasker-systems/consumer/pgmq"
)

// countingDB passes every query to the real database and counts them.
type countingDB struct {
	depth.Querier
	queries atomic.Int64
}

func (c *countingDB) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	c.queries.Add(1)
	return c.Querier.Query(ctx, sql, args...)
}

// clock is a settable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.now = c.now.Add(d) }
func newClock() *clock               { return &clock{now: time.Unix(1_000_000, 0)} }
func body(i int) json.RawMessage     { b, _ := json.Marshal(map[string]int{"i": i}); return b }
func send(t *testing.T, db pgmq.DB, q string, n int, delay time.Duration) {
	t.Helper()
	bodies := make([]json.RawMessage, n)
	for i := range bodies {
		bodies[i] = body(i)
	}
	if _, err := pgmq.SendBatch(context.Background(), db, q, bodies, pgmq.SendOptions{Delay: delay}); err != nil {
		t.Fatal(err)
	}
}

func TestReadsBoundedCountsOfItsOwnQueuesOnly(t *testing.T) {
	ctx := context.Background()
	db := testdb.New(t, 4)
	for _, q := range []string{"mine", "deep_other"} {
		if err := pgmq.Create(ctx, db.Pool, q); err != nil {
			t.Fatal(err)
		}
	}
	send(t, db.Pool, "mine", 30, 0)
	send(t, db.Pool, "mine", 5, time.Hour) // not visible
	send(t, db.Pool, "deep_other", 200, 0)

	clk := newClock()
	cdb := &countingDB{Querier: db.Pool}
	r, err := depth.New(depth.Config{DB: cdb, Queues: []string{"mine", "orchestration_dlq"}, Cap: 20, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mine, ok := got.Queue("mine")
	if !ok || mine.Length != 20 || mine.Visible != 20 || mine.OldestAge <= 0 {
		t.Fatalf("mine = %+v (ok %v), want both counts capped at 20 and an age", mine, ok)
	}
	if dlq, _ := got.Queue("orchestration_dlq"); dlq.Length != 0 || dlq.OldestAge != 0 {
		t.Fatalf("empty dlq = %+v", dlq)
	}
	if _, ok := got.Queue("deep_other"); ok {
		t.Fatal("a queue that was not configured was read")
	}

	// Within MaxAge the same reading is served without a query; after it, a new one is made.
	send(t, db.Pool, "orchestration_dlq", 3, 0)
	again, _ := r.Read(ctx)
	if dlq, _ := again.Queue("orchestration_dlq"); dlq.Length != 0 || cdb.queries.Load() != 1 {
		t.Fatalf("within MaxAge: dlq %+v after %d queries, want the cached 0 after 1", dlq, cdb.queries.Load())
	}
	clk.Add(depth.MaxAgeDefault)
	fresh, _ := r.Read(ctx)
	if dlq, _ := fresh.Queue("orchestration_dlq"); dlq.Length != 3 || dlq.Visible != 3 || cdb.queries.Load() != 2 {
		t.Fatalf("after MaxAge: dlq %+v after %d queries, want 3 after 2", dlq, cdb.queries.Load())
	}
}

func TestConcurrentCallersShareOneQuery(t *testing.T) {
	ctx := context.Background()
	db := testdb.New(t, 8)
	clk := newClock()
	cdb := &countingDB{Querier: db.Pool}
	r, err := depth.New(depth.Config{DB: cdb, Queues: []string{"orchestration_task_requests", "orchestration_dlq"}, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := r.Read(ctx)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := cdb.queries.Load(); n != 1 {
		t.Fatalf("50 concurrent reads made %d queries, want 1", n)
	}
}

func TestAMissingQueueIsAnErrorAndIsCachedToo(t *testing.T) {
	ctx := context.Background()
	db := testdb.New(t, 2)
	clk := newClock()
	cdb := &countingDB{Querier: db.Pool}
	r, err := depth.New(depth.Config{DB: cdb, Queues: []string{"no_such_queue"}, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Read(ctx); err == nil {
		t.Fatal("reading a missing queue succeeded")
	}
	if _, err := r.Read(ctx); err == nil || cdb.queries.Load() != 1 {
		t.Fatalf("second read: err %v after %d queries, want the cached error after 1", err, cdb.queries.Load())
	}
	if _, err := depth.New(depth.Config{}); err == nil {
		t.Fatal("an empty Config was accepted")
	}
}
