// Package dispatch turns notifications into commands for the actor: it classifies each by its
// queue, drops announcements of messages that are already in flight, and forwards the rest on
// the bounded command channel, waiting (measured) when the actor falls behind. Nothing is
// dropped: an announced id that is skipped is in flight already, and one that is not delivered
// because the dispatcher stops is still in its queue for the poller to find.
//
// Like every package but worker, messages, pgmq and tasker, it is the consumer's implementation,
// not supported API: other programs should not import it, and its exported names may change in
// any release (docs/architecture.md lists the public edge).
package dispatch
