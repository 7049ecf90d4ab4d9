package messages

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Queue names of the orchestration side (see docs/protocol.md).
const (
	QueueTaskRequests      = "orchestration_task_requests"
	QueueStepResults       = "orchestration_step_results"
	QueueTaskFinalizations = "orchestration_task_finalizations"
	QueueDLQ               = "orchestration_dlq"
)

// WorkerQueue returns the queue that carries the step dispatches of a namespace.
func WorkerQueue(namespace string) string { return "worker_" + namespace + "_queue" }

// MaxNamespaceLength is the longest namespace: it keeps every name derived from a namespace
// (its worker queue, that queue's PGMQ tables and notify channel) within PGMQ's limits.
const MaxNamespaceLength = 29

// ReservedNamespace is the namespace of the consumer's own queues: a worker namespace of that
// name would share their notify channel.
const ReservedNamespace = "orchestration"

// ValidateNamespace reports whether ns can name a namespace: lower case [a-z][a-z0-9_]*, not
// ReservedNamespace, and at most MaxNamespaceLength characters. Templates, workers and their queues all follow it.
func ValidateNamespace(ns string) error {
	if ns == "" {
		return errors.New("namespace is empty")
	}
	for i := 0; i < len(ns); i++ {
		c := ns[i]
		if !(c >= 'a' && c <= 'z' || i > 0 && (c >= '0' && c <= '9' || c == '_')) {
			return fmt.Errorf("namespace %q is invalid: must be lower case [a-z][a-z0-9_]*", ns)
		}
	}
	if ns == ReservedNamespace {
		return fmt.Errorf("namespace %q is reserved: the consumer's own queues notify on its channel", ns)
	}
	if len(ns) > MaxNamespaceLength {
		return fmt.Errorf("namespace %q is too long: %d characters, at most %d so that %q fits PGMQ's queue name limit",
			ns, len(ns), MaxNamespaceLength, WorkerQueue(ns))
	}
	return nil
}

// ValidationError says which field of a message is wrong. It is permanent: retrying the same
// body can never succeed.
type ValidationError struct {
	Field  string // dotted path, e.g. "task_request.context"
	Reason string
}

func (e *ValidationError) Error() string {
	if e.Field == "" {
		return "invalid message: " + e.Reason
	}
	return fmt.Sprintf("invalid message: field %q: %s", e.Field, e.Reason)
}

// IsValidation reports whether err is (or wraps) a *ValidationError.
func IsValidation(err error) bool {
	var v *ValidationError
	return errors.As(err, &v)
}

func invalid(field, format string, args ...any) error {
	return &ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// MaxKeyLength bounds request_id and idempotency_key: they are indexed.
const MaxKeyLength = 255

// MaxDepth bounds how deeply a body's arrays and objects may nest. PostgreSQL stores far deeper
// documents than Go's decoder reads back (10,000 levels), so a deeper body could be stored and
// then never decoded or dead-lettered; no workflow needs more than a few dozen levels.
const MaxDepth = 128

// TaskRequest is the body of orchestration_task_requests (see docs/protocol.md).
type TaskRequest struct {
	RequestID   string          `json:"request_id,omitempty"`
	TaskRequest TaskRequestSpec `json:"task_request"`
	Metadata    json.RawMessage `json:"metadata,omitempty"`
}

// TaskRequestSpec is what the client asks for.
type TaskRequestSpec struct {
	Namespace      string          `json:"namespace"`
	Name           string          `json:"name"`
	Version        string          `json:"version"`
	Context        json.RawMessage `json:"context"`
	Initiator      string          `json:"initiator,omitempty"`
	SourceSystem   string          `json:"source_system,omitempty"`
	Reason         string          `json:"reason,omitempty"`
	Tags           []string        `json:"tags,omitempty"`
	Priority       int             `json:"priority,omitempty"`
	CorrelationID  uuid.UUID       `json:"correlation_id"`
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
}

// NewTaskRequest returns a request for spec with a new request_id, a new correlation_id when
// spec has none (both UUIDv7), and metadata naming the requester and the time.
func NewTaskRequest(spec TaskRequestSpec, requester string, now time.Time) (TaskRequest, error) {
	requestID, err := uuid.NewV7()
	if err != nil {
		return TaskRequest{}, fmt.Errorf("new request id: %w", err)
	}
	if err := spec.defaultCorrelationID(); err != nil {
		return TaskRequest{}, err
	}
	meta, err := json.Marshal(map[string]string{"requested_at": now.UTC().Format(time.RFC3339Nano), "requester": requester})
	if err != nil {
		return TaskRequest{}, err
	}
	return TaskRequest{RequestID: requestID.String(), TaskRequest: spec, Metadata: meta}, nil
}

// defaultCorrelationID gives a spec without a correlation_id a new one: a UUIDv7, so that ids
// sort by creation time.
func (s *TaskRequestSpec) defaultCorrelationID() error {
	if s.CorrelationID != uuid.Nil {
		return nil
	}
	id, err := uuid.NewV7()
	if err != nil {
		return fmt.Errorf("new correlation id: %w", err)
	}
	s.CorrelationID = id
	return nil
}

// ValidateTaskContext checks a task request's context: present and a JSON object. The error is
// a *ValidationError naming task_request.context.
func ValidateTaskContext(raw json.RawMessage) error {
	t := bytes.TrimSpace(raw)
	switch {
	// An absent context decodes as nil, an explicit null as the text null.
	case len(t) == 0 || string(t) == "null":
		return invalid("task_request.context", "required")
	case t[0] != '{' || !json.Valid(t):
		return invalid("task_request.context", "must be a JSON object")
	}
	return nil
}

// StepDispatch is the body sent to worker_<namespace>_queue (see docs/protocol.md).
type StepDispatch struct {
	TaskUUID          uuid.UUID                  `json:"task_uuid"`
	StepUUID          uuid.UUID                  `json:"step_uuid"`
	CorrelationID     uuid.UUID                  `json:"correlation_id"`
	Namespace         string                     `json:"namespace"`
	TaskName          string                     `json:"task_name"`
	TaskVersion       string                     `json:"task_version"`
	StepName          string                     `json:"step_name"`
	Handler           HandlerSpec                `json:"handler"`
	Attempt           int                        `json:"attempt"`
	MaxAttempts       int                        `json:"max_attempts"`
	TaskContext       json.RawMessage            `json:"task_context"`
	DependencyResults map[string]json.RawMessage `json:"dependency_results"`
}

// HandlerSpec names the worker code that runs a step.
type HandlerSpec struct {
	Callable       string          `json:"callable"`
	Initialization json.RawMessage `json:"initialization"`
}

// StepStatus is the outcome a worker reports (an enum, so that code never matches status strings).
type StepStatus int

const (
	// StatusUnknown is the zero value; a decoded result never carries it.
	StatusUnknown StepStatus = iota
	// StatusCompleted: the step succeeded and its result is accepted.
	StatusCompleted
	// StatusFailed: the step failed; it is retried while retryable and attempts remain.
	StatusFailed
	// StatusError: the step failed permanently; never retried.
	StatusError
)

var stepStatusNames = [...]string{StatusUnknown: "", StatusCompleted: "completed", StatusFailed: "failed", StatusError: "error"}

func (s StepStatus) String() string {
	if int(s) < len(stepStatusNames) && s != StatusUnknown {
		return stepStatusNames[s]
	}
	return "unknown"
}

// ParseStepStatus parses a wire status; the empty string is StatusUnknown with no error (the
// caller derives it from `success`).
func ParseStepStatus(s string) (StepStatus, error) {
	for i, name := range stepStatusNames {
		if name == s {
			return StepStatus(i), nil
		}
	}
	return StatusUnknown, fmt.Errorf("unknown status %q: want completed, failed or error", s)
}

// MarshalJSON writes the wire name.
func (s StepStatus) MarshalJSON() ([]byte, error) {
	if s == StatusUnknown {
		return []byte(`""`), nil
	}
	return json.Marshal(s.String())
}

// UnmarshalJSON reads the wire name.
func (s *StepStatus) UnmarshalJSON(b []byte) error {
	var str string
	if err := json.Unmarshal(b, &str); err != nil {
		return errors.New("want a string")
	}
	v, err := ParseStepStatus(str)
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// StepResult is the body of orchestration_step_results (see docs/protocol.md).
type StepResult struct {
	TaskUUID      uuid.UUID         `json:"task_uuid"`
	StepUUID      uuid.UUID         `json:"step_uuid"`
	CorrelationID uuid.UUID         `json:"correlation_id"`
	Attempt       int               `json:"attempt"`
	Result        StepExecutionInfo `json:"result"`
}

// StepExecutionInfo is what the worker observed.
type StepExecutionInfo struct {
	Success               bool                   `json:"success"`
	Status                StepStatus             `json:"status"`
	Result                json.RawMessage        `json:"result,omitempty"`
	Error                 *StepError             `json:"error,omitempty"`
	Metadata              json.RawMessage        `json:"metadata,omitempty"`
	OrchestrationMetadata *OrchestrationMetadata `json:"orchestration_metadata,omitempty"`
}

// StepError describes a failure.
type StepError struct {
	Message   string `json:"message"`
	ErrorType string `json:"error_type,omitempty"`
	Retryable bool   `json:"retryable"`
}

// OrchestrationMetadata carries the worker's hints to the orchestrator.
type OrchestrationMetadata struct {
	BackoffHint *BackoffHint `json:"backoff_hint,omitempty"`
}

// BackoffHint asks for a specific retry delay.
type BackoffHint struct {
	DelaySeconds float64 `json:"delay_seconds"`
}

// BackoffHintDuration returns the hint as a duration, or nil when there is none. It saturates
// rather than overflows: an absurdly large hint becomes the longest duration (and is then capped
// by the step's backoff_max), a negative or NaN one becomes 0.
func (r *StepExecutionInfo) BackoffHintDuration() *time.Duration {
	if r.OrchestrationMetadata == nil || r.OrchestrationMetadata.BackoffHint == nil {
		return nil
	}
	secs := r.OrchestrationMetadata.BackoffHint.DelaySeconds
	var d time.Duration
	switch {
	case !(secs > 0): // also NaN
		d = 0
	case secs >= float64(math.MaxInt64/int64(time.Second)):
		d = math.MaxInt64
	default:
		d = time.Duration(secs * float64(time.Second))
	}
	return &d
}

// Finalization is the body of orchestration_task_finalizations (see docs/protocol.md).
type Finalization struct {
	TaskUUID uuid.UUID `json:"task_uuid"`
}

// DeadLetter is the body of orchestration_dlq (see docs/protocol.md).
type DeadLetter struct {
	SourceQueue    string          `json:"source_queue"`
	SourceMsgID    int64           `json:"source_msg_id"`
	ReadCount      int32           `json:"read_ct"`
	Reason         string          `json:"reason"`
	Error          string          `json:"error"`
	Message        json.RawMessage `json:"message"`
	DeadLetteredAt time.Time       `json:"dead_lettered_at"`
}

// Dead-letter reasons.
const (
	ReasonInvalidJSON     = "invalid_json"
	ReasonValidation      = "validation_failed"
	ReasonMaxReadCount    = "max_read_count_exceeded"
	ReasonPermanentError  = "permanent_error"
	ReasonRetriesExceeded = "handler_failed_max_read_count"
	ReasonMessageTooLarge = "message_too_large"
)

// OriginalBody returns body as JSON when it is valid JSON, else as a JSON string of its text,
// so a dead letter always keeps what was received.
func OriginalBody(body []byte) json.RawMessage {
	if json.Valid(body) {
		return json.RawMessage(body)
	}
	b, _ := json.Marshal(string(body))
	return b
}

// decodeObject unmarshals body into v after checking it is a JSON object, turning the standard
// library's type errors into ValidationErrors that name the field.
func decodeObject(body []byte, v any) error {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) > 0 && trimmed[0] != '{' {
		if json.Valid(trimmed) {
			return &ValidationError{Reason: "body must be a JSON object"}
		}
		return &ValidationError{Reason: "body is not valid JSON"}
	}
	if depth := nestingDepth(trimmed); depth > MaxDepth {
		return &ValidationError{Reason: fmt.Sprintf("body nests deeper than %d levels", MaxDepth)}
	}
	// One pass: Unmarshal validates the whole body before it sets anything.
	if err := json.Unmarshal(trimmed, v); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) || len(trimmed) == 0 {
			return &ValidationError{Reason: "body is not valid JSON"}
		}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			field := te.Field
			if field == "" {
				field = "(root)"
			}
			return invalid(field, "wrong type: got JSON %s, want %s", te.Value, te.Type)
		}
		// A UUID or status field's own parser failed; its error does not say which field.
		if field := failingField(trimmed); field != "" {
			return invalid(field, "%v", err)
		}
		return &ValidationError{Reason: err.Error()}
	}
	return nil
}

// nestingDepth returns the deepest nesting of arrays and objects in a JSON text (strings
// skipped); it does not validate the text.
func nestingDepth(b []byte) int {
	depth, deepest, inString := 0, 0, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case inString:
		case c == '{' || c == '[':
			depth++
			deepest = max(deepest, depth)
		case c == '}' || c == ']':
			depth--
		}
	}
	return deepest
}

// parsedFields are the fields whose values are parsed by a type of their own (UUIDs, the
// status enum), by dotted path.
var parsedFields = []struct {
	path  []string
	parse func(json.RawMessage) error
}{
	{[]string{"task_uuid"}, parseUUID},
	{[]string{"step_uuid"}, parseUUID},
	{[]string{"correlation_id"}, parseUUID},
	{[]string{"task_request", "correlation_id"}, parseUUID},
	{[]string{"result", "status"}, func(raw json.RawMessage) error { var s StepStatus; return json.Unmarshal(raw, &s) }},
}

func parseUUID(raw json.RawMessage) error {
	var id uuid.UUID
	if err := json.Unmarshal(raw, &id); err != nil {
		return err
	}
	return nil
}

// failingField finds which parsed field of body does not parse (only called on the error path).
func failingField(body []byte) string {
	for _, f := range parsedFields {
		raw, ok := lookup(body, f.path)
		if ok && string(raw) != "null" && f.parse(raw) != nil {
			return strings.Join(f.path, ".")
		}
	}
	return ""
}

func lookup(body []byte, path []string) (json.RawMessage, bool) {
	raw := json.RawMessage(body)
	for _, key := range path {
		var obj map[string]json.RawMessage
		if json.Unmarshal(raw, &obj) != nil {
			return nil, false
		}
		if raw = obj[key]; raw == nil {
			return nil, false
		}
	}
	return raw, true
}

// DecodeTaskRequest decodes and validates a task request. A missing correlation_id is derived
// from the body (a name-based UUID), so every delivery of one message, including the ones that
// fail, logs the same correlation id.
func DecodeTaskRequest(body []byte) (TaskRequest, error) {
	var wire struct {
		RequestID   string           `json:"request_id,omitempty"`
		TaskRequest *TaskRequestSpec `json:"task_request"`
		Metadata    json.RawMessage  `json:"metadata,omitempty"`
	}
	if err := decodeObject(body, &wire); err != nil {
		return TaskRequest{}, err
	}
	if wire.TaskRequest == nil {
		return TaskRequest{}, invalid("task_request", "required")
	}
	r := TaskRequest{RequestID: wire.RequestID, TaskRequest: *wire.TaskRequest, Metadata: wire.Metadata}
	spec := &r.TaskRequest
	for _, f := range []struct{ name, value string }{{"namespace", spec.Namespace}, {"name", spec.Name}, {"version", spec.Version}} {
		if strings.TrimSpace(f.value) == "" {
			return r, invalid("task_request."+f.name, "required, must be a non-empty string")
		}
	}
	if spec.Priority < math.MinInt32 || spec.Priority > math.MaxInt32 {
		return r, invalid("task_request.priority", "%d is out of range: want a 32-bit integer", spec.Priority)
	}
	for _, f := range []struct{ name, value string }{{"request_id", r.RequestID}, {"task_request.idempotency_key", spec.IdempotencyKey}} {
		if len(f.value) > MaxKeyLength {
			return r, invalid(f.name, "longer than %d bytes", MaxKeyLength)
		}
	}
	if err := ValidateTaskContext(spec.Context); err != nil {
		return r, err
	}
	if spec.CorrelationID == uuid.Nil {
		spec.CorrelationID = uuid.NewSHA1(uuid.NameSpaceOID, body)
	}
	return r, nil
}

// DecodeStepResult decodes and validates a step result. An empty status is derived from
// `success` (completed or failed).
func DecodeStepResult(body []byte) (StepResult, error) {
	var wire struct {
		StepResult
		Result *StepExecutionInfo `json:"result"` // nil: missing
	}
	if err := decodeObject(body, &wire); err != nil {
		return StepResult{}, err
	}
	r := wire.StepResult
	if wire.Result != nil {
		r.Result = *wire.Result
	}
	if r.TaskUUID == uuid.Nil {
		return r, invalid("task_uuid", "required, must be a UUID")
	}
	if r.StepUUID == uuid.Nil {
		return r, invalid("step_uuid", "required, must be a UUID")
	}
	if r.Attempt < 1 || r.Attempt > math.MaxInt32 {
		return r, invalid("attempt", "required, must be an integer from 1 to %d", math.MaxInt32)
	}
	if wire.Result == nil {
		return r, invalid("result", "required")
	}
	if r.Result.Status == StatusUnknown {
		if r.Result.Success {
			r.Result.Status = StatusCompleted
		} else {
			r.Result.Status = StatusFailed
		}
	}
	if r.Result.Status != StatusCompleted && r.Result.Error == nil {
		r.Result.Error = &StepError{Message: "step " + r.Result.Status.String() + " without an error description"}
	}
	return r, nil
}

// DecodeFinalization decodes and validates a finalization request.
func DecodeFinalization(body []byte) (Finalization, error) {
	var r Finalization
	if err := decodeObject(body, &r); err != nil {
		return r, err
	}
	if r.TaskUUID == uuid.Nil {
		return r, invalid("task_uuid", "required, must be a UUID")
	}
	return r, nil
}

// DecodeStepDispatch decodes a step dispatch (used by workers).
func DecodeStepDispatch(body []byte) (StepDispatch, error) {
	var d StepDispatch
	if err := decodeObject(body, &d); err != nil {
		return d, err
	}
	if d.TaskUUID == uuid.Nil {
		return d, invalid("task_uuid", "required, must be a UUID")
	}
	if d.StepUUID == uuid.Nil {
		return d, invalid("step_uuid", "required, must be a UUID")
	}
	if d.Handler.Callable == "" {
		return d, invalid("handler.callable", "required")
	}
	if d.Attempt < 1 || d.Attempt > math.MaxInt32 {
		return d, invalid("attempt", "required, must be an integer from 1 to %d", math.MaxInt32)
	}
	return d, nil
}

// StripNUL returns the JSON text b with every NUL character in its strings (the escape \u0000)
// replaced by U+FFFD. PostgreSQL's jsonb cannot store NUL, so a body carrying one would be
// refused by every send; workers apply this to what they report (an error text from a C
// library, binary output) so that the step still reaches an outcome.
func StripNUL(b []byte) []byte {
	const nul = `\u0000`
	if !bytes.Contains(b, []byte(nul)) {
		return b
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] == '\\' {
			if bytes.HasPrefix(b[i:], []byte(nul)) {
				out = append(out, `\ufffd`...)
				i += len(nul) - 1
				continue
			}
			// Any other escape: copy it whole, so an escaped backslash is never read as the
			// start of an escape.
			if i+1 < len(b) {
				out = append(out, b[i], b[i+1])
				i++
				continue
			}
		}
		out = append(out, b[i])
	}
	return out
}
