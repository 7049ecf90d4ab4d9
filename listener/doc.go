// Package listener is where messages enter the consumer pipeline: it turns "messages are ready
// on a queue" into commands.Notification values on a bounded channel, from two sources.
//
//   - Listener LISTENs on one NOTIFY channel over a dedicated connection (github.com/jackc/pgxlisten)
//     and forwards each message_ready / batch_ready event of the queues it serves as a
//     SourceNotify notification carrying message ids. It claims nothing: the actor claims each
//     id with read_specific_message.
//   - Poller claims visible messages with pgmq.read and forwards each non-empty read as a
//     SourcePoll notification carrying the claimed messages.
//
// Notification first, polling as the safety net (SPEC §2): NOTIFY is lost while the listener
// reconnects, is not sent for delayed messages and never fires when a visibility timeout
// expires. The poller covers all three. The two are wired together by callbacks, so neither
// depends on the other:
//
//	poller := &listener.Poller{DB: pool, Queues: queues, Out: out, Periodic: mode != "event_driven"}
//	l := &listener.Listener{
//		ConnString:   listenURL,
//		Channel:      pgmq.OrchestrationChannel,
//		Queues:       queues,
//		Out:          out,
//		PingDB:       pool,
//		OnBacklog:    func(context.Context) { poller.TriggerAll() }, // after every (re)connect
//		OnQueueReady: poller.Trigger,                                // ids did not fit a payload
//	}
//
// In hybrid mode both run and the poller is Periodic; in event_driven mode the poller runs
// non-periodic and polls only when the listener asks (after each connect, on queue_ready and on
// a malformed payload naming a served queue); in polling mode only the poller runs.
//
// Nothing here is specific to the orchestration queues: a worker uses the same types with
// Channel pgmq.NotifyChannel("worker_<ns>_queue") and Queues {"worker_<ns>_queue"}.
//
// Backpressure: both send with commands.Channel.Send, which blocks while the channel is full;
// nothing is dropped. The listener then leaves notifications waiting in its connection; the
// poller additionally asks Capacity before each read so it never claims more messages than
// downstream can process before their visibility timeout runs out.
//
// Connection health: the listener names its connection (application_name "consumer-listener"
// unless the connection string sets one), reconnects with capped, jittered exponential backoff,
// and detects a silently dead connection by sending itself a NOTIFY on a private channel when
// the connection has been quiet for PingInterval. Connected, Reconnects and LastPingRoundTrip
// feed /readyz and /metrics.
//
// Both types follow pgxlisten's shape: exported fields are the configuration (each documents
// its zero value), Run(ctx) blocks until ctx ends and returns an error only for a bad
// configuration, and transient database failures are logged and retried.
package listener
