package stats

import (
	"errors"
	"fmt"
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

func TestAllowBurstThenReportsSuppressed(t *testing.T) {
	var l LogLimiter
	var got []bool
	for range 5 {
		ok, n := l.Allow(3)
		got = append(got, ok)
		if n != 0 {
			t.Errorf("suppressed = %d within the first interval, want 0", n)
		}
	}
	if want := []bool{true, true, true, false, false}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Allow(3) five times = %v, want %v", got, want)
	}
	l.mu.Lock()
	l.start = l.start.Add(-LogInterval) // the interval has passed
	l.mu.Unlock()
	if ok, n := l.Allow(3); !ok || n != 2 {
		t.Errorf("first Allow of the next interval = %v, %d; want true, 2 suppressed", ok, n)
	}
}
