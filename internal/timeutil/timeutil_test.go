package timeutil

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"
)

func TestBetween(t *testing.T) {
	lo, hi := 200*time.Millisecond, 900*time.Millisecond
	for u, want := range map[float64]time.Duration{0: lo, 0.5: 550 * time.Millisecond, 0.999: 899300 * time.Microsecond, -1: lo, 2: hi} {
		if got := Between(lo, hi, func() float64 { return u }); got != want {
			t.Errorf("Between(%s, %s) with rnd %v = %s, want %s", lo, hi, u, got, want)
		}
	}
	if got := Between(hi, lo, nil); got != hi {
		t.Errorf("Between with hi < lo = %s, want lo %s", got, hi)
	}
	for range 1000 {
		if got := Between(lo, hi, nil); got < lo || got >= hi {
			t.Fatalf("Between(%s, %s) = %s, out of range", lo, hi, got)
		}
	}
}

func TestJitter(t *testing.T) {
	for u, want := range map[float64]time.Duration{0: 900 * time.Millisecond, 0.5: time.Second, 0.75: 1050 * time.Millisecond} {
		if got := Jitter(time.Second, 0.1, func() float64 { return u }); got != want {
			t.Errorf("Jitter(1s, 0.1) with rnd %v = %s, want %s", u, got, want)
		}
	}
	if got := Jitter(time.Second, 0, nil); got != time.Second {
		t.Errorf("Jitter without a fraction = %s, want 1s", got)
	}
}

func TestSleep(t *testing.T) {
	if err := Sleep(context.Background(), time.Millisecond); err != nil {
		t.Fatalf("Sleep = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if err := Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep on a cancelled context = %v, want context.Canceled", err)
	}
	if took := time.Since(start); took > time.Minute {
		t.Fatalf("Sleep on a cancelled context waited %s", took)
	}
}

func TestCeilSeconds(t *testing.T) {
	for d, want := range map[time.Duration]int32{
		-time.Second: 0, 0: 0, time.Nanosecond: 1, 50 * time.Millisecond: 1, time.Second: 1,
		time.Second + 1: 2, 30 * time.Second: 30, math.MaxInt64: math.MaxInt32,
	} {
		if got := CeilSeconds(d); got != want {
			t.Errorf("CeilSeconds(%v) = %d, want %d", d, got, want)
		}
	}
}
