// Package poller is the consumer's fallback poller: the safety net under NOTIFY. NOTIFY is lost
// while the listener reconnects, is not sent for delayed messages and never fires when a
// visibility timeout expires; the Poller finds all three by discovering the ids of visible
// messages, every Interval and whenever it is triggered, and hands them on as
// commands.Notification values, the same shape the listener produces. It claims nothing, so a
// discovered message waits for the actor exactly like an announced one and both are claimed
// one way, with read_specific_message.
//
// Wiring with the listener (see package listener), by callbacks so that neither depends on the
// other:
//
//	p := &poller.Poller{DB: pool, Queues: queues, Out: out, Periodic: mode != "event_driven"}
//	l := &listener.Listener{
//		ConnString:   listenURL,
//		Channel:      tasker.OrchestrationChannel,
//		Queues:       queues,
//		Out:          out,
//		OnBacklog:    func(context.Context) { p.TriggerAll() }, // after every (re)connect
//		OnQueueReady: p.Trigger,                                // ids did not fit a payload
//	}
//
// In hybrid mode both run, the poller is Periodic and its periodic polls skip messages younger
// than MinAge (NOTIFY announces those); in event_driven mode the poller polls only when the
// listener asks (after each connect, on queue_ready and on a malformed payload naming a served
// queue); in polling mode only the poller runs.
//
// Capacity bounds each poll by what downstream can take. The worker SDK runs the same loop
// with Fetch, which claims and starts dispatches instead of discovering ids, and Capacity, the
// free handler slots.
//
// The Poller follows pgxlisten's shape: exported fields are the configuration (each documents
// its zero value), Run(ctx) blocks until ctx ends and returns an error only for a bad
// configuration, and transient database failures are logged and retried.
//
// Like every package but worker, messages, pgmq and tasker, it is the consumer's implementation,
// not supported API: other programs should not import it, and its exported names may change in
// any release (docs/architecture.md lists the public edge).
package poller
