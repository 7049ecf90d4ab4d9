package poller

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/tasker-systems/consumer/commands"
	"github.com/tasker-systems/consumer/internal/testsignal"
	"github.com/tasker-systems/consumer/internal/timeutil"
	"github.com/tasker-systems/consumer/pgmq"
)

// Defaults of the Poller fields (CONSUMER_POLL_INTERVAL, CONSUMER_POLL_BATCH_SIZE).
const (
	IntervalDefault  = time.Second
	BatchSizeDefault = 100
)

const (
	// Jitter is the fraction by which each wait between polls is randomly shortened or
	// lengthened (±10 %), so that several pollers do not poll in lockstep.
	Jitter = 0.1
	// CapacityRecheck is how soon a queue held back by Capacity is looked at again: downstream
	// frees room within milliseconds under load, and the check itself costs no query.
	CapacityRecheck = 5 * time.Millisecond
)

// Poller is the fallback poller. It finds what NOTIFY cannot announce (messages sent while the
// listener was reconnecting, delayed messages, messages whose visibility timeout expired) by
// discovering the ids of visible messages, and hands each non-empty discovery to Out as one
// notification, exactly like the listener's. It claims nothing: the actor claims each id.
//
// It polls every Interval when Periodic, and whenever Trigger or TriggerAll asks. A queue whose
// poll found a full batch is polled again at once, after the other due queues so that one
// deep queue cannot starve the rest, continuing after the last id found, until its backlog is
// drained or Capacity says stop.
//
// Fetch replaces discovery by any other way of taking messages (the worker SDK claims and runs
// its dispatches there); the loop around it stays the same.
//
// Configure it through the exported fields before calling Run; do not change them afterwards.
type Poller struct {
	// DB is where the queues live, typically the consumer's *pgxpool.Pool. Required unless
	// Fetch is set.
	DB pgmq.DB

	// Queues are the queues to poll, in the order each round polls them. Required.
	Queues []string

	// Interval is the time between periodic polls and between retries of a queue whose poll
	// failed. Each wait is jittered by ±Jitter. If set to 0, the default of 1 second
	// (IntervalDefault) is used.
	Interval time.Duration

	// BatchSize is the most ids one poll discovers in one queue (or the most messages one
	// Fetch may take). If set to 0, the default of 100 (BatchSizeDefault) is used.
	BatchSize int

	// Periodic makes Run poll every queue at start and then every Interval. If false (the
	// event_driven mode), Run polls only when triggered, plus retries of triggered queues whose
	// poll failed or was held back by Capacity.
	Periodic bool

	// Out receives one notification per non-empty discovery. A full channel blocks the poller
	// (backpressure); nothing is dropped. Required unless Fetch is set.
	Out *commands.NotificationChannel

	// MinAge, if positive, restricts periodic polls to messages that have been visible for at
	// least this long: in hybrid mode fresh messages are being announced by NOTIFY, and
	// announcing them here too would only race that path. Triggered polls (a reconnect's
	// backlog, queue_ready) and the poll at start always find every visible message. Not
	// allowed with Fetch.
	MinAge time.Duration

	// Capacity, if set, says how many more messages downstream can take now. Each poll takes
	// at most min(BatchSize, Capacity()) messages, and a queue is skipped (and looked at again
	// after CapacityRecheck, or at once after CapacityFreed) while Capacity() <= 0. If nil,
	// every poll takes up to BatchSize.
	Capacity func() int

	// Fetch, if set, is called instead of discovery with a due queue and the most messages it
	// may take, and returns how many it took; taking max means more are probably waiting, so
	// the queue is fetched again at once. An error is logged, counted in Errors and retried
	// after Interval. Fetch runs on Run's goroutine.
	Fetch func(ctx context.Context, queue string, max int) (int, error)

	// Logger receives poll failures (error) and per-round details (debug). If nil, nothing is
	// logged.
	Logger *zap.Logger

	// Now stamps Notification.ReceivedAt. If nil, time.Now is used.
	Now func() time.Time

	// Rand returns a number in [0, 1) for the jitter of each wait. If nil, math/rand/v2's
	// Float64 is used.
	Rand func() float64

	cycles     atomic.Uint64
	discovered atomic.Uint64
	errs       atomic.Uint64
	running    atomic.Bool

	trigMu     sync.Mutex
	trigQueues map[string]struct{}
	trigAll    bool
	freed      atomic.Bool
	wakeOnce   sync.Once
	wake       chan struct{}

	// TestSignals let this module's tests (the poller's and the service's) wait for the
	// poller's work; they do nothing unless a test initializes them.
	TestSignals TestSignals
}

// TestSignals are the moments of a Poller's work that tests wait for.
type TestSignals struct {
	Round     testsignal.Signal[RoundEvent] // a poll round finished
	Idle      testsignal.Signal[struct{}]   // Run is about to wait: nothing is due now
	PollError testsignal.Signal[string]     // a poll failed (the queue)
}

// RoundEvent describes one finished round.
type RoundEvent struct {
	Queues    []string // the queues the round was due to poll
	Found     int      // messages found in the round
	Triggered bool     // the round served a Trigger or TriggerAll
}

// Cycles returns the number of poll rounds so far; a round polls each due queue at most once.
func (p *Poller) Cycles() uint64 { return p.cycles.Load() }

// Discovered returns the number of message ids found so far (with Fetch, the messages it
// took).
func (p *Poller) Discovered() uint64 { return p.discovered.Load() }

// Errors returns the number of failed polls so far.
func (p *Poller) Errors() uint64 { return p.errs.Load() }

// Trigger asks Run to poll queue as soon as possible, even when not Periodic. It never blocks, and a trigger still pending is not duplicated. Queues that
// Run does not serve are ignored. Safe to call before and during Run, from any goroutine.
func (p *Poller) Trigger(queue string) {
	p.trigMu.Lock()
	if p.trigQueues == nil {
		p.trigQueues = make(map[string]struct{})
	}
	p.trigQueues[queue] = struct{}{}
	p.trigMu.Unlock()
	p.notify()
}

// TriggerAll asks Run to poll every queue as soon as possible, like Trigger.
func (p *Poller) TriggerAll() {
	p.trigMu.Lock()
	p.trigAll = true
	p.trigMu.Unlock()
	p.notify()
}

// CapacityFreed tells Run that Capacity may have grown: queues held back for lack of capacity
// are polled at once instead of after CapacityRecheck. It never blocks.
func (p *Poller) CapacityFreed() {
	p.freed.Store(true)
	p.notify()
}

func (p *Poller) wakeCh() chan struct{} {
	p.wakeOnce.Do(func() { p.wake = make(chan struct{}, 1) })
	return p.wake
}

func (p *Poller) notify() {
	select {
	case p.wakeCh() <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// config is a Poller's configuration with the defaults applied.
type config struct {
	queues   []string
	served   map[string]bool
	discover map[string]string // queue → its discovery query
	interval time.Duration
	batch    int
	log      *zap.Logger
	now      func() time.Time
	rand     func() float64
}

// validate checks the fields; errors name the field.
func (p *Poller) validate() error {
	var errs []error
	if p.Fetch == nil && p.DB == nil {
		errs = append(errs, errors.New("nil DB"))
	}
	if p.Fetch == nil && p.Out == nil {
		errs = append(errs, errors.New("nil Out"))
	}
	if p.Fetch != nil && p.MinAge != 0 {
		errs = append(errs, errors.New("both MinAge and Fetch set: MinAge applies to discovery only"))
	}
	if len(p.Queues) == 0 {
		errs = append(errs, errors.New("empty Queues"))
	}
	for _, q := range p.Queues {
		if err := pgmq.ValidateQueueName(q); err != nil {
			errs = append(errs, fmt.Errorf("in Queues: %w", err))
		}
	}
	if p.Interval < 0 {
		errs = append(errs, fmt.Errorf("negative Interval %v", p.Interval))
	}
	if p.BatchSize < 0 {
		errs = append(errs, fmt.Errorf("negative BatchSize %d", p.BatchSize))
	}
	if p.MinAge < 0 {
		errs = append(errs, fmt.Errorf("negative MinAge %v", p.MinAge))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("poller: %w", err)
	}
	return nil
}

// config applies the defaults to a validated Poller.
func (p *Poller) config() *config {
	c := &config{
		served:   make(map[string]bool),
		discover: make(map[string]string),
		interval: cmp.Or(p.Interval, IntervalDefault),
		batch:    cmp.Or(p.BatchSize, BatchSizeDefault),
		log:      cmp.Or(p.Logger, zap.NewNop()),
		now:      p.Now,
		rand:     p.Rand,
	}
	if c.now == nil {
		c.now = time.Now
	}
	for _, q := range p.Queues {
		if !c.served[q] {
			c.served[q] = true
			c.queues = append(c.queues, q)
			c.discover[q] = discoverSQL(q)
		}
	}
	return c
}

// Run polls until ctx ends, then returns nil. It returns an error only for a missing or invalid
// field (or when already running). Poll failures are logged with the queue, counted in Errors
// and retried after Interval; they never stop Run.
func (p *Poller) Run(ctx context.Context) error {
	if err := p.validate(); err != nil {
		return err
	}
	if !p.running.CompareAndSwap(false, true) {
		return errors.New("poller: already running")
	}
	defer p.running.Store(false)

	r := newRun(p, p.config())
	defer r.timer.Stop()
	for ctx.Err() == nil {
		r.takeTriggers()
		if len(r.due) > 0 {
			if !r.round(ctx) {
				return nil // ctx ended
			}
			continue
		}
		p.TestSignals.Idle.Signal(struct{}{})
		r.wait(ctx)
	}
	return nil
}

// run is the state of one Run. A queue is due (to be polled in the next round) for one of
// three reasons: a trigger or a periodic tick, a full batch (more is probably waiting), or a
// poll held back by Capacity or failed (owed as soon as there is room, or after Interval).
//
// Discovery claims nothing, so the ids it found stay visible until the actor claims them (and
// while the actor's batch holds them uncommitted). A drain therefore continues after the last id
// it found, and a trigger or tick that arrives during a drain joins it instead of starting over:
// starting over would announce again what is already on its way, and an id announced just as
// its batch commits reaches the actor after the message is gone (a needless not found). Only a
// poll that reaches the end of the queue, or fails, makes the next one start from the first
// visible message.
type run struct {
	p *Poller
	c *config

	due       map[string]bool  // queue → every visible message (true), or a periodic poll (MinAge)
	held      map[string]bool  // skipped for lack of Capacity → the kind of poll owed
	failed    map[string]bool  // the last poll failed → the kind of poll owed
	after     map[string]int64 // discovery: the last id found by the drain in progress
	timer     *time.Timer
	armed     bool
	periodic  bool
	triggered bool // the next round serves a trigger
}

func newRun(p *Poller, c *config) *run {
	r := &run{
		p: p, c: c, due: map[string]bool{}, held: map[string]bool{}, failed: map[string]bool{},
		after: map[string]int64{}, timer: time.NewTimer(time.Hour), periodic: p.Periodic,
	}
	r.timer.Stop()
	if r.periodic {
		for _, q := range c.queues {
			r.due[q] = true
		}
		r.arm()
	}
	return r
}

// arm starts the wait for the next periodic tick or retry.
func (r *run) arm() {
	r.timer.Reset(timeutil.Jitter(r.c.interval, Jitter, r.c.rand))
	r.armed = true
}

// makeDue makes queue due for a poll (continuing a drain in progress).
func (r *run) makeDue(queue string, full bool) {
	r.due[queue] = r.due[queue] || full
}

// takeTriggers moves the pending triggers, and the queues held back when capacity was freed,
// into due.
func (r *run) takeTriggers() {
	p := r.p
	p.trigMu.Lock()
	all, queues := p.trigAll, p.trigQueues
	p.trigAll, p.trigQueues = false, nil
	p.trigMu.Unlock()
	if all {
		for _, q := range r.c.queues {
			r.makeDue(q, true)
		}
		r.triggered = true
		if r.periodic {
			r.arm() // a full poll now restarts the period
		}
	}
	for q := range queues {
		if r.c.served[q] {
			r.makeDue(q, true)
			r.triggered = true
		} else {
			r.c.log.Debug("poller: trigger for a queue not served, ignored", zap.String("queue", q))
		}
	}
	if p.freed.Swap(false) {
		r.resumeHeld()
	}
}

// resumeHeld makes the queues held back for lack of capacity due again.
func (r *run) resumeHeld() {
	for q, full := range r.held {
		r.due[q] = r.due[q] || full
	}
	clear(r.held)
}

// wait blocks until something is due: a trigger, a periodic tick, a retry, a capacity
// recheck, or ctx ending.
func (r *run) wait(ctx context.Context) {
	var recheck <-chan time.Time
	if len(r.held) > 0 {
		recheck = time.After(CapacityRecheck)
	}
	select {
	case <-ctx.Done():
	case <-recheck:
		r.resumeHeld()
	case <-r.p.wakeCh():
	case <-r.timer.C:
		r.armed = false
		for q, full := range r.failed {
			r.makeDue(q, full)
		}
		clear(r.failed)
		if r.periodic {
			for _, q := range r.c.queues {
				r.makeDue(q, false)
			}
			r.arm()
		}
	}
}

// round polls each due queue once, in the configured order. It returns false when ctx ended.
func (r *run) round(ctx context.Context) bool {
	queues := make([]string, 0, len(r.due))
	full := make(map[string]bool, len(r.due))
	for _, q := range r.c.queues {
		if f, ok := r.due[q]; ok {
			queues = append(queues, q)
			full[q] = f
		}
	}
	clear(r.due)
	found := 0
	for _, q := range queues {
		n := r.c.batch
		if r.p.Capacity != nil {
			free := r.p.Capacity()
			if free <= 0 {
				r.c.log.Debug("poller: no downstream capacity, queue skipped", zap.String("queue", q))
				r.held[q] = r.held[q] || full[q]
				continue
			}
			n = min(n, free)
		}
		got, err := r.poll(ctx, q, n, full[q])
		if err != nil {
			if ctx.Err() != nil {
				return false
			}
			r.p.errs.Add(1)
			r.c.log.Error("poller: poll failed; retrying", zap.String("queue", q), zap.Error(err))
			r.p.TestSignals.PollError.Signal(q)
			r.failed[q] = r.failed[q] || full[q]
			delete(r.after, q)
			if !r.armed {
				r.arm()
			}
			continue
		}
		found += got
		if got == n {
			r.due[q] = full[q] // a full batch: more is probably waiting, poll again now
		} else {
			delete(r.after, q) // the end of the queue: the next poll starts over
		}
	}
	r.p.cycles.Add(1)
	r.c.log.Debug("poller: round done", zap.Strings("queues", queues), zap.Int("found", found))
	r.p.TestSignals.Round.Signal(RoundEvent{Queues: slices.Clone(queues), Found: found, Triggered: r.triggered})
	r.triggered = false
	return true
}

// poll takes up to n messages of queue, with Fetch or by discovery, and returns how many.
func (r *run) poll(ctx context.Context, queue string, n int, full bool) (int, error) {
	p := r.p
	if p.Fetch != nil {
		got, err := p.Fetch(ctx, queue, n)
		if err == nil {
			p.discovered.Add(uint64(got))
		}
		return got, err
	}
	minAge := p.MinAge
	if full {
		minAge = 0
	}
	ids, err := discover(ctx, p.DB, r.c.discover[queue], r.after[queue], n, minAge)
	if err != nil || len(ids) == 0 {
		return 0, err
	}
	r.after[queue] = ids[len(ids)-1]
	p.discovered.Add(uint64(len(ids)))
	note := commands.Notification{Queue: queue, MsgIDs: ids, ReceivedAt: r.c.now()}
	if err := p.Out.Send(ctx, note); err != nil {
		return 0, err // ctx ended; nothing was claimed, so nothing is lost
	}
	return len(ids), nil
}

// discoverSQL is the discovery query of one (validated) queue. It reads the queue table
// directly, as every PGMQ version lays it out: msg_id order (the primary key), visible now or,
// with a minimum age, for at least that long. It takes no lock and changes nothing.
func discoverSQL(queue string) string {
	return "SELECT msg_id FROM " + pgx.Identifier{"pgmq", "q_" + queue}.Sanitize() +
		" WHERE msg_id > $1::bigint AND vt <= clock_timestamp() - $2::bigint * interval '1 millisecond'" +
		" ORDER BY msg_id LIMIT $3::integer"
}

// discover returns up to n ids of visible messages above after, in id order.
func discover(ctx context.Context, db pgmq.DB, query string, after int64, n int, minAge time.Duration) ([]int64, error) {
	rows, err := db.Query(ctx, query, after, minAge.Milliseconds(), n)
	if err != nil {
		return nil, fmt.Errorf("discover: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("discover: %w", err)
	}
	return ids, nil
}
