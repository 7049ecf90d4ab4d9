package depth

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Defaults for zero-valued Config fields.
const (
	// CapDefault is where counts stop: deeper queues report this many messages.
	CapDefault = 100_000
	// MaxAgeDefault is how long one reading is served to callers before a new query.
	MaxAgeDefault = time.Second
	// TimeoutDefault bounds one query.
	TimeoutDefault = 2 * time.Second
)

// Querier is what Reader needs from a pool or connection.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Config configures a Reader. DB and Queues are required.
type Config struct {
	DB Querier
	// Queues are the PGMQ queue names to read; each must exist as pgmq.q_<name>.
	Queues []string
	// Cap is where counts stop; 0 means CapDefault.
	Cap int64
	// MaxAge is how long a reading is reused; 0 means MaxAgeDefault.
	MaxAge time.Duration
	// Timeout bounds one query; 0 means TimeoutDefault.
	Timeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Queue is one queue's reading.
type Queue struct {
	Name    string
	Length  int64 // messages in the queue, at most the cap
	Visible int64 // of which visible now, at most the cap
	// OldestAge is the age of the oldest message; zero when the queue is empty.
	OldestAge time.Duration
}

// Reading is the depth of every configured queue at one moment.
type Reading struct {
	Queues []Queue
	At     time.Time
	Cap    int64
}

// Queue returns the reading of one queue, and whether it was read.
func (r Reading) Queue(name string) (Queue, bool) {
	for _, q := range r.Queues {
		if q.Name == name {
			return q, true
		}
	}
	return Queue{}, false
}

// Reader reads and caches queue depths; it is safe for concurrent use.
type Reader struct {
	cfg Config
	sql string

	mu      sync.Mutex
	last    Reading
	lastErr error
	loading chan struct{} // closed when the query in flight ends; nil when none is
}

// New validates cfg and returns a Reader.
func New(cfg Config) (*Reader, error) {
	var errs []error
	if cfg.DB == nil {
		errs = append(errs, errors.New("DB is required"))
	}
	if len(cfg.Queues) == 0 {
		errs = append(errs, errors.New("Queues is required"))
	}
	if cfg.Cap < 0 || cfg.MaxAge < 0 || cfg.Timeout < 0 {
		errs = append(errs, errors.New("Cap, MaxAge and Timeout must not be negative"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("depth: %w", errors.Join(errs...))
	}
	cfg.Cap = cmp.Or(cfg.Cap, CapDefault)
	cfg.MaxAge = cmp.Or(cfg.MaxAge, MaxAgeDefault)
	cfg.Timeout = cmp.Or(cfg.Timeout, TimeoutDefault)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Reader{cfg: cfg, sql: buildQuery(cfg.Queues)}, nil
}

// buildQuery returns one statement reading every queue: bounded counts, and the oldest message
// found through the primary key (msg_id grows with enqueued_at), so no statement scans more than
// the cap's worth of rows of any queue.
func buildQuery(queues []string) string {
	parts := make([]string, len(queues))
	for i, q := range queues {
		table := pgx.Identifier{"pgmq", "q_" + q}.Sanitize()
		parts[i] = fmt.Sprintf(`SELECT %d AS ord,
  (SELECT count(*) FROM (SELECT 1 FROM %[2]s LIMIT $1) c),
  (SELECT count(*) FROM (SELECT 1 FROM %[2]s WHERE vt <= clock_timestamp() LIMIT $1) v),
  (SELECT extract(epoch FROM clock_timestamp() - enqueued_at)::float8 FROM %[2]s ORDER BY msg_id LIMIT 1)`, i, table)
	}
	return strings.Join(parts, "\nUNION ALL\n")
}

// Read returns a reading no older than MaxAge, querying the database when the cached one is
// older. Callers that arrive while a query runs wait for it (or for ctx).
func (r *Reader) Read(ctx context.Context) (Reading, error) {
	for {
		r.mu.Lock()
		if !r.last.At.IsZero() && r.cfg.Now().Sub(r.last.At) < r.cfg.MaxAge {
			last, err := r.last, r.lastErr
			r.mu.Unlock()
			return last, err
		}
		if r.loading == nil {
			done := make(chan struct{})
			r.loading = done
			r.mu.Unlock()
			reading, err := r.query(ctx)
			r.mu.Lock()
			r.last, r.lastErr, r.loading = reading, err, nil
			if err != nil {
				// Keep when it failed, so the next caller within MaxAge gets the same answer
				// instead of starting another query against a struggling server.
				r.last.At = r.cfg.Now()
			}
			r.mu.Unlock()
			close(done)
			return reading, err
		}
		wait := r.loading
		r.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return Reading{}, fmt.Errorf("depth: %w", ctx.Err())
		}
	}
}

func (r *Reader) query(ctx context.Context) (Reading, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.Timeout)
	defer cancel()
	out := Reading{Queues: make([]Queue, len(r.cfg.Queues)), Cap: r.cfg.Cap}
	for i, q := range r.cfg.Queues {
		out.Queues[i].Name = q
	}
	rows, err := r.cfg.DB.Query(ctx, r.sql, r.cfg.Cap)
	if err != nil {
		return Reading{}, fmt.Errorf("depth: read queues: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var ord int
		var length, visible int64
		var oldest *float64
		if err := rows.Scan(&ord, &length, &visible, &oldest); err != nil {
			return Reading{}, fmt.Errorf("depth: read queues: %w", err)
		}
		q := &out.Queues[ord]
		q.Length, q.Visible = length, visible
		if oldest != nil && *oldest > 0 {
			q.OldestAge = time.Duration(*oldest * float64(time.Second))
		}
	}
	if err := rows.Err(); err != nil {
		return Reading{}, fmt.Errorf("depth: read queues: %w", err)
	}
	out.At = r.cfg.Now()
	return out, nil
}
