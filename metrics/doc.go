// Package metrics exposes the consumer's Prometheus metrics (listed in docs/operations.md):
// message outcomes per queue, handler and notify-to-handler latency, batch sizes, channel
// saturation and blocked sends, queue and DLQ depth (read from PGMQ at scrape time), listener
// reconnects and poller cycles. Counters owned by other packages are read through function
// collectors, so those packages stay free of Prometheus.
package metrics
