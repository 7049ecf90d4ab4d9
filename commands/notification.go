package commands

import (
	"time"

	"github.com/tasker-systems/consumer/pgmq"
)

// Source says where a notification came from.
type Source int

const (
	// SourceNotify: a NOTIFY from the queue's insert trigger (message ids, not yet claimed).
	SourceNotify Source = iota + 1
	// SourcePoll: the fallback poller, which claims the messages it reads.
	SourcePoll
)

func (s Source) String() string {
	switch s {
	case SourceNotify:
		return "notify"
	case SourcePoll:
		return "poll"
	default:
		return "unknown"
	}
}

// Notification tells the dispatcher that messages are ready on a queue. Exactly one of MsgIDs
// (announced, to be claimed by the actor) and Messages (already claimed by the poller) is set.
type Notification struct {
	Source     Source
	Queue      string
	MsgIDs     []int64
	Messages   []pgmq.Message
	ReceivedAt time.Time // when the listener or poller produced it; latency is measured from here
}
