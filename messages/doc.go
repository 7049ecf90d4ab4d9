// Package messages is the wire contract of the queues (see docs/protocol.md): the JSON bodies
// of task requests, step dispatches, step results, finalization requests and dead letters, the
// queue names, and the namespace rule that worker queue names follow. It is supported API for
// producers and workers written in Go, and depends on nothing heavier than a UUID library.
//
// Decoding follows the contract: unknown fields are ignored; a missing required field or a wrong
// type is a *ValidationError, which the consumer treats as permanent (the message goes to the
// dead-letter queue instead of being retried).
package messages
