package commands

import (
	"encoding/json"
	"fmt"
	"time"
)

// HealthStatus is the overall verdict of a health report.
type HealthStatus int

const (
	HealthUnknown HealthStatus = iota
	HealthHealthy
	HealthDegraded
	HealthUnhealthy
)

func (s HealthStatus) String() string {
	return [...]string{"unknown", "healthy", "degraded", "unhealthy"}[s]
}

// MarshalJSON writes the status name.
func (s HealthStatus) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// UnmarshalJSON reads a status name (for clients of /readyz).
func (s *HealthStatus) UnmarshalJSON(b []byte) error {
	return unmarshalName(b, []string{"unknown", "healthy", "degraded", "unhealthy"}, (*int)(s))
}

// QueueDepthTier buckets the deepest orchestration queue.
type QueueDepthTier int

const (
	DepthUnknown QueueDepthTier = iota
	DepthNormal
	DepthWarning
	DepthCritical
	DepthOverflow
)

func (t QueueDepthTier) String() string {
	return [...]string{"unknown", "normal", "warning", "critical", "overflow"}[t]
}

// MarshalJSON writes the tier name.
func (t QueueDepthTier) MarshalJSON() ([]byte, error) { return json.Marshal(t.String()) }

// UnmarshalJSON reads a tier name.
func (t *QueueDepthTier) UnmarshalJSON(b []byte) error {
	return unmarshalName(b, []string{"unknown", "normal", "warning", "critical", "overflow"}, (*int)(t))
}

func unmarshalName(b []byte, names []string, dst *int) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	for i, n := range names {
		if n == s {
			*dst = i
			return nil
		}
	}
	return fmt.Errorf("unknown value %q", s)
}

// Queue depth tier thresholds (visible messages on the deepest orchestration queue).
const (
	DepthWarningAt  = 1_000
	DepthCriticalAt = 10_000
	DepthOverflowAt = 100_000
)

// TierForDepth classifies a queue depth.
func TierForDepth(depth int64) QueueDepthTier {
	switch {
	case depth < 0:
		return DepthUnknown
	case depth >= DepthOverflowAt:
		return DepthOverflow
	case depth >= DepthCriticalAt:
		return DepthCritical
	case depth >= DepthWarningAt:
		return DepthWarning
	default:
		return DepthNormal
	}
}

// Saturation above which a channel counts as under backpressure.
const BackpressureSaturation = 0.8

// SystemHealth is the health report behind /readyz (see docs/operations.md).
type SystemHealth struct {
	Status                        HealthStatus   `json:"status"`
	DatabaseConnected             bool           `json:"database_connected"`
	QueuesHealthy                 bool           `json:"queues_healthy"`
	CommandChannelSaturation      float64        `json:"command_channel_saturation"`
	NotificationChannelSaturation float64        `json:"notification_channel_saturation"`
	BackpressureActive            bool           `json:"backpressure_active"`
	QueueDepthTier                QueueDepthTier `json:"queue_depth_tier"`
	WorstQueue                    string         `json:"worst_queue,omitempty"`
	WorstQueueDepth               int64          `json:"worst_queue_depth"`
	DLQDepth                      int64          `json:"dlq_depth"`
	InFlight                      int            `json:"in_flight"`
	CheckedAt                     time.Time      `json:"checked_at"`
	Error                         string         `json:"error,omitempty"`
}

// Evaluate sets Status from the other fields: unhealthy without a database or with an
// overflowing queue; degraded under backpressure or with a critical queue.
func (h *SystemHealth) Evaluate() {
	switch {
	case !h.DatabaseConnected || h.QueueDepthTier == DepthOverflow:
		h.Status = HealthUnhealthy
	case h.BackpressureActive || h.QueueDepthTier == DepthCritical || h.QueueDepthTier == DepthUnknown:
		h.Status = HealthDegraded
	default:
		h.Status = HealthHealthy
	}
	h.QueuesHealthy = h.DatabaseConnected && h.QueueDepthTier != DepthOverflow && h.QueueDepthTier != DepthCritical
}
