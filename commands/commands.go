package commands

import "time"

// Command is what the actor processes: ProcessMessage (claim and handle one queue message) or a
// control command (GetProcessingStats, HealthCheck).
type Command interface{ command() }

// ProcessMessage asks the actor to claim a message that is ready on an orchestration queue
// (with read_specific_message and the configured visibility timeout) and to handle it. A
// message that cannot be claimed (already claimed, deleted or not yet visible) is a normal race
// outcome: OutcomeNotFound.
type ProcessMessage struct {
	Kind       Kind
	Queue      string
	MsgID      int64
	ReceivedAt time.Time
	Reply      Responder[MessageOutcome] // zero when nobody waits
}

// Ref identifies the message.
func (c ProcessMessage) Ref() MsgRef { return MsgRef{Queue: c.Queue, MsgID: c.MsgID} }

// GetProcessingStats asks for a statistics snapshot.
type GetProcessingStats struct{ Reply Responder[StatsSnapshot] }

// HealthCheck asks for the actor's view of system health.
type HealthCheck struct{ Reply Responder[SystemHealth] }

func (ProcessMessage) command()     {}
func (GetProcessingStats) command() {}
func (HealthCheck) command()        {}

// MsgRef identifies one message on one queue.
type MsgRef struct {
	Queue string
	MsgID int64
}
