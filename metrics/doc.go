// Package metrics exposes the consumer's Prometheus metrics (listed in docs/operations.md):
// message outcomes per queue, handler and notify-to-handler latency, batch sizes, channel
// saturation and blocked sends, queue and DLQ depth (read from PGMQ at scrape time), listener
// reconnects and poller cycles. Counters owned by other packages are read through function
// collectors, so those packages stay free of Prometheus.
//
// Like every package but worker, messages, pgmq and tasker, it is the consumer's implementation,
// not supported API: other programs should not import it, and its exported names may change in
// any release (docs/architecture.md lists the public edge).
package metrics
