package stats

import (
	"errors"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestEventLogsOncePerIntervalWithTheCount(t *testing.T) {
	core, logs := observer.New(zapcore.WarnLevel)
	log := zap.New(core)
	var l LogLimiter
	err := errors.New("boom")
	l.Event(log, "send failed", "peer", 3, err) // first event: logged at once
	for i := 0; i < 100; i++ {
		l.Event(log, "send failed", "peer", 2, err) // within the interval: counted only
	}
	if got, want := logs.Len(), 1; got != want {
		t.Fatalf("lines = %d, want %d", got, want)
	}
	if got, want := logs.All()[0].ContextMap()["count"], int64(3); got != want {
		t.Fatalf("count = %v, want %v", got, want)
	}
	l.mu.Lock()
	pending := l.count
	l.mu.Unlock()
	if got, want := pending, 200; got != want {
		t.Fatalf("events waiting for the next line = %d, want %d", got, want)
	}
	if n := testing.AllocsPerRun(100, func() { l.Event(log, "send failed", "peer", 1, err) }); n != 0 {
		t.Fatalf("Event allocates %v times when it does not log", n)
	}
}
