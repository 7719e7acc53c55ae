// LogLimiter and its friends log recurring per-packet problems (a full pool, a failed
// send, garbage from the network) at most once per LogInterval, with the count
// of occurrences since the previous line, so a flood never becomes a log
// line per packet.

package stats

import (
	"sync"
	"time"

	"go.uber.org/zap"
)

// LogInterval (1 s) is the shortest time between two lines about the same
// problem.
const LogInterval = time.Second

// LogLimiter rate-limits the lines of one kind of event. The zero value is
// ready; it is safe for concurrent use.
type LogLimiter struct {
	mu    sync.Mutex
	last  time.Time
	count int // events since the last line

	// Allow's window: its start, lines allowed in it, lines refused.
	start      time.Time
	lines      int
	suppressed int
}

// Event counts n events and, when LogInterval has passed since the last line,
// logs msg at warn level with the count, the instance and err. It does not
// allocate when it does not log.
func (l *LogLimiter) Event(log *zap.Logger, msg, instance string, n int, err error) {
	l.mu.Lock()
	l.count += n
	now := time.Now()
	if !l.last.IsZero() && now.Sub(l.last) < LogInterval {
		l.mu.Unlock()
		return
	}
	count := l.count
	l.count, l.last = 0, now
	l.mu.Unlock()
	log.Warn(msg, zap.String("instance", instance), zap.Int("count", count), zap.Error(err))
}

// Allow is for a logger that writes its own lines (a library's): it allows
// burst lines per LogInterval and refuses the rest. The first line allowed
// in a new interval reports how many were refused since the previous one.
func (l *LogLimiter) Allow(burst int) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now := time.Now(); now.Sub(l.start) >= LogInterval {
		suppressed = l.suppressed
		l.start, l.lines, l.suppressed = now, 0, 0
	}
	if l.lines >= burst {
		l.suppressed++
		return false, 0
	}
	l.lines++
	return true, suppressed
}
