package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/consumer/messages"
	"github.com/tasker-systems/consumer/pgmq"
)

// Settings of the plain PGMQ worker: as many loops as the SDK worker has slots, each reading
// up to plainReadBatch dispatches, and an idle pause when the queue was empty.
const (
	plainReadBatch = 4
	plainIdlePause = time.Millisecond
)

// plainWorker is the reference worker of the saturation-plain scenario: only pgmq.read,
// pgmq.send and pgmq.delete, each result committed in a transaction of its own (send the result,
// delete the dispatch), no LISTEN, no batching across messages. It stands for what any PGMQ
// client can do without the worker SDK; every callable returns 1.
type plainWorker struct {
	pool      *pgxpool.Pool
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	processed atomic.Uint64
	errMu     sync.Mutex
	err       error
}

func startPlainWorker(ctx context.Context, url string) (*plainWorker, error) {
	pool, err := newPool(ctx, url, workerPoolConns, "bench-worker-plain")
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	p := &plainWorker{pool: pool, cancel: cancel}
	queue := messages.WorkerQueue("demo")
	for range workerConcurrency {
		p.wg.Go(func() {
			for runCtx.Err() == nil {
				n, err := p.round(runCtx, queue)
				if err != nil && runCtx.Err() == nil {
					p.fail(err)
					return
				}
				if n == 0 {
					_ = sleep(runCtx, plainIdlePause)
				}
			}
		})
	}
	return p, nil
}

// round reads a few dispatches and commits the result of each in its own transaction.
func (p *plainWorker) round(ctx context.Context, queue string) (int, error) {
	msgs, err := pgmq.Read(ctx, p.pool, queue, 30*time.Second, plainReadBatch)
	if err != nil {
		return 0, err
	}
	for _, m := range msgs {
		var d messages.StepDispatch
		if err := json.Unmarshal(m.Body, &d); err != nil {
			return 0, fmt.Errorf("plain worker: decode dispatch %d: %w", m.ID, err)
		}
		body, err := json.Marshal(messages.StepResult{TaskUUID: d.TaskUUID, StepUUID: d.StepUUID,
			CorrelationID: d.CorrelationID, Attempt: d.Attempt,
			Result: messages.StepExecutionInfo{Success: true, Status: messages.StatusCompleted, Result: json.RawMessage("1")}})
		if err != nil {
			return 0, err
		}
		err = pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
			if _, err := pgmq.Send(ctx, tx, messages.QueueStepResults, body, pgmq.SendOptions{}); err != nil {
				return err
			}
			_, err := pgmq.Delete(ctx, tx, queue, m.ID)
			return err
		})
		if err != nil {
			return 0, fmt.Errorf("plain worker: result of dispatch %d: %w", m.ID, err)
		}
		p.processed.Add(1)
	}
	return len(msgs), nil
}

func (p *plainWorker) fail(err error) {
	p.errMu.Lock()
	defer p.errMu.Unlock()
	p.err = errors.Join(p.err, err)
}

// Processed returns the dispatches finished.
func (p *plainWorker) Processed() uint64 { return p.processed.Load() }

// stop stops the loops and closes the pool; it returns the first failure of a loop.
func (p *plainWorker) stop() error {
	p.cancel()
	p.wg.Wait()
	p.pool.Close()
	p.errMu.Lock()
	defer p.errMu.Unlock()
	return p.err
}
