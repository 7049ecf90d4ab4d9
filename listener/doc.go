// Package listener is where announced messages enter the consumer pipeline: a Listener LISTENs
// on one NOTIFY channel over a dedicated connection (github.com/jackc/pgxlisten) and forwards
// each message_ready / batch_ready event of the queues it serves as a commands.Notification
// carrying the message ids. It claims nothing: the actor claims each id with
// read_specific_message.
//
// Notification first, polling as the safety net: NOTIFY is lost while the listener reconnects,
// is not sent for delayed messages and never fires when a visibility timeout expires. Package
// poller covers all three and produces the same notifications; the two are wired by callbacks
// (OnBacklog after every connect, OnQueueReady when the ids did not fit a payload), so neither
// depends on the other. See package poller for the wiring in each mode.
//
// Nothing here is specific to the orchestration queues: the worker SDK uses a Listener with
// Channel tasker.NotifyChannel("worker_<ns>_queue") and Queues {"worker_<ns>_queue"}.
//
// Backpressure: the listener sends with commands.Channel.Send, which blocks while the channel
// is full; nothing is dropped, and notifications wait in the connection meanwhile.
//
// Connection health: the listener names its connection (application_name "consumer-listener"
// unless the connection string sets one), reconnects with capped, jittered exponential backoff,
// and detects a silently dead connection by sending itself a NOTIFY on a private channel when
// the connection has been quiet for PingInterval. Connected, Reconnects and LastPingRoundTrip
// feed /readyz and /metrics.
//
// The Listener follows pgxlisten's shape: exported fields are the configuration (each documents
// its zero value), Run(ctx) blocks until ctx ends and returns an error only for a bad
// configuration, and transient database failures are logged and retried.
//
// Like every package but worker, messages, pgmq and tasker, it is the consumer's implementation,
// not supported API: other programs should not import it, and its exported names may change in
// any release (docs/architecture.md lists the public edge).
package listener
