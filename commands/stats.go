package commands

import (
	"sync/atomic"
	"time"
)

// Stats counts outcomes per command kind without locks (every handler goroutine records
// concurrently); Snapshot reads them.
type Stats struct {
	started time.Time
	counts  [KindFinalization + 1][OutcomeFailed + 1]atomic.Uint64
}

// NewStats starts counting at now.
func NewStats(now time.Time) *Stats { return &Stats{started: now} }

// Record counts one outcome.
func (s *Stats) Record(k Kind, o Outcome) {
	if k < 0 || int(k) >= len(s.counts) || o < 1 || int(o) >= len(s.counts[k]) {
		return
	}
	s.counts[k][o].Add(1)
}

// KindStats are the counters of one kind.
type KindStats struct {
	Processed    uint64 `json:"processed"`
	Skipped      uint64 `json:"skipped"`
	Failed       uint64 `json:"failed"`
	DeadLettered uint64 `json:"dead_lettered"`
	NotFound     uint64 `json:"not_found"`
}

func (k *KindStats) add(o KindStats) {
	k.Processed += o.Processed
	k.Skipped += o.Skipped
	k.Failed += o.Failed
	k.DeadLettered += o.DeadLettered
	k.NotFound += o.NotFound
}

// StatsSnapshot is a point-in-time copy of the statistics.
type StatsSnapshot struct {
	StartedAt time.Time            `json:"started_at"`
	ByKind    map[string]KindStats `json:"by_kind"`
	Total     KindStats            `json:"total"`
}

// Snapshot copies the counters.
func (s *Stats) Snapshot() StatsSnapshot {
	snap := StatsSnapshot{StartedAt: s.started, ByKind: make(map[string]KindStats, len(Kinds))}
	for _, k := range Kinds {
		ks := KindStats{
			Processed:    s.counts[k][OutcomeProcessed].Load(),
			Skipped:      s.counts[k][OutcomeSkipped].Load(),
			Failed:       s.counts[k][OutcomeFailed].Load(),
			DeadLettered: s.counts[k][OutcomeDeadLettered].Load(),
			NotFound:     s.counts[k][OutcomeNotFound].Load(),
		}
		snap.ByKind[k.String()] = ks
		snap.Total.add(ks)
	}
	return snap
}
