// Package ops serves the consumer's operational HTTP endpoints: /healthz (the process is
// alive), /readyz (200 only when every readiness check passes, else 503 with the report) and
// /metrics (Prometheus text).
package ops
