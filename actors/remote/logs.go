package remote

// protoactor's log, through zap: one handler for the daemon's and the
// host's actor systems.
//
// protoactor logs every turn of a lost connection at error level, with a
// stack trace from zapslog: a protocol host killed on purpose cost dozens of
// error lines with stacks. The host link already logs each state change
// once (host exited, host up, connection lost), so the endpoint writer's
// expected connection errors are demoted to debug, and no protoactor line
// carries a stack trace.

import (
	"context"
	"log/slog"
	"math"
	"strings"

	"go.uber.org/zap/exp/zapslog"
	"go.uber.org/zap/zapcore"
)

// expectedDisconnects are protoactor's messages about a peer that went away
// or cannot be reached yet: what a host's restart produces.
var expectedDisconnects = []string{
	"EndpointWriter failed to connect",
	"EndpointWriter failed to create receive stream",
	"EndpointWriter failed to receive connect response",
	"EndpointWriter failed to send connect request",
	"EndpointWriter lost connection",
	"EndpointWriter error when closing",
	"EndpointReader failed to send disconnection message",
}

// LogHandler returns the slog handler for protoactor's logger: zap's core,
// named protoactor, without stack traces, expected disconnects at debug.
func LogHandler(core zapcore.Core) slog.Handler {
	return demoter{zapslog.NewHandler(core, zapslog.WithName("protoactor"), zapslog.AddStacktraceAt(slog.Level(math.MaxInt)))}
}

type demoter struct{ slog.Handler }

func (d demoter) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn && expectedDisconnect(r.Message) {
		r.Level = slog.LevelDebug
		if !d.Handler.Enabled(ctx, r.Level) {
			return nil
		}
	}
	return d.Handler.Handle(ctx, r)
}

func (d demoter) WithAttrs(attrs []slog.Attr) slog.Handler {
	return demoter{d.Handler.WithAttrs(attrs)}
}

func (d demoter) WithGroup(name string) slog.Handler { return demoter{d.Handler.WithGroup(name)} }

func expectedDisconnect(msg string) bool {
	for _, p := range expectedDisconnects {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}
