package main

import (
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-systems/consumer/worker"
)

// hops records, for the end-to-end scenarios (consumer and worker in this process), when each
// step passed each stage, so the time of one step can be split into:
//
//   - to worker: from the end of the consumer handler that dispatched the step (the task
//     request's handler for a root step, else the latest parent's result handler) to the start
//     of the worker's handler. It covers the consumer's commit, the NOTIFY to the worker, the
//     worker's wake-up and its pgmq.read;
//   - to consumer: from the start of the worker's handler to the start of the consumer's step
//     result handler. It covers the (no-op) handler, the worker's result transaction and its
//     NOTIFY, the listener, dispatch, the actor and the claim;
//   - handler: the consumer's step result handler (the engine), which also dispatches the
//     children; the commit follows it.
type hops struct {
	mu          sync.Mutex
	initEnd     map[uuid.UUID]time.Time // task → end of InitializeTask
	workerStart map[uuid.UUID]time.Time // step → start of the worker handler
	step        map[uuid.UUID]stepKey   // step → task and name (seen by the worker)
	parents     map[uuid.UUID][]string  // step → parent names
	resultStart map[uuid.UUID]time.Time // step → start of ProcessStepResult
	resultEnd   map[stepKey]time.Time   // (task, step name) → end of ProcessStepResult
	resultDone  map[uuid.UUID]time.Time // step → end of ProcessStepResult
}

type stepKey struct {
	task uuid.UUID
	name string
}

func newHops() *hops {
	return &hops{
		initEnd: map[uuid.UUID]time.Time{}, workerStart: map[uuid.UUID]time.Time{}, step: map[uuid.UUID]stepKey{},
		parents: map[uuid.UUID][]string{}, resultStart: map[uuid.UUID]time.Time{}, resultEnd: map[stepKey]time.Time{},
		resultDone: map[uuid.UUID]time.Time{},
	}
}

func (h *hops) taskInitialized(task uuid.UUID, at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.initEnd[task] = at
}

func (h *hops) workerStarted(s worker.Step, at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	id := s.Dispatch.StepUUID
	h.workerStart[id] = at
	h.step[id] = stepKey{s.Dispatch.TaskUUID, s.Dispatch.StepName}
	h.parents[id] = s.DependencyNames()
}

func (h *hops) resultStarted(step uuid.UUID, at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.resultStart[step] = at
}

func (h *hops) resultFinished(step uuid.UUID, at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.resultDone[step] = at
	if k, ok := h.step[step]; ok {
		h.resultEnd[k] = at
	}
}

// split returns the three stages of every step that passed all of them.
func (h *hops) split() (toWorker, toConsumer, handler []time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, ws := range h.workerStart {
		k := h.step[id]
		var dispatched time.Time
		if ps := h.parents[id]; len(ps) == 0 {
			dispatched = h.initEnd[k.task]
		} else {
			for _, p := range ps {
				if t := h.resultEnd[stepKey{k.task, p}]; t.After(dispatched) {
					dispatched = t
				}
			}
		}
		rs, ok1 := h.resultStart[id]
		rd, ok2 := h.resultDone[id]
		if dispatched.IsZero() || !ok1 || !ok2 {
			continue
		}
		toWorker = append(toWorker, ws.Sub(dispatched))
		toConsumer = append(toConsumer, rs.Sub(ws))
		handler = append(handler, rd.Sub(rs))
	}
	return toWorker, toConsumer, handler
}
