// Package stage holds what every data-path actor shares: the Stage wrapper
// that makes ownership at a stop or a crash impossible to get wrong, the
// protocol supervisor the daemon and the protocol hosts both use, and the
// router's Target.
package stage

// A stage's life, for any data-path actor spawned with Props:
//
//  1. Each *packet.Batch delivered is the inner actor's (ownership passes);
//     the Stage remembers it while the inner Receive runs.
//  2. If the inner actor panics holding it (it neither passed it on nor
//     released it), the Stage releases it and counts it crashed when the
//     actor restarts or stops.
//  3. When the actor has stopped, the Stage closes its mailbox: whatever is
//     still queued is released and counted stopped. No actor does this
//     itself, so none can forget it.

import (
	"github.com/asynkron/protoactor-go/actor"

	"switchyard/actors/mailbox"
	"switchyard/packet"
	"switchyard/stats"
)

// Stage wraps a data-path actor; see the package comment.
type Stage struct {
	inner    actor.Actor
	stats    *stats.Counters
	mailbox  *mailbox.Mailbox
	inflight *packet.Batch
}

// Props returns the props of a data-path actor made by producer, with mb as
// its mailbox and st as the counters its drops are counted on.
func Props(producer actor.Producer, mb *mailbox.Mailbox, st *stats.Counters) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor {
		return &Stage{inner: producer(), stats: st, mailbox: mb}
	}, actor.WithMailbox(mb.Producer()))
}

// Receive implements actor.Actor.
func (s *Stage) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *packet.Batch:
		// The inner actor takes ownership. If it panics it must not have
		// passed the batch on or released it: then the batch is still ours.
		s.inflight = msg
		s.inner.Receive(ctx)
		s.inflight = nil
	case *actor.Restarting, *actor.Stopping:
		s.dropInflight()
		s.inner.Receive(ctx)
	case *actor.Stopped:
		s.inner.Receive(ctx)
		s.mailbox.Close()
	default:
		s.inner.Receive(ctx)
	}
}

func (s *Stage) dropInflight() {
	if s.inflight != nil {
		s.stats.Drop(stats.Crashed, s.inflight.Len())
		s.inflight.Release()
		s.inflight = nil
	}
}
