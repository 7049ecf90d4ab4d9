package listener

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/tasker-systems/consumer/internal/textutil"
	"github.com/tasker-systems/consumer/pgmq"
)

// EventType is the event_type of a queue notification payload.
type EventType string

// The event types the notify trigger sends (see docs/protocol.md).
const (
	// MessageReady announces one visible message: {"event_type":"message_ready","queue_name":"q","msg_id":42}.
	MessageReady EventType = "message_ready"
	// BatchReady announces the messages of one insert: {"event_type":"batch_ready","queue_name":"q","msg_ids":[42,43]}.
	BatchReady EventType = "batch_ready"
	// QueueReady says messages arrived whose ids did not fit in a payload: poll the queue.
	QueueReady EventType = "queue_ready"
)

// Event is a decoded notification payload.
type Event struct {
	Type  EventType
	Queue string
	// MsgIDs holds the announced ids: one for MessageReady, at least one for BatchReady, none
	// for QueueReady.
	MsgIDs []int64
}

// ErrMalformedPayload is wrapped by every error ParsePayload returns.
var ErrMalformedPayload = errors.New("malformed notify payload")

// ParsePayload decodes a notification payload. Unknown fields are ignored, so the trigger may
// add some; event_type, a valid queue_name and the ids its event type needs are required, and
// ids must be positive integers.
//
// On error the returned Event holds what could be decoded: in particular Queue is set whenever
// queue_name was a valid queue name, so a caller can still poll that queue.
func ParsePayload(payload string) (Event, error) {
	var ev Event
	var fields map[string]json.RawMessage
	if err := json.Unmarshal([]byte(payload), &fields); err != nil {
		return ev, malformed("not a JSON object: %v", err)
	}
	if fields == nil { // the payload was JSON null
		return ev, malformed("not a JSON object: null")
	}

	// queue_name first, so that it is known even when the rest is wrong.
	queue, err := stringField(fields, "queue_name")
	if err != nil {
		return ev, err
	}
	if err := pgmq.ValidateQueueName(queue); err != nil {
		return ev, malformed("queue_name: %v", err)
	}
	ev.Queue = queue

	typ, err := stringField(fields, "event_type")
	if err != nil {
		return ev, err
	}
	ev.Type = EventType(typ)
	switch ev.Type {
	case MessageReady:
		raw, ok := fields["msg_id"]
		if !ok {
			return ev, malformed("message_ready without msg_id")
		}
		id, err := msgID(raw)
		if err != nil {
			return ev, malformed("msg_id: %v", err)
		}
		ev.MsgIDs = []int64{id}
	case BatchReady:
		raw, ok := fields["msg_ids"]
		if !ok {
			return ev, malformed("batch_ready without msg_ids")
		}
		var items []json.RawMessage
		if kind := jsonKind(raw); kind != "array" {
			return ev, malformed("msg_ids: want an array of integers, got %s", kind)
		}
		if err := json.Unmarshal(raw, &items); err != nil {
			return ev, malformed("msg_ids: %v", err)
		}
		if len(items) == 0 {
			return ev, malformed("msg_ids: empty")
		}
		ids := make([]int64, len(items))
		for i, item := range items {
			if ids[i], err = msgID(item); err != nil {
				return ev, malformed("msg_ids[%d]: %v", i, err)
			}
		}
		ev.MsgIDs = ids
	case QueueReady:
	default:
		return ev, malformed("unknown event_type %q", typ)
	}
	return ev, nil
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformedPayload, fmt.Sprintf(format, args...))
}

// stringField returns a required, non-empty string field.
func stringField(fields map[string]json.RawMessage, name string) (string, error) {
	raw, ok := fields[name]
	if !ok {
		return "", malformed("missing %s", name)
	}
	if kind := jsonKind(raw); kind != "string" {
		return "", malformed("%s: want a string, got %s", name, kind)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", malformed("%s: %v", name, err)
	}
	if s == "" {
		return "", malformed("missing %s (empty)", name)
	}
	return s, nil
}

// msgID decodes a positive integer id.
func msgID(raw json.RawMessage) (int64, error) {
	if kind := jsonKind(raw); kind != "number" {
		return 0, fmt.Errorf("want an integer, got %s %s", kind, textutil.Truncate(string(raw), 40))
	}
	id, err := strconv.ParseInt(string(bytes.TrimSpace(raw)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("want an integer, got %s", textutil.Truncate(string(raw), 40))
	}
	if id <= 0 {
		return 0, fmt.Errorf("want a positive id, got %d", id)
	}
	return id, nil
}

// jsonKind names the kind of a JSON value from its first byte.
func jsonKind(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '"':
		return "string"
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	default:
		return "number"
	}
}
