// Package outcome answers "what became of my task request": it is still queued (or being
// processed), it created a task, it was acknowledged as a duplicate of an existing task, or it
// was dead-lettered.
//
// The consumer acknowledges a request in the transaction that creates its task or writes its
// dead letter, so the three places that can hold the answer (the request queue, the tasks, the
// DLQ) change together. Lookup reads all three in one read-only snapshot; a request that is
// gone from the queue without a task or a dead letter was therefore acknowledged as a
// duplicate, never merely caught between two reads.
//
// Requests are identified by their request_id and by the msg_id that pgmq.send returned for
// them. Dead letters are looked up above a dlq.Watermark taken before the requests were sent,
// so a lookup never scans the whole DLQ. Wait polls one request, with backoff, until it
// settles. `consumer submit --wait` and the demo use this package.
package outcome
