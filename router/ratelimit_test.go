package router

import (
	"testing"
	"time"
)

func TestRateLimiter(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	var r RateLimiter
	allowed := 0
	for range 2 * ICMPErrorBurst {
		if r.Allow(t0) {
			allowed++
		}
	}
	if got, want := allowed, ICMPErrorBurst; got != want {
		t.Errorf("burst at one instant: %d allowed, want %d", got, want)
	}

	// One second at full demand (one attempt every 100 µs) allows the
	// steady rate.
	allowed = 0
	now := t0
	for range 10_000 {
		now = now.Add(100 * time.Microsecond)
		if r.Allow(now) {
			allowed++
		}
	}
	if got, want := allowed, ICMPErrorsPerSecond; got != want {
		t.Errorf("one second of demand: %d allowed, want %d", got, want)
	}

	// A long quiet period refills to the burst, no more.
	now = now.Add(time.Hour)
	allowed = 0
	for range 2 * ICMPErrorBurst {
		if r.Allow(now) {
			allowed++
		}
	}
	if got, want := allowed, ICMPErrorBurst; got != want {
		t.Errorf("after an hour: %d allowed, want %d", got, want)
	}

	// Time going backwards adds no credit.
	if r.Allow(now.Add(-time.Hour)) {
		t.Errorf("Allow with an earlier time and an empty bucket = true")
	}
}

func TestNewRateLimiter(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	tests := []struct {
		perSecond, burst int
		over             time.Duration
		want             int
	}{
		{10, 1, time.Second, 1 + 10},
		{10, 5, time.Second, 5 + 10},
		{100, 0, 100 * time.Millisecond, 1 + 10}, // burst raised to 1
		{0, 5, time.Second, 0},                   // off
		{-1, 5, time.Second, 0},
	}
	for _, tt := range tests {
		r := NewRateLimiter(tt.perSecond, tt.burst)
		got := 0
		for now := t0; !now.After(t0.Add(tt.over)); now = now.Add(time.Millisecond) {
			if r.Allow(now) {
				got++
			}
		}
		if got != tt.want {
			t.Errorf("NewRateLimiter(%d, %d) over %v: %d allowed, want %d", tt.perSecond, tt.burst, tt.over, got, tt.want)
		}
	}
}
