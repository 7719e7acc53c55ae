package remote

// The link actor: owns a Sender (sender.go) and gives it the messages it
// needs — batches to send, Flush when acks open the window, and the peer's
// receiver as it comes and goes. On the daemon it is a remote protocol's
// proxy (the router's target); on a host it is an instance's uplink (the
// protocol's injector).

import (
	"github.com/asynkron/protoactor-go/actor"

	"switchyard/actors/mailbox"
	"switchyard/packet"
	"switchyard/stats"
)

// LinkSpec configures a link actor.
type LinkSpec struct {
	ID       string          // AckPrefix + instance name
	Stats    *stats.Counters // Out and the link's drops (the mailbox counts In)
	Bad      *stats.Counters // acknowledgements that make no sense
	Window   int
	MaxBatch int // batch.max_packets: waiting batches coalesce up to it
	Policy   mailbox.Policy
	Peer     *actor.PID // the peer's receiver at start; nil until PeerUp
	// Host, if set, counts what the peer took and lost (Sender.CountPeer):
	// the daemon's <name>.host row.
	Host *stats.Counters
	// OnStarted and OnStopping, if set, run in the actor's turn after the
	// sender is made and before it is closed.
	OnStarted  func(ctx actor.Context, s *Sender)
	OnStopping func(ctx actor.Context)
}

type linkActor struct {
	spec LinkSpec
	s    *Sender
}

// NewLink returns the producer of a link actor.
func NewLink(spec LinkSpec) actor.Producer {
	return func() actor.Actor { return &linkActor{spec: spec} }
}

func (l *linkActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *packet.Batch:
		if l.s == nil {
			l.spec.Stats.Drop(stats.HostDown, m.Len())
			m.Release()
			return
		}
		l.s.Send(ctx, m)
	case *Flush:
		if l.s != nil {
			l.s.Flush(ctx)
		}
	case *PeerUp:
		if l.s != nil {
			l.s.SetPeer(m.PID)
			l.s.Flush(ctx)
		}
	case *PeerDown:
		if l.s != nil {
			l.s.SetPeer(nil)
		}
	case *actor.Started:
		s, err := NewSender(ctx.ActorSystem(), l.spec.ID, ctx.Self(), l.spec.Stats, l.spec.Bad, l.spec.Window, l.spec.MaxBatch, l.spec.Policy)
		if err != nil {
			// A restart raced the old ack process's removal: fail so the
			// supervisor tries again after its backoff.
			panic(err)
		}
		l.s = s
		if l.spec.Host != nil {
			s.CountPeer(l.spec.Host)
		}
		if l.spec.Peer != nil {
			s.SetPeer(l.spec.Peer)
		}
		if l.spec.OnStarted != nil {
			l.spec.OnStarted(ctx, s)
		}
	case *actor.Stopping, *actor.Restarting:
		if l.spec.OnStopping != nil {
			l.spec.OnStopping(ctx)
		}
		if l.s != nil {
			l.s.Close()
			l.s = nil
		}
	}
}
