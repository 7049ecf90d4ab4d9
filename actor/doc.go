// Package actor is the orchestration command processor: the one place that claims, hydrates,
// routes and acknowledges orchestration messages.
//
// The actor reads commands from the command channel. Control commands (stats, health) are
// answered at once; ProcessMessage commands, which carry a queue and a message id from a
// notification or a poll alike, are grouped into batches of one queue and run on up to
// Concurrency workers. A batch is one transaction:
//
//  1. claim the ids with tasker.pgmq_read_specific_messages and the configured visibility
//     timeout; ids that cannot be claimed are a normal race outcome (not found);
//  2. hydrate each body into a typed, validated value; a malformed body, or a message delivered
//     more than MaxReadCount times, is dead-lettered;
//  3. run the handlers (task, step or finalization) in task order, so that concurrent batches
//     lock tasks in the same order and cannot deadlock;
//  4. send the dead letters, delete every handled message, commit.
//
// A message is claimed only when its batch starts, so nothing waiting in a channel holds a
// claim that could expire. A handler's writes, the messages it sends and the ack of its input
// commit together. Each handler gets the whole batch in one call; if the call fails, the batch
// rolls back to a savepoint taken after the claim and is bisected, each half under a savepoint of
// its own, until the failing message is alone, so each message keeps its own all-or-nothing
// outcome while the common case pays for one call and one transaction per batch. A failed
// message stays claimed (its read_ct counts the delivery) and comes back after the visibility
// timeout.
//
// Every outcome goes through one helper (execute) that records the statistic and sends the reply
// when someone waits for it, logging at ERROR when the requester has stopped waiting.
//
// Like every package but worker, messages, pgmq and tasker, it is the consumer's implementation,
// not supported API: other programs should not import it, and its exported names may change in
// any release (docs/architecture.md lists the public edge).
package actor
