package actors

import (
	"sync"
	"time"

	"go.uber.org/zap"
)

// rateLog logs a recurring problem at most once per LogEvery, with the count
// of occurrences since the previous line. Safe for concurrent use.
type rateLog struct {
	log  *zap.Logger
	msg  string
	mu   sync.Mutex
	last time.Time
	n    int
}

func newRateLog(log *zap.Logger, msg string) *rateLog { return &rateLog{log: log, msg: msg} }

// Add counts n occurrences of err and logs if the interval has passed.
func (r *rateLog) Add(n int, err error) {
	r.mu.Lock()
	r.n += n
	now := time.Now()
	if now.Sub(r.last) < LogEvery {
		r.mu.Unlock()
		return
	}
	count := r.n
	r.n, r.last = 0, now
	r.mu.Unlock()
	r.log.Warn(r.msg, zap.Int("count", count), zap.Error(err))
}
