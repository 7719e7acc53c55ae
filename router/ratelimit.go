package router

import "time"

// RateLimiter is a token bucket for ICMP errors. Its zero value allows
// ICMPErrorsPerSecond with bursts of ICMPErrorBurst and starts full. It is
// not safe for concurrent use: one router actor owns one.
type RateLimiter struct {
	interval time.Duration // credit one error costs; 0 until first use
	capacity time.Duration // burst × interval
	credit   time.Duration
	last     time.Time
	off      bool
}

// NewRateLimiter returns a limiter allowing perSecond errors per second with
// bursts of burst (at least 1). perSecond ≤ 0 allows none.
func NewRateLimiter(perSecond, burst int) *RateLimiter {
	if perSecond <= 0 {
		return &RateLimiter{off: true}
	}
	burst = max(burst, 1)
	interval := max(time.Second/time.Duration(perSecond), 1)
	return &RateLimiter{interval: interval, capacity: interval * time.Duration(burst)}
}

// Allow reports whether an error may be sent at now, and if so takes a token.
// now should come from a monotonic clock (time.Now); a now earlier than a
// previous call adds no credit.
func (r *RateLimiter) Allow(now time.Time) bool {
	if r.off {
		return false
	}
	if r.interval == 0 {
		r.interval = icmpErrorInterval
		r.capacity = icmpErrorInterval * ICMPErrorBurst
	}
	if r.last.IsZero() {
		r.credit = r.capacity
		r.last = now
	} else if d := now.Sub(r.last); d > 0 {
		r.credit = min(r.credit+d, r.capacity)
		r.last = now
	}
	if r.credit < r.interval {
		return false
	}
	r.credit -= r.interval
	return true
}
