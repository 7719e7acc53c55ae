// Package ratelog logs recurring per-packet problems (a full pool, a failed
// send, garbage from the network) at most once per Interval, with the count
// of occurrences since the previous line, so a flood never becomes a log
// line per packet.
package ratelog

import (
	"sync"
	"time"

	"go.uber.org/zap"
)

// Interval (1 s) is the shortest time between two lines about the same
// problem.
const Interval = time.Second

// Limiter rate-limits the lines of one kind of event. The zero value is
// ready; it is safe for concurrent use.
type Limiter struct {
	mu    sync.Mutex
	last  time.Time
	count int // events since the last line
}

// Event counts n events and, when Interval has passed since the last line,
// logs msg at warn level with the count, the instance and err. It does not
// allocate when it does not log.
func (l *Limiter) Event(log *zap.Logger, msg, instance string, n int, err error) {
	l.mu.Lock()
	l.count += n
	now := time.Now()
	if !l.last.IsZero() && now.Sub(l.last) < Interval {
		l.mu.Unlock()
		return
	}
	count := l.count
	l.count, l.last = 0, now
	l.mu.Unlock()
	log.Warn(msg, zap.String("instance", instance), zap.Int("count", count), zap.Error(err))
}
