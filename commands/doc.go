// Package commands is the vocabulary of the consumer pipeline: the notifications the listener and
// poller produce, the commands the dispatcher sends to the command processor actor, their result
// types, processing statistics, the health report, and the typed, bounded channels between the
// stages.
//
// It holds types only; the code that acts on them lives in listener, poller, dispatch and actor.
// Keeping the vocabulary apart from the code lets every stage and its tests share one
// definition.
//
// Like every package but worker, messages, pgmq and tasker, it is the consumer's implementation,
// not supported API: other programs should not import it, and its exported names may change in
// any release (docs/architecture.md lists the public edge).
package commands
