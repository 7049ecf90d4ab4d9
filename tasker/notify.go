package tasker

import (
	"context"
	"fmt"
	"strings"

	"github.com/tasker-systems/consumer/pgmq"
)

// OrchestrationChannel is the NOTIFY channel shared by the orchestration_* queues.
const OrchestrationChannel = channelPrefix + "orchestration"

// channelPrefix starts every queue notification channel.
const channelPrefix = "pgmq_message_ready."

// maxChannelLength is the longest channel name pg_notify accepts (NAMEDATALEN - 1).
const maxChannelLength = 63

// NotifyChannel returns the NOTIFY channel a queue's insert trigger announces on; it mirrors
// tasker.queue_notify_channel: OrchestrationChannel for orchestration_* queues,
// "pgmq_message_ready.<ns>" for worker_<ns>_queue, else "pgmq_message_ready.<queue>".
func NotifyChannel(queue string) string {
	if strings.HasPrefix(queue, "orchestration_") {
		return OrchestrationChannel
	}
	if ns, ok := workerNamespace(queue); ok {
		return channelPrefix + ns
	}
	return channelPrefix + queue
}

// workerNamespace matches ^worker_([a-z][a-z0-9_]*)_queue$, as tasker.queue_notify_channel
// does; unlike messages.ValidateNamespace it puts no limit on the length.
func workerNamespace(queue string) (string, bool) {
	ns, ok := strings.CutPrefix(queue, "worker_")
	if !ok {
		return "", false
	}
	if ns, ok = strings.CutSuffix(ns, "_queue"); !ok || ns == "" || ns[0] < 'a' || ns[0] > 'z' {
		return "", false
	}
	for i := 1; i < len(ns); i++ {
		if c := ns[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return "", false
		}
	}
	return ns, true
}

// EnableNotify installs (or refreshes) the notify trigger on a queue's table
// (tasker.enable_queue_notify): after commit, each insert statement of visible messages is
// announced on NotifyChannel(queue). It refuses queues whose channel name would be longer
// than PostgreSQL accepts (63 bytes), since pg_notify would then fail every send.
func EnableNotify(ctx context.Context, db pgmq.DB, queue string) error {
	if err := pgmq.ValidateQueueName(queue); err != nil {
		return fmt.Errorf("tasker: enable_notify: %w", err)
	}
	if ch := NotifyChannel(queue); len(ch) > maxChannelLength {
		return fmt.Errorf("tasker: enable_notify %s: notify channel %q is longer than %d bytes", queue, ch, maxChannelLength)
	}
	if _, err := db.Exec(ctx, "SELECT tasker.enable_queue_notify($1::text)", queue); err != nil {
		return fmt.Errorf("tasker: enable_notify %s: %w", queue, err)
	}
	return nil
}
