package listener

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgxlisten"
	"go.uber.org/zap"

	"github.com/tasker-systems/consumer/commands"
	"github.com/tasker-systems/consumer/internal/appname"
	"github.com/tasker-systems/consumer/internal/testsignal"
	"github.com/tasker-systems/consumer/internal/textutil"
	"github.com/tasker-systems/consumer/pgmq"
)

// Listener defaults.
const (
	// ApplicationNameDefault names the LISTEN connection in pg_stat_activity, so operators can
	// find it (see docs/operations.md).
	ApplicationNameDefault = "consumer-listener"
	PingIntervalDefault    = 15 * time.Second
	PingTimeoutDefault     = 5 * time.Second
	ReconnectMaxDefault    = 10 * time.Second
	// ReconnectInitial is the first reconnect delay; each failed attempt doubles it (±20 %
	// jitter) up to ReconnectMax.
	ReconnectInitial = 100 * time.Millisecond
	// ConnectTimeoutDefault bounds one connection attempt when the connection string sets no
	// connect_timeout, so that an unreachable server cannot hang the listener.
	ConnectTimeoutDefault = 10 * time.Second
	// maxChannelLength is the longest channel name PostgreSQL accepts (NAMEDATALEN - 1).
	maxChannelLength = 63
)

// Listener LISTENs on one notification channel over a dedicated connection (pgxlisten) and turns
// each message_ready or batch_ready event for the queues it serves into one notification on
// Out. The messages are not claimed here: the notification carries their ids
// for the actor to claim.
//
// NOTIFY is lost while the connection is down, so after every successful (re)connect and
// LISTEN the listener calls OnBacklog, which should ask the poller for a full poll. A
// connection can also die silently (a half-open TCP connection looks idle); to notice, the
// listener also LISTENs on a private channel and, when nothing at all arrived for
// PingInterval, sends itself a notification over a separate connection. If that does not
// arrive within PingTimeout the LISTEN connection is declared dead and replaced. Reconnects use
// capped, jittered exponential backoff.
//
// Configure it through the exported fields before calling Run; do not change them afterwards.
type Listener struct {
	// ConnString is the connection string of the dedicated LISTEN connection
	// (LISTEN_DATABASE_URL). It must reach PostgreSQL directly or through a session-pooling
	// proxy: transaction pooling breaks LISTEN. Required.
	ConnString string

	// ApplicationName is the connection's application_name, unless ConnString (or PGAPPNAME)
	// already sets one. If empty, the default of "consumer-listener" is used.
	ApplicationName string

	// Channel is the notification channel to LISTEN on, for example tasker.OrchestrationChannel
	// or tasker.NotifyChannel("worker_<ns>_queue"). Required.
	Channel string

	// Queues are the queues this listener serves. Events for any other queue are logged at
	// warn, counted in Ignored and dropped. If empty, events for every queue are served.
	Queues []string

	// Out receives one notification per message_ready or batch_ready event. A full channel
	// blocks the listener (backpressure: notifications wait in the connection, none is
	// dropped). Required.
	Out *commands.NotificationChannel

	// OnBacklog is called after every successful connect or reconnect, once LISTEN is in
	// place, with Run's context: what was announced while the listener was down is lost, so it
	// should trigger a full poll (for example poller.Poller.TriggerAll). It runs on the listening
	// goroutine and should return quickly. Optional.
	OnBacklog func(ctx context.Context)

	// OnQueueReady is called with the queue of a queue_ready event (the ids did not fit in the
	// payload) and of a malformed payload whose queue is served: it should ask for a poll of
	// that queue (for example poller.Poller.Trigger). It runs on the listening goroutine and should
	// return quickly. If nil, such events are only logged, and the periodic poller has to find
	// the messages.
	OnQueueReady func(queue string)

	// PingInterval is how long the connection may stay silent before the listener checks it
	// with a ping to itself. If set to 0, the default of 15 seconds is used. A negative value
	// disables the ping.
	PingInterval time.Duration

	// PingTimeout is how long a ping may take to come back before the LISTEN connection is
	// declared dead and replaced. If set to 0, the default of 5 seconds is used.
	PingTimeout time.Duration

	// PingDB sends the pings (a pool such as the consumer's *pgxpool.Pool). If nil, each ping
	// opens a short-lived connection from ConnString (named ApplicationName + "-ping").
	PingDB pgmq.DB

	// ReconnectMax caps the delay between reconnect attempts; delays start at 100 ms, double
	// on each failed attempt with ±20 % jitter, and start over after a successful connect.
	// The first connect of Run is not delayed. If set to 0, the default of 10 seconds is used.
	ReconnectMax time.Duration

	// Logger receives connection changes (info/warn), ignored and malformed events (warn) and
	// pings (debug). If nil, nothing is logged.
	Logger *zap.Logger

	// Now stamps Notification.ReceivedAt. If nil, time.Now is used.
	Now func() time.Time

	running     atomic.Bool
	connected   atomic.Bool
	received    atomic.Uint64
	reconnects  atomic.Uint64
	malformed   atomic.Uint64
	ignored     atomic.Uint64
	lastPingRTT atomic.Int64

	testSignals listenerTestSignals
	testHooks   listenerTestHooks
}

// listenerTestSignals are no-ops unless a test initializes them.
type listenerTestSignals struct {
	connected    testsignal.Signal[uint64]        // LISTEN in place and OnBacklog done (connection number, from 1)
	disconnected testsignal.Signal[string]        // the connection was lost or declared dead (why)
	handled      testsignal.Signal[handledEvent]  // a notification on Channel was handled
	ping         testsignal.Signal[time.Duration] // a ping came back (its round trip)
	pingFailed   testsignal.Signal[struct{}]      // a ping did not come back: reconnecting
	pingSkipped  testsignal.Signal[struct{}]      // no ping: the listener is busy (blocked on Out or a callback)
}

// listenerTestHooks let a test hold the listener at a point; nil hooks do nothing.
type listenerTestHooks struct {
	beforeReconnect func(ctx context.Context) // before each connect attempt but the first
}

// outcome is what the listener did with one notification, for tests.
type outcome int

const (
	outcomeDelivered  outcome = iota + 1 // sent to Out
	outcomeQueueReady                    // passed to OnQueueReady
	outcomeIgnored                       // queue not served
	outcomeMalformed                     // bad payload
)

type handledEvent struct {
	Outcome outcome
	Queue   string
}

// Connected reports whether the LISTEN connection is up: true from a successful LISTEN until
// the next connection error or failed ping.
func (l *Listener) Connected() bool { return l.connected.Load() }

// Received returns the number of notifications received on Channel (pings not included).
func (l *Listener) Received() uint64 { return l.received.Load() }

// Reconnects returns the number of times the LISTEN connection was re-established after being
// lost (the first connect does not count).
func (l *Listener) Reconnects() uint64 { return l.reconnects.Load() }

// Malformed returns the number of notifications whose payload could not be decoded.
func (l *Listener) Malformed() uint64 { return l.malformed.Load() }

// Ignored returns the number of events dropped because their queue is not served.
func (l *Listener) Ignored() uint64 { return l.ignored.Load() }

// LastPingRoundTrip returns the round trip of the last successful ping (from sending the
// NOTIFY to receiving it on the LISTEN connection), or 0 before the first one.
func (l *Listener) LastPingRoundTrip() time.Duration { return time.Duration(l.lastPingRTT.Load()) }

// listenRun is the state of one Run.
type listenRun struct {
	l            *Listener
	ctx          context.Context // Run's context
	log          *zap.Logger
	now          func() time.Time
	cfg          *pgx.ConnConfig // the LISTEN connection
	pingCfg      *pgx.ConnConfig // short-lived ping connections (when PingDB is nil)
	served       map[string]bool // empty: every queue
	pingChannel  string
	pingInterval time.Duration // < 0: no ping
	pingTimeout  time.Duration
	reconnectMax time.Duration
	epoch        time.Time // monotonic origin of activity and downSince

	// Used only on the listening goroutine (pgxlisten calls Connect, the handlers and LogError
	// from the goroutine running Listen, which is Run's).
	backoff     *backoff.ExponentialBackOff
	attempts    int                // connect attempts in this Run
	connects    uint64             // successful connects in this Run
	listened    int                // channels LISTENed on the current connection
	sessionStop context.CancelFunc // ends the current pgxlisten.Listen call

	// Shared with the ping goroutine.
	busy      atomic.Bool  // the listening goroutine is inside Out.Send or a callback
	activity  atomic.Int64 // when a notification last arrived (since epoch)
	downSince atomic.Int64 // when the connection was last lost (since epoch)
	pingSeq   atomic.Uint64
	pongs     chan uint64
	connMu    sync.Mutex
	connStop  context.CancelFunc // stops the current connection's ping goroutine
	wg        sync.WaitGroup
}

// validate checks the fields; errors name the field.
func (l *Listener) validate() error {
	var errs []error
	if l.ConnString == "" {
		errs = append(errs, errors.New("empty ConnString"))
	}
	switch {
	case l.Channel == "":
		errs = append(errs, errors.New("empty Channel"))
	case len(l.Channel) > maxChannelLength:
		errs = append(errs, fmt.Errorf("overlong Channel %q: more than %d bytes", l.Channel, maxChannelLength))
	}
	if l.Out == nil {
		errs = append(errs, errors.New("nil Out"))
	}
	for _, q := range l.Queues {
		if err := pgmq.ValidateQueueName(q); err != nil {
			errs = append(errs, fmt.Errorf("in Queues: %w", err))
		}
	}
	if l.PingTimeout < 0 {
		errs = append(errs, fmt.Errorf("negative PingTimeout %v", l.PingTimeout))
	}
	if l.ReconnectMax < 0 {
		errs = append(errs, fmt.Errorf("negative ReconnectMax %v", l.ReconnectMax))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("listener: %w", err)
	}
	return nil
}

// newRun applies the defaults to a validated Listener.
func (l *Listener) newRun(ctx context.Context) (*listenRun, error) {
	r := &listenRun{
		l: l, ctx: ctx, served: make(map[string]bool),
		log:          cmp.Or(l.Logger, zap.NewNop()),
		now:          l.Now,
		pingInterval: cmp.Or(l.PingInterval, PingIntervalDefault),
		pingTimeout:  cmp.Or(l.PingTimeout, PingTimeoutDefault),
		reconnectMax: cmp.Or(l.ReconnectMax, ReconnectMaxDefault),
		epoch:        time.Now(), pongs: make(chan uint64, 16),
	}
	if r.now == nil {
		r.now = time.Now
	}
	for _, q := range l.Queues {
		r.served[q] = true
	}
	appName := cmp.Or(l.ApplicationName, ApplicationNameDefault)
	var err error
	if r.cfg, err = connConfig(l.ConnString, appName); err != nil {
		return nil, err
	}
	if r.pingCfg, err = connConfig(l.ConnString, appName+"-ping"); err != nil {
		return nil, err
	}
	r.backoff = backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(min(ReconnectInitial, r.reconnectMax)),
		backoff.WithMultiplier(2),
		backoff.WithRandomizationFactor(0.2),
		backoff.WithMaxInterval(r.reconnectMax),
		backoff.WithMaxElapsedTime(0), // never give up
	)
	var b [8]byte
	_, _ = rand.Read(b[:])
	r.pingChannel = "consumer_ping_" + hex.EncodeToString(b[:])
	return r, nil
}

// connConfig parses connString and names the connection appName unless the string (or the
// PGAPPNAME environment variable) already names it.
func connConfig(connString, appName string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("listener: parse ConnString: %w", err)
	}
	appname.Default(cfg.RuntimeParams, appName)
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = ConnectTimeoutDefault
	}
	return cfg, nil
}

// Run listens until ctx ends, then returns nil. It returns an error only for a missing or
// invalid field (or when already running): connection failures are logged and retried with
// backoff for as long as ctx lasts.
func (l *Listener) Run(ctx context.Context) error {
	if err := l.validate(); err != nil {
		return err
	}
	r, err := l.newRun(ctx)
	if err != nil {
		return err
	}
	if !l.running.CompareAndSwap(false, true) {
		return errors.New("listener: already running")
	}
	defer l.running.Store(false)
	defer r.wg.Wait()

	for ctx.Err() == nil {
		// One pgxlisten.Listen call reconnects by itself after connection errors; it ends
		// early only when a failed ping cancels its context to replace a silent connection.
		sessCtx, cancel := context.WithCancel(ctx)
		r.sessionStop = cancel
		pl := &pgxlisten.Listener{
			Connect:        r.connect,
			LogError:       r.logError,
			ReconnectDelay: -1, // no extra delay: connect waits for the backoff itself
		}
		pl.Handle(l.Channel, queueHandler{r})
		pl.Handle(r.pingChannel, pingHandler{r})
		_ = pl.Listen(sessCtx) // returns only when sessCtx ends
		cancel()
		r.disconnected("stopped")
	}
	return nil
}

// connect is pgxlisten's Connect: it waits for the backoff (except on the first attempt of
// Run) and opens the LISTEN connection.
func (r *listenRun) connect(ctx context.Context) (*pgx.Conn, error) {
	r.listened = 0
	if r.attempts > 0 {
		if hook := r.l.testHooks.beforeReconnect; hook != nil {
			hook(ctx)
		}
		delay := min(r.backoff.NextBackOff(), r.reconnectMax)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
	r.attempts++
	return pgx.ConnectConfig(ctx, r.cfg)
}

// logError is pgxlisten's LogError. The handlers never return errors, so every error is about
// the connection: connecting, LISTEN, or waiting for notifications.
func (r *listenRun) logError(ctx context.Context, err error) {
	switch {
	case ctx.Err() != nil:
		r.log.Debug("listener: connection closed", zap.String("channel", r.l.Channel), zap.Error(err))
	case r.l.connected.Load():
		r.log.Warn("listener: connection lost; reconnecting", zap.String("channel", r.l.Channel), zap.Error(err))
	default:
		r.log.Warn("listener: cannot listen; retrying", zap.String("channel", r.l.Channel),
			zap.Int("attempt", r.attempts), zap.Error(err))
	}
	r.disconnected(err.Error())
}

// disconnected marks the connection down and stops its ping goroutine. Any goroutine.
func (r *listenRun) disconnected(why string) {
	if r.l.connected.Swap(false) {
		r.downSince.Store(r.mono())
		r.l.testSignals.disconnected.Signal(why)
	}
	r.connMu.Lock()
	if r.connStop != nil {
		r.connStop()
		r.connStop = nil
	}
	r.connMu.Unlock()
}

// listenedOn is called (through HandleBacklog) after each LISTEN on a connection; once both
// channels are in place the connection is up.
func (r *listenRun) listenedOn(ctx context.Context) {
	r.listened++
	if r.listened < 2 { // Channel and the ping channel, in pgxlisten's (map) order
		return
	}
	r.backoff.Reset()
	r.connects++
	n := r.connects
	appName := r.cfg.RuntimeParams[appname.Param]
	if n > 1 {
		r.l.reconnects.Add(1)
		down := time.Duration(r.mono() - r.downSince.Load())
		r.log.Info("listener: reconnected", zap.String("channel", r.l.Channel),
			zap.String("application_name", appName), zap.Duration("down", down))
	} else {
		r.log.Info("listener: listening", zap.String("channel", r.l.Channel),
			zap.String("application_name", appName))
	}
	r.touch()
	r.l.connected.Store(true)
	if r.pingInterval > 0 {
		pctx, stop := context.WithCancel(ctx)
		r.connMu.Lock()
		r.connStop = stop
		r.connMu.Unlock()
		sessionStop := r.sessionStop
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.pingLoop(pctx, sessionStop)
		}()
	}
	if r.l.OnBacklog != nil {
		r.busy.Store(true)
		r.l.OnBacklog(r.ctx)
		r.busy.Store(false)
	}
	r.l.testSignals.connected.Signal(n)
}

func (r *listenRun) mono() int64 { return int64(time.Since(r.epoch)) }
func (r *listenRun) touch()      { r.activity.Store(r.mono()) }

func (r *listenRun) serves(queue string) bool { return len(r.served) == 0 || r.served[queue] }

// queueHandler handles Channel.
type queueHandler struct{ r *listenRun }

func (h queueHandler) HandleBacklog(ctx context.Context, _ string, _ *pgx.Conn) error {
	h.r.listenedOn(ctx)
	return nil
}

func (h queueHandler) HandleNotification(_ context.Context, n *pgconn.Notification, _ *pgx.Conn) error {
	r := h.r
	r.touch()
	r.l.received.Add(1)
	ev, err := ParsePayload(n.Payload)
	if err != nil {
		r.l.malformed.Add(1)
		known := ev.Queue != "" && r.serves(ev.Queue)
		r.log.Warn("listener: malformed notification", zap.String("channel", n.Channel),
			zap.String("payload", textutil.Truncate(n.Payload, 200)), zap.Bool("poll_queue", known), zap.Error(err))
		if known {
			r.queueReady(ev.Queue)
		}
		r.l.testSignals.handled.Signal(handledEvent{Outcome: outcomeMalformed, Queue: ev.Queue})
		return nil
	}
	if !r.serves(ev.Queue) {
		r.l.ignored.Add(1)
		r.log.Warn("listener: event for a queue not served, ignored", zap.String("channel", n.Channel),
			zap.String("queue", ev.Queue), zap.String("event_type", string(ev.Type)))
		r.l.testSignals.handled.Signal(handledEvent{Outcome: outcomeIgnored, Queue: ev.Queue})
		return nil
	}
	if ev.Type == QueueReady {
		r.queueReady(ev.Queue)
		r.l.testSignals.handled.Signal(handledEvent{Outcome: outcomeQueueReady, Queue: ev.Queue})
		return nil
	}
	note := commands.Notification{Queue: ev.Queue, MsgIDs: ev.MsgIDs, ReceivedAt: r.now()}
	r.busy.Store(true)
	// Run's context, not the connection's: a reconnect must not drop an announcement already
	// received. Send fails only when Run ends.
	err = r.l.Out.Send(r.ctx, note)
	r.busy.Store(false)
	if err != nil {
		r.log.Debug("listener: stopping; notification not delivered", zap.String("queue", ev.Queue),
			zap.Int64s("msg_ids", ev.MsgIDs))
		return nil
	}
	r.l.testSignals.handled.Signal(handledEvent{Outcome: outcomeDelivered, Queue: ev.Queue})
	return nil
}

func (r *listenRun) queueReady(queue string) {
	if r.l.OnQueueReady == nil {
		r.log.Warn("listener: queue needs a poll but OnQueueReady is not set", zap.String("queue", queue))
		return
	}
	r.busy.Store(true)
	r.l.OnQueueReady(queue)
	r.busy.Store(false)
}

// pingHandler handles the private ping channel.
type pingHandler struct{ r *listenRun }

func (h pingHandler) HandleBacklog(ctx context.Context, _ string, _ *pgx.Conn) error {
	h.r.listenedOn(ctx)
	return nil
}

func (h pingHandler) HandleNotification(_ context.Context, n *pgconn.Notification, _ *pgx.Conn) error {
	h.r.touch()
	if seq, err := strconv.ParseUint(n.Payload, 10, 64); err == nil {
		select {
		case h.r.pongs <- seq:
		default:
		}
	}
	return nil
}

// pingLoop checks the connection whenever it has been silent for pingInterval, until ctx ends
// (the connection is gone). A ping that does not come back ends the session so that
// pgxlisten.Listen is started again on a new connection.
func (r *listenRun) pingLoop(ctx context.Context, sessionStop context.CancelFunc) {
	t := time.NewTimer(r.pingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		idle := time.Duration(r.mono() - r.activity.Load())
		if idle < r.pingInterval {
			t.Reset(r.pingInterval - idle)
			continue
		}
		if r.busy.Load() { // blocked on Out or a callback, not silent
			r.l.testSignals.pingSkipped.Signal(struct{}{})
			t.Reset(r.pingInterval)
			continue
		}
		if !r.ping(ctx) {
			if ctx.Err() != nil {
				return
			}
			r.log.Warn("listener: ping did not come back; reconnecting", zap.String("channel", r.l.Channel),
				zap.Duration("ping_timeout", r.pingTimeout))
			r.disconnected("ping timeout")
			r.l.testSignals.pingFailed.Signal(struct{}{})
			sessionStop()
			return
		}
		t.Reset(r.pingInterval)
	}
}

// ping sends one ping and waits for it. It returns false only when the ping did not come back
// and nothing else arrived on the connection meanwhile; a ping that cannot be sent proves
// nothing about the LISTEN connection and counts as alive.
func (r *listenRun) ping(ctx context.Context) bool {
	seq := r.pingSeq.Add(1)
	for len(r.pongs) > 0 { // stale pongs
		<-r.pongs
	}
	sctx, cancel := context.WithTimeout(ctx, r.pingTimeout)
	sentAt, err := r.sendPing(sctx, seq)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("listener: cannot send ping", zap.String("channel", r.pingChannel), zap.Error(err))
		}
		return true
	}
	t := time.NewTimer(r.pingTimeout)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return true
		case got := <-r.pongs:
			if got != seq {
				continue
			}
			rtt := time.Duration(r.mono() - sentAt)
			r.l.lastPingRTT.Store(int64(rtt))
			r.log.Debug("listener: ping", zap.Duration("round_trip", rtt))
			r.l.testSignals.ping.Signal(rtt)
			return true
		case <-t.C:
			// Anything else received since the ping was sent proves the connection alive.
			return r.activity.Load() > sentAt || r.busy.Load()
		}
	}
}

// sendPing NOTIFYs the ping channel over PingDB or a short-lived connection and returns when
// (since epoch) the NOTIFY was sent.
func (r *listenRun) sendPing(ctx context.Context, seq uint64) (int64, error) {
	const q = "SELECT pg_notify($1::text, $2::text)"
	payload := strconv.FormatUint(seq, 10)
	if r.l.PingDB != nil {
		sentAt := r.mono()
		_, err := r.l.PingDB.Exec(ctx, q, r.pingChannel, payload)
		return sentAt, err
	}
	conn, err := pgx.ConnectConfig(ctx, r.pingCfg)
	if err != nil {
		return 0, fmt.Errorf("connect: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), r.pingTimeout)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	sentAt := r.mono()
	_, err = conn.Exec(ctx, q, r.pingChannel, payload)
	return sentAt, err
}
