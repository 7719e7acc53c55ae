package actors

// Protocol supervision.
//
//  1. Every protocol instance runs as a child of one ProtocolSupervisor,
//     wrapped in a protocolActor that remembers the batch in hand.
//  2. A panic in a protocol (a bad packet, a failed bind) suspends its
//     mailbox; batches keep queueing up to its bound and then drop by its
//     policy. The batch in hand is released and counted as crashed.
//  3. The supervisor restarts the child after the configured backoff, counted
//     as a restart, unless it failed more than max_restarts times within the
//     window: then the child is stopped for good, its queued batches are
//     dropped as stopped, and the router drops its traffic as protocol_down.
//  4. The router and the other protocols never notice.

import (
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"

	"switchyard/actors/mailbox"
	"switchyard/actors/stats"
	"switchyard/packet"
)

// Budget is the restart budget of the protocols.
type Budget struct {
	MaxRestarts int           // restarts allowed within Within
	Within      time.Duration // the window failures are counted in
	Backoff     time.Duration // wait before each restart
}

// protocolActor wraps a protocol's actor: it releases the batch in hand if
// the protocol panics, and closes the mailbox when the protocol stops.
type protocolActor struct {
	inner    actor.Actor
	stats    *stats.Actor
	mailbox  *mailbox.Mailbox
	inflight *packet.Batch
}

func (p *protocolActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *packet.Batch:
		// The protocol takes ownership. If it panics it must not have passed
		// the batch on or released it: then the batch is still ours to drop.
		p.inflight = msg
		p.inner.Receive(ctx)
		p.inflight = nil
	case *actor.Restarting, *actor.Stopping:
		p.dropInflight()
		p.inner.Receive(ctx)
	case *actor.Stopped:
		p.inner.Receive(ctx)
		p.mailbox.Close()
	default:
		p.inner.Receive(ctx)
	}
}

func (p *protocolActor) dropInflight() {
	if p.inflight != nil {
		p.stats.Drop(stats.Crashed, p.inflight.Len())
		p.inflight.Release()
		p.inflight = nil
	}
}

// SpawnProtocol asks the supervisor to spawn a protocol child. The PID is
// sent on Reply.
type SpawnProtocol struct {
	Name     string
	Producer actor.Producer // the protocol's own actor
	Mailbox  *mailbox.Mailbox
	Target   *Target
	Reply    chan<- *actor.PID
}

// StopProtocol asks the supervisor to stop a protocol child for good.
type StopProtocol struct {
	PID  *actor.PID
	Done chan<- struct{}
}

// ProtocolSupervisor is the parent of every protocol actor and their
// supervision strategy (protoactor uses a parent that implements
// actor.SupervisorStrategy for its children).
type ProtocolSupervisor struct {
	budget   Budget
	log      *zap.Logger
	children map[string]*Target // by PID.Id
}

// NewProtocolSupervisor returns the supervisor actor.
func NewProtocolSupervisor(b Budget, log *zap.Logger) *ProtocolSupervisor {
	return &ProtocolSupervisor{budget: b, log: log, children: map[string]*Target{}}
}

// Receive spawns and stops children on request.
func (s *ProtocolSupervisor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *SpawnProtocol:
		st := m.Target.Stats
		inner := m.Producer
		props := actor.PropsFromProducer(func() actor.Actor {
			return &protocolActor{inner: inner(), stats: st, mailbox: m.Mailbox}
		}, actor.WithMailbox(m.Mailbox.Producer()))
		pid, err := ctx.SpawnNamed(props, "protocol/"+m.Name)
		if err != nil {
			s.log.Error("spawn protocol", zap.String("protocol", m.Name), zap.Error(err))
			m.Reply <- nil
			return
		}
		s.children[pid.Id] = m.Target
		st.SetState(stats.Running)
		m.Reply <- pid
	case *StopProtocol:
		delete(s.children, m.PID.Id)
		f := ctx.StopFuture(m.PID)
		go func() { _ = f.Wait(); close(m.Done) }()
	}
}

// HandleFailure implements actor.SupervisorStrategy for the children.
func (s *ProtocolSupervisor) HandleFailure(_ *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, rs *actor.RestartStatistics, reason, _ any) {
	t, ok := s.children[child.Id]
	if !ok {
		sup.StopChildren(child)
		return
	}
	rs.Fail()
	failures := rs.NumberOfFailures(s.budget.Within)
	if failures > s.budget.MaxRestarts {
		s.log.Error("protocol exceeded its restart budget: stopped; its routes now drop with reason protocol_down",
			zap.String("protocol", t.Name),
			zap.Int("failures", failures),
			zap.Int("max_restarts", s.budget.MaxRestarts),
			zap.Duration("within", s.budget.Within),
			zap.String("last_error", fmt.Sprint(reason)))
		t.SetDown(true)
		t.Stats.SetState(stats.Down)
		delete(s.children, child.Id)
		sup.StopChildren(child)
		return
	}
	t.Stats.Restarted()
	t.Stats.SetState(stats.Restarting)
	s.log.Warn("protocol failed; restarting",
		zap.String("protocol", t.Name),
		zap.String("error", fmt.Sprint(reason)),
		zap.Int("failures_in_window", failures),
		zap.Duration("backoff", s.budget.Backoff))
	restart := func() {
		sup.RestartChildren(child)
		t.Stats.SetState(stats.Running)
	}
	if s.budget.Backoff <= 0 {
		restart()
		return
	}
	time.AfterFunc(s.budget.Backoff, restart)
}
