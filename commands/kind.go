package commands

import "github.com/tasker-systems/consumer/messages"

// Kind is the kind of work a message on an orchestration queue asks for.
type Kind int

const (
	// KindUnknown is a queue the consumer does not serve.
	KindUnknown Kind = iota
	// KindTaskRequest: initialize a task (orchestration_task_requests).
	KindTaskRequest
	// KindStepResult: process a worker's step result (orchestration_step_results).
	KindStepResult
	// KindFinalization: finalize a task (orchestration_task_finalizations).
	KindFinalization
)

// Kinds lists the kinds the consumer serves, in a stable order.
var Kinds = []Kind{KindTaskRequest, KindStepResult, KindFinalization}

func (k Kind) String() string {
	switch k {
	case KindTaskRequest:
		return "task_request"
	case KindStepResult:
		return "step_result"
	case KindFinalization:
		return "finalization"
	default:
		return "unknown"
	}
}

// Queue returns the orchestration queue of the kind.
func (k Kind) Queue() string {
	switch k {
	case KindTaskRequest:
		return messages.QueueTaskRequests
	case KindStepResult:
		return messages.QueueStepResults
	case KindFinalization:
		return messages.QueueTaskFinalizations
	default:
		return ""
	}
}

// KindForQueue classifies a queue name.
func KindForQueue(queue string) Kind {
	for _, k := range Kinds {
		if k.Queue() == queue {
			return k
		}
	}
	return KindUnknown
}

// Queues returns the orchestration input queues.
func Queues() []string {
	qs := make([]string, len(Kinds))
	for i, k := range Kinds {
		qs[i] = k.Queue()
	}
	return qs
}
