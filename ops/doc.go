// Package ops serves the consumer's operational HTTP endpoints: /healthz (the process is
// alive), /readyz (200 only when every readiness check passes, else 503 with the report) and
// /metrics (Prometheus text).
//
// Like every package but worker, messages, pgmq and tasker, it is the consumer's implementation,
// not supported API: other programs should not import it, and its exported names may change in
// any release (docs/architecture.md lists the public edge).
package ops
