package remote

import (
	"log/slog"
	"testing"

	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestLogHandler(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	log := slog.New(LogHandler(core))
	log.Error("EndpointWriter lost connection", slog.String("address", "127.0.0.1:7100"))
	log.Error("EndpointWriter failed to connect", slog.Int("retry", 1))
	log.Error("EndpointReader failed to deserialize")
	log.Info("Started EndpointWriter. connecting")
	var got []string
	for _, e := range logs.All() {
		got = append(got, e.Level.String()+" "+e.Message)
		if e.Stack != "" {
			t.Errorf("%q carries a stack trace", e.Message)
		}
	}
	want := []string{"error EndpointReader failed to deserialize", "info Started EndpointWriter. connecting"}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("logged %q, want %q (expected disconnects at debug, below the core's level)", got, want)
	}
}
