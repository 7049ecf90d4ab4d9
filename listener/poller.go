package listener

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/tasker-systems/consumer/commands"
	"github.com/tasker-systems/consumer/internal/testsignal"
	"github.com/tasker-systems/consumer/pgmq"
)

// Poller defaults (CONSUMER_POLL_INTERVAL, CONSUMER_POLL_BATCH_SIZE, CONSUMER_VISIBILITY_TIMEOUT).
const (
	PollIntervalDefault      = time.Second
	PollBatchSizeDefault     = 100
	VisibilityTimeoutDefault = 30 * time.Second
	// PollJitter is the fraction by which each wait between polls is randomly shortened or
	// lengthened (±10 %), so that several consumers do not poll in lockstep.
	PollJitter = 0.1
	// CapacityRecheck is how soon a read held back by Capacity is retried: downstream frees room
	// within milliseconds under load, and the check itself costs no query.
	CapacityRecheck = 5 * time.Millisecond
)

// Poller is the fallback poller: it claims visible messages with pgmq.read (hiding them for the
// visibility timeout) and hands each non-empty read to Out as one SourcePoll notification. It
// finds what NOTIFY cannot announce: messages sent while the listener was reconnecting, delayed
// messages, and messages whose visibility timeout expired.
//
// It polls every Interval when Periodic, and whenever Trigger or TriggerAll asks. A queue whose
// read returned a full batch is read again at once (after the other due queues, so that one deep
// queue cannot starve the rest) until its backlog is drained or Capacity says stop.
//
// Configure it through the exported fields before calling Run; do not change them afterwards.
type Poller struct {
	// DB is where the queues live, typically the consumer's *pgxpool.Pool. Required.
	DB pgmq.DB

	// Queues are the queues to poll, in the order each round reads them. Required.
	Queues []string

	// Interval is the time between periodic polls and between retries of a queue whose read
	// failed or was held back by Capacity. Each wait is jittered by ±PollJitter. If set to 0, the
	// default of 1 second (PollIntervalDefault) is used.
	Interval time.Duration

	// BatchSize is the most messages one read claims from one queue. If set to 0, the default
	// of 100 (PollBatchSizeDefault) is used.
	BatchSize int

	// VisibilityTimeout hides claimed messages from other readers for this long; PGMQ rounds
	// it up to whole seconds. If set to 0, the default of 30 seconds
	// (VisibilityTimeoutDefault) is used.
	VisibilityTimeout time.Duration

	// Periodic makes Run poll every queue at start and then every Interval. If false (the
	// event_driven mode), Run polls only when triggered, plus retries of triggered queues whose
	// read failed or was held back by Capacity.
	Periodic bool

	// Out receives one notification per non-empty read. A full channel blocks the poller
	// (backpressure); nothing is dropped. Required.
	Out *commands.NotificationChannel

	// MinAge, if positive, restricts periodic polls to messages that have been visible for at
	// least this long (pgmq.ReadMissed): in hybrid mode fresh messages are being delivered by
	// NOTIFY, and claiming them here would only race that path. Triggered polls (a reconnect's
	// backlog, queue_ready) and the polls at start always read every visible message. If 0,
	// every poll reads every visible message (pgmq.Read).
	MinAge time.Duration

	// Capacity, if set, says how many more messages downstream can take now. Each read claims
	// at most min(BatchSize, Capacity()) messages, and a queue is skipped (and re-checked every
	// CapacityRecheck) while Capacity() <= 0, so the poller never claims more than can be processed
	// before the visibility timeout runs out. If nil, every read claims up to BatchSize.
	Capacity func() int

	// Logger receives read failures (error) and per-round details (debug). If nil, nothing
	// is logged.
	Logger *zap.Logger

	// Now stamps Notification.ReceivedAt. If nil, time.Now is used.
	Now func() time.Time

	// Rand returns a number in [0, 1) for the jitter of each wait. If nil, math/rand/v2's
	// Float64 is used.
	Rand func() float64

	cycles  atomic.Uint64
	claimed atomic.Uint64
	errs    atomic.Uint64
	running atomic.Bool

	trigMu     sync.Mutex
	trigQueues map[string]struct{}
	trigAll    bool
	wakeOnce   sync.Once
	wake       chan struct{}

	testSignals pollerTestSignals
}

// pollerTestSignals are no-ops unless a test initializes them.
type pollerTestSignals struct {
	round     testsignal.Signal[pollRound] // a poll round finished
	idle      testsignal.Signal[struct{}]  // Run is about to wait: nothing is due now
	readError testsignal.Signal[string]    // a read failed (the queue)
}

// pollRound describes one finished round for tests.
type pollRound struct {
	Queues  []string // the queues the round was due to read
	Claimed int      // messages claimed in the round
}

// Cycles returns the number of poll rounds so far; a round reads each due queue at most once.
func (p *Poller) Cycles() uint64 { return p.cycles.Load() }

// Claimed returns the number of messages claimed so far.
func (p *Poller) Claimed() uint64 { return p.claimed.Load() }

// Errors returns the number of failed reads so far.
func (p *Poller) Errors() uint64 { return p.errs.Load() }

// Trigger asks Run to poll queue as soon as possible, even when not Periodic. It never blocks,
// and a trigger still pending is not duplicated. Queues that Run does not serve are ignored.
// Safe to call before and during Run, from any goroutine.
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

// takeTriggers moves the pending triggers into due.
func (p *Poller) takeTriggers(due map[string]bool, served map[string]bool, log *zap.Logger) (all bool) {
	p.trigMu.Lock()
	all, queues := p.trigAll, p.trigQueues
	p.trigAll, p.trigQueues = false, nil
	p.trigMu.Unlock()
	if all {
		for q := range served {
			due[q] = true
		}
	}
	for q := range queues {
		if served[q] {
			due[q] = true
		} else {
			log.Debug("poller: trigger for a queue not served, ignored", zap.String("queue", q))
		}
	}
	return all
}

// pollConfig is a Poller's configuration with the defaults applied.
type pollConfig struct {
	queues   []string
	served   map[string]bool
	interval time.Duration
	batch    int
	vt       time.Duration
	log      *zap.Logger
	now      func() time.Time
	rand     func() float64
	capacity func() int
	periodic bool
	minAge   time.Duration
	db       pgmq.DB
	out      *commands.NotificationChannel
}

func (p *Poller) config() (*pollConfig, error) {
	switch {
	case p.DB == nil:
		return nil, errors.New("poller: DB is nil")
	case len(p.Queues) == 0:
		return nil, errors.New("poller: Queues is empty")
	case p.Out == nil:
		return nil, errors.New("poller: Out is nil")
	case p.Interval < 0:
		return nil, fmt.Errorf("poller: negative Interval %v", p.Interval)
	case p.BatchSize < 0:
		return nil, fmt.Errorf("poller: negative BatchSize %d", p.BatchSize)
	case p.VisibilityTimeout < 0:
		return nil, fmt.Errorf("poller: negative VisibilityTimeout %v", p.VisibilityTimeout)
	case p.MinAge < 0:
		return nil, fmt.Errorf("poller: negative MinAge %v", p.MinAge)
	}
	c := &pollConfig{
		served: make(map[string]bool), interval: p.Interval, batch: p.BatchSize, vt: p.VisibilityTimeout,
		log: p.Logger, now: p.Now, rand: p.Rand, capacity: p.Capacity, periodic: p.Periodic, db: p.DB, out: p.Out,
		minAge: p.MinAge,
	}
	for _, q := range p.Queues {
		if err := pgmq.ValidateQueueName(q); err != nil {
			return nil, fmt.Errorf("poller: %w", err)
		}
		if !c.served[q] {
			c.served[q] = true
			c.queues = append(c.queues, q)
		}
	}
	if c.interval == 0 {
		c.interval = PollIntervalDefault
	}
	if c.batch == 0 {
		c.batch = PollBatchSizeDefault
	}
	if c.vt == 0 {
		c.vt = VisibilityTimeoutDefault
	}
	if c.log == nil {
		c.log = zap.NewNop()
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.rand == nil {
		c.rand = rand.Float64
	}
	return c, nil
}

// jitter returns d shortened or lengthened by up to PollJitter.
func (c *pollConfig) jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (1 + PollJitter*(2*c.rand()-1)))
}

// Run polls until ctx ends, then returns nil. It returns an error only for a missing or invalid
// field (or when already running). Read failures are logged with the queue, counted in Errors
// and retried after Interval; they never stop Run. Messages claimed but not yet handed to Out
// when ctx ends become visible again after their visibility timeout.
func (p *Poller) Run(ctx context.Context) error {
	c, err := p.config()
	if err != nil {
		return err
	}
	if !p.running.CompareAndSwap(false, true) {
		return errors.New("poller: already running")
	}
	defer p.running.Store(false)

	due := make(map[string]bool)      // queues the next round reads: true = every visible message, false = periodic (MinAge)
	deferred := make(map[string]bool) // queues whose last read failed
	held := make(map[string]bool)     // queues skipped for lack of Capacity: the kind of read owed
	if c.periodic {
		for _, q := range c.queues {
			due[q] = true
		}
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	armed := false
	arm := func() {
		timer.Reset(c.jitter(c.interval))
		armed = true
	}
	if c.periodic {
		arm()
	}

	for {
		if ctx.Err() != nil {
			return nil
		}
		if all := p.takeTriggers(due, c.served, c.log); all && c.periodic {
			arm() // a full poll now restarts the period
		}
		if len(due) > 0 {
			queues := make([]string, 0, len(due))
			full := make(map[string]bool, len(due))
			for _, q := range c.queues { // configured order
				if all, ok := due[q]; ok {
					queues = append(queues, q)
					full[q] = all
				}
			}
			clear(due)
			again, ok := p.round(ctx, c, queues, full, deferred, held)
			if !ok {
				return nil // ctx ended
			}
			for _, q := range again {
				due[q] = full[q] // a full batch: more is probably waiting, read again now
			}
			if len(deferred) > 0 && !armed {
				arm()
			}
			continue
		}

		p.testSignals.idle.Signal(struct{}{})
		var recheck <-chan time.Time
		if len(held) > 0 {
			recheck = time.After(CapacityRecheck)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-recheck:
			for q, f := range held {
				due[q] = due[q] || f
			}
			clear(held)
		case <-p.wakeCh():
		case <-timer.C:
			armed = false
			if c.periodic {
				for _, q := range c.queues {
					due[q] = due[q] || deferred[q] // periodic; a retry of a held-back read stays full
				}
				arm()
			} else {
				for q := range deferred {
					due[q] = true
				}
			}
		}
	}
}

// read claims up to n messages of queue: every visible one, or for a periodic poll with MinAge
// only those visible for at least MinAge.
func (p *Poller) read(ctx context.Context, c *pollConfig, queue string, n int, full bool) ([]pgmq.Message, error) {
	if full || c.minAge == 0 {
		return pgmq.Read(ctx, c.db, queue, c.vt, n)
	}
	return pgmq.ReadMissed(ctx, c.db, queue, c.vt, n, c.minAge)
}

// round reads each of queues once. It returns the queues whose read was full (to be read again
// at once) and false when ctx ended. held gains the queues skipped for lack of Capacity (their
// read is owed as soon as there is room); deferred gains the queues that failed or were held back by
// Capacity and loses the ones read successfully.
func (p *Poller) round(ctx context.Context, c *pollConfig, queues []string, full, deferred, held map[string]bool) (again []string, ok bool) {
	claimed := 0
	for _, q := range queues {
		n := c.batch
		if c.capacity != nil {
			free := c.capacity()
			if free <= 0 {
				c.log.Debug("poller: no downstream capacity, queue skipped", zap.String("queue", q))
				held[q] = held[q] || full[q]
				continue
			}
			n = min(n, free)
		}
		msgs, err := p.read(ctx, c, q, n, full[q])
		if err != nil {
			if ctx.Err() != nil {
				return nil, false
			}
			p.errs.Add(1)
			c.log.Error("poller: read failed; retrying", zap.String("queue", q), zap.Error(err))
			p.testSignals.readError.Signal(q)
			deferred[q] = true
			continue
		}
		delete(deferred, q)
		if len(msgs) == 0 {
			continue
		}
		p.claimed.Add(uint64(len(msgs)))
		claimed += len(msgs)
		n2 := commands.Notification{Source: commands.SourcePoll, Queue: q, Messages: msgs, ReceivedAt: c.now()}
		if err := c.out.Send(ctx, n2); err != nil {
			c.log.Info("poller: stopping with claimed messages undelivered; they reappear after the visibility timeout",
				zap.String("queue", q), zap.Int("messages", len(msgs)))
			return nil, false
		}
		if len(msgs) == n {
			again = append(again, q)
		}
	}
	p.cycles.Add(1)
	c.log.Debug("poller: round done", zap.Strings("queues", queues), zap.Int("claimed", claimed))
	p.testSignals.round.Signal(pollRound{Queues: slices.Clone(queues), Claimed: claimed})
	return again, true
}
