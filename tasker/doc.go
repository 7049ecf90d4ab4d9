// Package tasker is the Go side of the project's own SQL functions that extend PGMQ (schema
// tasker, see docs/protocol.md): claiming messages by id and the notify trigger that announces
// new messages, with the channel names it announces on. Package pgmq stays a client of PGMQ's
// own API and works against any PGMQ; what only a database migrated by this project has lives
// here.
//
// It is supported API, for the worker SDK and for programs written in Go that produce to or
// consume from the project's queues.
//
// Claims: ReadSpecific and ReadSpecificBatch (tasker.pgmq_read_specific_message(s)) claim
// messages by id, each only when it is visible now and no other transaction holds it, and hide
// it for the visibility timeout. Getting nothing back is the normal outcome of a race (another
// consumer claimed, deleted or delayed it), not an error. QueueReadSpecificBatch puts the
// batch claim in a pgx.Batch so that it shares a round trip with the statements around it.
//
// Notifications: EnableNotify installs the statement-level insert trigger on a queue table
// (tasker.enable_queue_notify); after commit it announces visible messages on
// NotifyChannel(queue) with a JSON payload whose event_type is message_ready (msg_id),
// batch_ready (msg_ids) or queue_ready (too many ids to fit a NOTIFY payload: poll the queue).
// Delayed messages are not announced.
//
// Errors name the operation, the queue and, where there is one, the message id, and wrap the
// underlying error (pgmq.ErrInvalidQueueName for a malformed queue name, checked before any
// query).
package tasker
