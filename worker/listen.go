package worker

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgxlisten"
	"go.uber.org/zap"
)

// listen wakes the claim loop on every notification for the worker queue, and after every
// (re)connect (pgxlisten's backlog handler), until ctx ends. It only wakes: the claim loop reads
// with pgmq.read, so the announced ids need no parsing.
func (w *Worker) listen(ctx context.Context, c *config, log *zap.Logger) {
	l := &pgxlisten.Listener{
		Connect: func(ctx context.Context) (*pgx.Conn, error) {
			return pgx.ConnectConfig(ctx, c.listen.Copy())
		},
		LogError: func(ctx context.Context, err error) {
			if ctx.Err() == nil {
				log.Warn("worker: listen failed; polling until it reconnects", zap.String("channel", c.channel), zap.Error(err))
			}
		},
		ReconnectDelay: listenReconnectDelay,
	}
	l.Handle(c.channel, &wakeHandler{w: w, queue: c.queue, log: log})
	if err := l.Listen(ctx); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		log.Error("worker: listener stopped", zap.Error(err))
	}
}

// wakeHandler is the pgxlisten handler of the worker's channel.
type wakeHandler struct {
	w     *Worker
	queue string
	log   *zap.Logger
}

// HandleNotification wakes the claim loop, unless the payload names another queue (a queue
// literally named after the namespace shares the channel).
func (h *wakeHandler) HandleNotification(_ context.Context, n *pgconn.Notification, _ *pgx.Conn) error {
	var p struct {
		Queue string `json:"queue_name"`
	}
	if json.Unmarshal([]byte(n.Payload), &p) == nil && p.Queue != "" && p.Queue != h.queue {
		return nil
	}
	h.w.wakeUp()
	return nil
}

// HandleBacklog runs after every (re)connect, once LISTEN is in place: notifications may have
// been missed while disconnected, so poll now.
func (h *wakeHandler) HandleBacklog(_ context.Context, channel string, _ *pgx.Conn) error {
	h.log.Info("worker: listening", zap.String("channel", channel))
	h.w.wakeUp()
	h.w.testSignals.listening.Signal(struct{}{})
	return nil
}
