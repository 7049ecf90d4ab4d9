// Package dispatch turns notifications into commands for the actor: it classifies each by its
// queue, drops announcements of messages that are already in flight, and forwards the rest on
// the bounded command channel, waiting (measured) when the actor falls behind. Nothing is
// dropped: a claimed message is always forwarded, and an announced id that is skipped is either
// in flight already or will be found by the poller.
package dispatch
