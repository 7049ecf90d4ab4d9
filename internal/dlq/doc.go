// Package dlq is what operators and tools do with dead letters: list them, replay them on
// their source queue, and find the dead letter of a given source message.
//
// A dead letter is a message of orchestration_dlq whose body is a messages.DeadLetter (see
// docs/protocol.md). Listing reads the queue table directly, so it never claims a dead letter
// and so never hides it from anyone else. Replaying sends the original body back to its
// source queue and deletes the dead letter in one transaction: a crash leaves either the dead
// letter or its replay, never both or neither.
//
// Finding the dead letter of a message is bounded: dead letters are appended, and a message
// that is dead-lettered after a given moment gets a msg_id above the DLQ's Watermark of that
// moment. A caller that takes the watermark before it sends therefore only ever scans the dead
// letters written since, through the msg_id primary key, however large the DLQ has grown.
//
// The consumer's `dlq` command, the demo and the chaos suite all use this package.
package dlq
