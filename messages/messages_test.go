package messages

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestDecodeTaskRequestNamesTheField(t *testing.T) {
	cases := map[string]struct {
		body  string
		field string
	}{
		"not json":           {`{"task_request":`, ""},
		"not an object":      {`[1,2]`, ""},
		"no task_request":    {`{"request_id":"x"}`, "task_request"},
		"missing namespace":  {`{"task_request":{"name":"a","version":"1","context":{}}}`, "task_request.namespace"},
		"empty name":         {`{"task_request":{"namespace":"d","name":" ","version":"1","context":{}}}`, "task_request.name"},
		"missing context":    {`{"task_request":{"namespace":"d","name":"a","version":"1"}}`, "task_request.context"},
		"context not object": {`{"task_request":{"namespace":"d","name":"a","version":"1","context":"x"}}`, "task_request.context"},
		"wrong type":         {`{"task_request":{"namespace":7,"name":"a","version":"1","context":{}}}`, "task_request.namespace"},
		"bad correlation":    {`{"task_request":{"namespace":"d","name":"a","version":"1","context":{},"correlation_id":"nope"}}`, ""},
	}
	for name, c := range cases {
		_, err := DecodeTaskRequest([]byte(c.body))
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if !IsValidation(err) {
			t.Errorf("%s: %v is not a validation error", name, err)
		}
		if c.field != "" && !strings.Contains(err.Error(), `"`+c.field+`"`) {
			t.Errorf("%s: error %q does not name %s", name, err, c.field)
		}
	}
}

func TestDecodeTaskRequestDefaultsAndUnknownFields(t *testing.T) {
	r, err := DecodeTaskRequest([]byte(`{"task_request":{"namespace":"d","name":"a","version":"1","context":{"n":1},"surprise":true},"extra":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if r.TaskRequest.CorrelationID == uuid.Nil || r.TaskRequest.CorrelationID.Version() != 5 {
		t.Fatalf("correlation id = %v, want one derived from the body", r.TaskRequest.CorrelationID)
	}
	// Every delivery of the same body gets the same one; another body another.
	again, _ := DecodeTaskRequest([]byte(`{"task_request":{"namespace":"d","name":"a","version":"1","context":{"n":1},"surprise":true},"extra":1}`))
	other, _ := DecodeTaskRequest([]byte(`{"task_request":{"namespace":"d","name":"a","version":"1","context":{"n":2}}}`))
	if again.TaskRequest.CorrelationID != r.TaskRequest.CorrelationID || other.TaskRequest.CorrelationID == r.TaskRequest.CorrelationID {
		t.Fatalf("derived correlation ids: %v, %v, %v", r.TaskRequest.CorrelationID, again.TaskRequest.CorrelationID, other.TaskRequest.CorrelationID)
	}
}

func TestDecodeStepResult(t *testing.T) {
	task, step := uuid.New(), uuid.New()
	body := func(result string) []byte {
		return []byte(`{"task_uuid":"` + task.String() + `","step_uuid":"` + step.String() + `","attempt":2,"result":` + result + `}`)
	}
	r, err := DecodeStepResult(body(`{"success":true,"result":{"v":1}}`))
	if err != nil || r.Result.Status != StatusCompleted || r.Attempt != 2 {
		t.Fatalf("derived completed: %+v %v", r, err)
	}
	r, err = DecodeStepResult(body(`{"success":false}`))
	if err != nil || r.Result.Status != StatusFailed || r.Result.Error == nil {
		t.Fatalf("derived failed: %+v %v", r, err)
	}
	r, err = DecodeStepResult(body(`{"success":false,"status":"error","error":{"message":"x","retryable":true}}`))
	if err != nil || r.Result.Status != StatusError {
		t.Fatalf("explicit error: %+v %v", r, err)
	}
	for name, b := range map[string][]byte{
		"unknown status": body(`{"status":"skipped"}`),
		"no result":      []byte(`{"task_uuid":"` + task.String() + `","step_uuid":"` + step.String() + `","attempt":1}`),
		"attempt zero":   []byte(`{"task_uuid":"` + task.String() + `","step_uuid":"` + step.String() + `","attempt":0,"result":{}}`),
		"no step":        []byte(`{"task_uuid":"` + task.String() + `","attempt":1,"result":{}}`),
		"attempt string": []byte(`{"task_uuid":"` + task.String() + `","step_uuid":"` + step.String() + `","attempt":"1","result":{}}`),
	} {
		if _, err := DecodeStepResult(b); err == nil || !IsValidation(err) {
			t.Errorf("%s: err = %v, want a validation error", name, err)
		}
	}
}

func TestStepStatusRoundTrip(t *testing.T) {
	for _, s := range []StepStatus{StatusCompleted, StatusFailed, StatusError} {
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		var back StepStatus
		if err := json.Unmarshal(b, &back); err != nil || back != s {
			t.Fatalf("%v -> %s -> %v (%v)", s, b, back, err)
		}
	}
	if _, err := ParseStepStatus("skipped"); err == nil {
		t.Fatal("the vestigial skipped status must be rejected")
	}
}

func TestBackoffHintSaturates(t *testing.T) {
	hint := func(secs float64) *time.Duration {
		r := StepExecutionInfo{OrchestrationMetadata: &OrchestrationMetadata{BackoffHint: &BackoffHint{DelaySeconds: secs}}}
		return r.BackoffHintDuration()
	}
	if (&StepExecutionInfo{}).BackoffHintDuration() != nil {
		t.Fatal("no hint must be nil")
	}
	for secs, want := range map[float64]time.Duration{1.5: 1500 * time.Millisecond, 0: 0, -3: 0, 1e10: math.MaxInt64, math.NaN(): 0} {
		if got := *hint(secs); got != want {
			t.Errorf("hint %v s = %v, want %v", secs, got, want)
		}
	}
}

func TestOriginalBodyKeepsWhatWasReceived(t *testing.T) {
	if got := string(OriginalBody([]byte(`{"a":1}`))); got != `{"a":1}` {
		t.Fatalf("json kept as is: %s", got)
	}
	if got := string(OriginalBody([]byte(`not json`))); got != `"not json"` {
		t.Fatalf("text kept as a string: %s", got)
	}
}

func TestOverlongKeysAreRejected(t *testing.T) {
	long := strings.Repeat("k", MaxKeyLength+1)
	for _, body := range []string{
		`{"request_id":"` + long + `","task_request":{"namespace":"d","name":"a","version":"1","context":{}}}`,
		`{"task_request":{"namespace":"d","name":"a","version":"1","context":{},"idempotency_key":"` + long + `"}}`,
	} {
		if _, err := DecodeTaskRequest([]byte(body)); err == nil || !IsValidation(err) {
			t.Fatalf("err = %v, want a validation error", err)
		}
	}
}

func TestNewTaskRequestRoundTrips(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	req, err := NewTaskRequest(TaskRequestSpec{Namespace: "demo", Name: "linear", Version: "1.0.0", Context: json.RawMessage(`{"n":6}`)}, "test", at)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(req)
	back, err := DecodeTaskRequest(b)
	if err != nil {
		t.Fatal(err)
	}
	if back.RequestID == "" || back.RequestID != req.RequestID || back.TaskRequest.CorrelationID != req.TaskRequest.CorrelationID ||
		!strings.Contains(string(back.Metadata), `"requested_at":"2026-03-01T12:00:00Z"`) {
		t.Fatalf("round trip: %+v from %s", back, b)
	}
}

func TestValidateNamespace(t *testing.T) {
	longest := strings.Repeat("n", MaxNamespaceLength)
	if n := len(WorkerQueue(longest)); n > 47 {
		t.Errorf("worker queue of the longest namespace has %d characters, over PGMQ's 47", n)
	}
	for ns, want := range map[string]string{
		"demo": "", "a": "", "a_1_b": "", longest: "",
		"":              "namespace is empty",
		longest + "n":   "is too long: 30 characters, at most 29",
		"Demo":          `namespace "Demo" is invalid: must be lower case`,
		"orchestration": "is reserved",
		"1demo":         "is invalid", "_demo": "is invalid", "de-mo": "is invalid", "de.mo": "is invalid", "dé": "is invalid",
	} {
		err := ValidateNamespace(ns)
		switch {
		case want == "" && err != nil:
			t.Errorf("ValidateNamespace(%q) = %v, want nil", ns, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("ValidateNamespace(%q) = %v, want an error containing %q", ns, err, want)
		}
	}
}

func TestValidateTaskContext(t *testing.T) {
	for raw, want := range map[string]string{
		`{"n":1}`: "", ` {} `: "",
		"": "required", "null": "required", `[1]`: "must be a JSON object", `"x"`: "must be a JSON object", `{"n":`: "must be a JSON object",
	} {
		err := ValidateTaskContext(json.RawMessage(raw))
		var ve *ValidationError
		switch {
		case want == "" && err != nil:
			t.Errorf("ValidateTaskContext(%q) = %v, want nil", raw, err)
		case want != "" && (!errors.As(err, &ve) || ve.Field != "task_request.context" || ve.Reason != want):
			t.Errorf("ValidateTaskContext(%q) = %v, want a validation error of task_request.context: %s", raw, err, want)
		}
	}
}
func TestValuesTheDatabaseCannotHoldAreValidationErrors(t *testing.T) {
	task, step := uuid.New(), uuid.New()
	deep := strings.Repeat(`[`, MaxDepth+1) + strings.Repeat(`]`, MaxDepth+1)
	request := func(extra string) string {
		return `{"task_request":{"namespace":"d","name":"a","version":"1","context":{}` + extra + `}}`
	}
	result := func(attempt, status string) string {
		return `{"task_uuid":"` + task.String() + `","step_uuid":"` + step.String() + `","attempt":` + attempt + `,"result":{"status":` + status + `}}`
	}
	cases := []struct {
		name, body, field string
		decode            func([]byte) error
	}{
		{"attempt beyond int32", result("2147483648", `"completed"`), "attempt", decodeResult},
		{"priority beyond int32", request(`,"priority":2147483648`), "task_request.priority", decodeRequest},
		{"priority below int32", request(`,"priority":-2147483649`), "task_request.priority", decodeRequest},
		{"bad status", result("1", `"done"`), "result.status", decodeResult},
		{"bad task uuid", `{"task_uuid":"nope","step_uuid":"` + step.String() + `","attempt":1,"result":{}}`, "task_uuid", decodeResult},
		{"bad step uuid", `{"task_uuid":"` + task.String() + `","step_uuid":"x","attempt":1,"result":{}}`, "step_uuid", decodeResult},
		{"bad correlation id", request(`,"correlation_id":"nope"`), "task_request.correlation_id", decodeRequest},
		{"bad finalization uuid", `{"task_uuid":"12"}`, "task_uuid", func(b []byte) error { _, err := DecodeFinalization(b); return err }},
		{"nested too deep", request(`,"tags":` + deep), "", decodeRequest},
	}
	for _, c := range cases {
		err := c.decode([]byte(c.body))
		if err == nil || !IsValidation(err) {
			t.Errorf("%s: err = %v, want a validation error", c.name, err)
			continue
		}
		if c.field != "" && !strings.Contains(err.Error(), `"`+c.field+`"`) {
			t.Errorf("%s: error %q does not name %s", c.name, err, c.field)
		}
	}
	// At the limit is fine, and a bracket inside a string does not count.
	ok := request(`,"tags":["` + strings.Repeat(`[`, 500) + `"]`)
	if _, err := DecodeTaskRequest([]byte(ok)); err != nil {
		t.Fatalf("brackets inside a string: %v", err)
	}
	atLimit := `{"task_request":{"namespace":"d","name":"a","version":"1","context":` + strings.Repeat(`{"a":`, MaxDepth-2) + `1` + strings.Repeat(`}`, MaxDepth-2) + `}}`
	if _, err := DecodeTaskRequest([]byte(atLimit)); err != nil {
		t.Fatalf("nesting at the limit: %v", err)
	}
}

func decodeRequest(b []byte) error { _, err := DecodeTaskRequest(b); return err }
func decodeResult(b []byte) error  { _, err := DecodeStepResult(b); return err }

func TestStripNUL(t *testing.T) {
	for in, want := range map[string]string{
		`{"a":"x\u0000y"}`:     `{"a":"x\ufffdy"}`,
		`{"a":"\\u0000"}`:      `{"a":"\\u0000"}`, // an escaped backslash, then the text u0000
		`{"a":"\\\u0000"}`:     `{"a":"\\\ufffd"}`,
		`{"\u0000":1}`:         `{"\ufffd":1}`,
		`{"plain":"text"}`:     `{"plain":"text"}`,
		`{"a":"\u00001"}`:      `{"a":"\ufffd1"}`,
		`{"a":"\u0001\u0000"}`: `{"a":"\u0001\ufffd"}`,
	} {
		got := StripNUL([]byte(in))
		if string(got) != want || !json.Valid(got) {
			t.Errorf("StripNUL(%s) = %s, want %s", in, got, want)
		}
	}
	body, _ := json.Marshal(map[string]string{"error": "bad\x00byte"})
	var back map[string]string
	if err := json.Unmarshal(StripNUL(body), &back); err != nil || strings.ContainsRune(back["error"], 0) {
		t.Fatalf("round trip: %q %v", back, err)
	}
}
