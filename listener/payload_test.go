package listener

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestParsePayload(t *testing.T) {
	t.Parallel()
	ok := []struct {
		name    string
		payload string
		want    Event
	}{
		{"message_ready", `{"event_type":"message_ready","queue_name":"orchestration_task_requests","msg_id":42}`,
			Event{Type: MessageReady, Queue: "orchestration_task_requests", MsgIDs: []int64{42}}},
		{"batch_ready", `{"event_type":"batch_ready","queue_name":"orchestration_step_results","msg_ids":[42,43,44]}`,
			Event{Type: BatchReady, Queue: "orchestration_step_results", MsgIDs: []int64{42, 43, 44}}},
		{"queue_ready", `{"event_type":"queue_ready","queue_name":"worker_payments_queue"}`,
			Event{Type: QueueReady, Queue: "worker_payments_queue"}},
		{"unknown fields are tolerated", `{"event_type":"message_ready","queue_name":"q1","msg_id":7,"namespace":"x","extra":{"a":[1]}}`,
			Event{Type: MessageReady, Queue: "q1", MsgIDs: []int64{7}}},
		{"large id", `{"event_type":"message_ready","queue_name":"q1","msg_id":9223372036854775807}`,
			Event{Type: MessageReady, Queue: "q1", MsgIDs: []int64{9223372036854775807}}},
		{"whitespace", " { \"event_type\" : \"batch_ready\", \"queue_name\" : \"q1\", \"msg_ids\" : [ 1 , 2 ] } ",
			Event{Type: BatchReady, Queue: "q1", MsgIDs: []int64{1, 2}}},
	}
	for _, tc := range ok {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePayload(tc.payload)
			if err != nil {
				t.Fatalf("ParsePayload: %v", err)
			}
			if got.Type != tc.want.Type || got.Queue != tc.want.Queue || !slices.Equal(got.MsgIDs, tc.want.MsgIDs) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}

	bad := []struct {
		name      string
		payload   string
		wantErr   string // substring of the error
		wantQueue string // Event.Queue still decoded
	}{
		{"malformed JSON", `{"event_type":"message_ready",`, "not a JSON object", ""},
		{"not JSON at all", `hello`, "not a JSON object", ""},
		{"JSON array", `[1,2]`, "not a JSON object", ""},
		{"JSON null", `null`, "not a JSON object", ""},
		{"empty", ``, "not a JSON object", ""},
		{"missing queue_name", `{"event_type":"message_ready","msg_id":1}`, "missing queue_name", ""},
		{"empty queue_name", `{"event_type":"message_ready","queue_name":"","msg_id":1}`, "missing queue_name", ""},
		{"queue_name not a string", `{"event_type":"message_ready","queue_name":5,"msg_id":1}`, "queue_name: want a string, got number", ""},
		{"invalid queue_name", `{"event_type":"message_ready","queue_name":"Bad-Name","msg_id":1}`, "queue_name", ""},
		{"missing event_type", `{"queue_name":"q1","msg_id":1}`, "missing event_type", "q1"},
		{"unknown event_type", `{"event_type":"message_gone","queue_name":"q1","msg_id":1}`, `unknown event_type "message_gone"`, "q1"},
		{"event_type not a string", `{"event_type":1,"queue_name":"q1"}`, "event_type: want a string, got number", "q1"},
		{"msg_id is a string", `{"event_type":"message_ready","queue_name":"q1","msg_id":"42"}`, "msg_id: want an integer, got string", "q1"},
		{"msg_id is a float", `{"event_type":"message_ready","queue_name":"q1","msg_id":4.5}`, "msg_id: want an integer, got 4.5", "q1"},
		{"msg_id is null", `{"event_type":"message_ready","queue_name":"q1","msg_id":null}`, "msg_id: want an integer, got null", "q1"},
		{"msg_id is zero", `{"event_type":"message_ready","queue_name":"q1","msg_id":0}`, "msg_id: want a positive id", "q1"},
		{"msg_id overflows", `{"event_type":"message_ready","queue_name":"q1","msg_id":92233720368547758070}`, "msg_id: want an integer", "q1"},
		{"message_ready without msg_id", `{"event_type":"message_ready","queue_name":"q1","msg_ids":[1]}`, "message_ready without msg_id", "q1"},
		{"batch_ready without msg_ids", `{"event_type":"batch_ready","queue_name":"q1","msg_id":1}`, "batch_ready without msg_ids", "q1"},
		{"msg_ids not an array", `{"event_type":"batch_ready","queue_name":"q1","msg_ids":1}`, "msg_ids: want an array of integers, got number", "q1"},
		{"msg_ids empty", `{"event_type":"batch_ready","queue_name":"q1","msg_ids":[]}`, "msg_ids: empty", "q1"},
		{"msg_ids element wrong type", `{"event_type":"batch_ready","queue_name":"q1","msg_ids":[1,"2"]}`, "msg_ids[1]: want an integer, got string", "q1"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := ParsePayload(tc.payload)
			if err == nil {
				t.Fatalf("ParsePayload(%s) = %+v, want an error", tc.payload, ev)
			}
			if !errors.Is(err, ErrMalformedPayload) {
				t.Errorf("error %v does not wrap ErrMalformedPayload", err)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not mention %q", err, tc.wantErr)
			}
			if ev.Queue != tc.wantQueue {
				t.Errorf("Event.Queue = %q, want %q", ev.Queue, tc.wantQueue)
			}
		})
	}
}
