// Package service wires the consumer pipeline together: listener and fallback poller →
// notification channel → dispatcher → command channel → command processor actor, according to
// the configured mode, and answers readiness questions about it.
//
// Run stops intake (listener, poller, dispatcher) as soon as its context ends and gives the
// actor up to the configured shutdown timeout to finish in-flight work.
//
// Like every package but worker, messages, pgmq and tasker, it is the consumer's implementation,
// not supported API: other programs should not import it, and its exported names may change in
// any release (docs/architecture.md lists the public edge).
package service
