package timeutil

import (
	"context"
	"math"
	"math/rand/v2"
	"time"
)

// Between returns a random duration in [lo, hi) (lo when hi <= lo). rnd returns values in
// [0, 1), such as math/rand/v2.Float64, which is used when rnd is nil; passing it lets a caller
// keep a seeded source for reproducible runs and tests.
func Between(lo, hi time.Duration, rnd func() float64) time.Duration {
	if hi <= lo {
		return lo
	}
	if rnd == nil {
		rnd = rand.Float64
	}
	u := min(max(rnd(), 0), 1)
	return lo + time.Duration(u*float64(hi-lo))
}

// Jitter returns d lengthened or shortened by up to fraction of itself, uniformly: with
// fraction 0.1 a one-second wait becomes 0.9s to 1.1s. Waits of many processes that started
// together thereby drift apart instead of hitting the database in lockstep. rnd is as for
// Between.
func Jitter(d time.Duration, fraction float64, rnd func() float64) time.Duration {
	spread := time.Duration(float64(d) * fraction)
	return Between(d-spread, d+spread, rnd)
}

// Sleep waits for d, or until ctx ends, in which case it returns ctx.Err().
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// CeilSeconds rounds d up to whole seconds, PGMQ's unit of delays and visibility timeouts: a
// 50ms retry delay waits 1s, never 0s. A d <= 0 is 0; a d beyond the int32 range saturates.
func CeilSeconds(d time.Duration) int32 {
	if d <= 0 {
		return 0
	}
	s := d / time.Second
	if d%time.Second != 0 {
		s++
	}
	return int32(min(s, math.MaxInt32))
}
