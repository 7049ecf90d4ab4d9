// Package messages defines the JSON bodies that travel through the queues: task requests, step
// dispatches, step results, finalization requests and dead letters, with strict decoding that
// names the offending field. docs/protocol.md describes each body.
//
// Decoding follows the contract: unknown fields are ignored; a missing required field or a wrong
// type is a *ValidationError, which the consumer treats as permanent (the message goes to the
// dead-letter queue instead of being retried).
package messages
