package commands

import "time"

// Notification says that messages are ready on a queue. The listener sends one per NOTIFY
// event and the poller one per discovery; both carry message ids only. Nothing is claimed yet:
// the actor claims each id when it starts the message.
type Notification struct {
	Queue      string
	MsgIDs     []int64
	ReceivedAt time.Time // when the listener or poller produced it; latency is measured from here
}
