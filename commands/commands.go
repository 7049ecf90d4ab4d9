package commands

import (
	"time"

	"github.com/google/uuid"

	"github.com/tasker-systems/consumer/messages"
	"github.com/tasker-systems/consumer/pgmq"
)

// Command is what the actor processes. The three kinds of work (task initialization, step
// result, finalization) each come in the seed's three forms:
//
//   - a direct value (InitializeTask, ProcessStepResult, FinalizeTask): no queue message, the
//     handler runs in its own transaction; for in-process callers and tests;
//   - a message the poller already claimed (ProcessMessage, its Kind from the queue);
//   - a message event from a notification (ProcessMessageEvent: queue and msg_id), which the
//     actor claims with read_specific_message before handling.
//
// GetProcessingStats, HealthCheck and Shutdown are the control commands.
type Command interface{ command() }

// InitializeTask asks for a task to be created from a request value.
type InitializeTask struct {
	Request messages.TaskRequest
	Reply   Responder[TaskInitializeResult]
}

// ProcessStepResult asks for a step result value to be processed.
type ProcessStepResult struct {
	Result messages.StepResult
	Reply  Responder[StepProcessResult]
}

// FinalizeTask asks for a task to be (re-)evaluated for completion.
type FinalizeTask struct {
	TaskUUID uuid.UUID
	Reply    Responder[TaskFinalizationResult]
}

// ProcessMessage hands over a message the poller has claimed on an orchestration queue.
type ProcessMessage struct {
	Kind       Kind
	Queue      string
	Message    pgmq.Message
	ReceivedAt time.Time
	Reply      Responder[MessageOutcome] // zero when nobody waits
}

// ProcessMessageEvent asks for a notified message to be claimed and processed.
type ProcessMessageEvent struct {
	Kind       Kind
	Queue      string
	MsgID      int64
	ReceivedAt time.Time
	Reply      Responder[MessageOutcome] // zero when nobody waits
}

// GetProcessingStats asks for a statistics snapshot.
type GetProcessingStats struct{ Reply Responder[StatsSnapshot] }

// HealthCheck asks for the actor's view of system health.
type HealthCheck struct{ Reply Responder[SystemHealth] }

// Shutdown asks the actor to stop taking commands and drain; the reply comes when it has.
type Shutdown struct{ Reply Responder[struct{}] }

func (InitializeTask) command()      {}
func (ProcessStepResult) command()   {}
func (FinalizeTask) command()        {}
func (ProcessMessage) command()      {}
func (ProcessMessageEvent) command() {}
func (GetProcessingStats) command()  {}
func (HealthCheck) command()         {}
func (Shutdown) command()            {}

// MsgRef identifies one message on one queue.
type MsgRef struct {
	Queue string
	MsgID int64
}
