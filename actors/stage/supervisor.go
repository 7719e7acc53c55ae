package stage

// Protocol supervision.
//
//  1. Every protocol instance runs as a child of one ProtocolSupervisor (the
//     daemon's and each protocol host's), wrapped in a Stage that remembers
//     the batch in hand.
//  2. A panic in a protocol (a bad packet, a failed bind) suspends its
//     mailbox; batches keep queueing up to its bound and then drop by its
//     policy. The batch in hand is released and counted as crashed.
//  3. The supervisor restarts the child after the configured backoff, counted
//     as a restart, unless it failed more than max_restarts times within the
//     window: then the child is stopped for good, its queued batches are
//     dropped as stopped, and the router drops its traffic as protocol_down.
//  4. The router and the other protocols never notice.
//  5. A config reload spawns and stops single children (SpawnProtocol,
//     StopProtocol) and may replace the budget (SetBudget); the children it
//     does not name keep running untouched.

import (
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"

	"switchyard/actors/mailbox"
	"switchyard/stats"
)

// Budget is the restart budget of the protocols.
type Budget struct {
	MaxRestarts int           // restarts allowed within Within
	Within      time.Duration // the window failures are counted in
	Backoff     time.Duration // wait before each restart
}

// SpawnProtocol asks the supervisor to spawn a protocol child. Send it with
// a request (RequestFuture); the answer is a *ProtocolSpawned.
type SpawnProtocol struct {
	Name     string
	Producer actor.Producer // the protocol's own actor
	Mailbox  *mailbox.Mailbox
	Target   *Target
}

// ProtocolSpawned answers SpawnProtocol: the child's PID, or nil and why not.
type ProtocolSpawned struct {
	PID *actor.PID
	Err error
}

// StopProtocol asks the supervisor to stop a protocol child for good. Send it
// with a request; the answer, a *ProtocolStopped, comes once the supervisor
// has seen the child terminate: from then on a new child may be spawned
// under the same name.
type StopProtocol struct {
	PID *actor.PID
}

// ProtocolStopped answers StopProtocol.
type ProtocolStopped struct{}

// SetBudget replaces the supervisor's restart budget (a config reload). It
// applies to failures from then on; restart statistics already gathered
// are kept.
type SetBudget struct {
	Budget Budget
}

// ProtocolSupervisor is the parent of every protocol actor and their
// supervision strategy (protoactor uses a parent that implements
// actor.SupervisorStrategy for its children).
type ProtocolSupervisor struct {
	budget   Budget
	log      *zap.Logger
	children map[string]*Target      // by PID.Id
	stopping map[string][]*actor.PID // who asked StopProtocol, by PID.Id, answered on Terminated
}

// NewProtocolSupervisor returns the supervisor actor.
func NewProtocolSupervisor(b Budget, log *zap.Logger) *ProtocolSupervisor {
	return &ProtocolSupervisor{budget: b, log: log, children: map[string]*Target{}, stopping: map[string][]*actor.PID{}}
}

// Receive spawns and stops children, and replaces the budget, on request.
func (s *ProtocolSupervisor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *SpawnProtocol:
		st := m.Target.Stats
		pid, err := ctx.SpawnNamed(Props(m.Producer, m.Mailbox, st), "protocol/"+m.Name)
		if err != nil {
			s.log.Error("spawn protocol", zap.String("protocol", m.Name), zap.Error(err))
			ctx.Respond(&ProtocolSpawned{Err: fmt.Errorf("spawn protocol %q: %w", m.Name, err)})
			return
		}
		s.children[pid.Id] = m.Target
		st.SetState(stats.Running)
		ctx.Respond(&ProtocolSpawned{PID: pid})
	case *StopProtocol:
		// The answer comes when this actor has seen the child's Terminated,
		// not when a stop future completes: protoactor forgets the child
		// only then, and a successor spawned under the same name before that
		// would be forgotten in its place (and never stopped).
		delete(s.children, m.PID.Id)
		if !hasChild(ctx, m.PID) {
			ctx.Respond(&ProtocolStopped{}) // already gone (stopped after its restart budget)
			return
		}
		if who := ctx.Sender(); who != nil {
			s.stopping[m.PID.Id] = append(s.stopping[m.PID.Id], who)
		}
		ctx.Stop(m.PID)
	case *actor.Terminated:
		for _, who := range s.stopping[m.Who.Id] {
			ctx.Send(who, &ProtocolStopped{})
		}
		delete(s.stopping, m.Who.Id)
	case *restartChild:
		sup, ok := ctx.(actor.Supervisor)
		if !ok || s.children[m.pid.Id] != m.target {
			return // stopped by a reload (or Stop) during its backoff
		}
		sup.RestartChildren(m.pid)
		m.target.Stats.SetState(stats.Running)
	case *SetBudget:
		// HandleFailure runs in this actor's turn too (protoactor invokes
		// it while handling the child's failure message), so no lock.
		s.budget = m.Budget
		s.log.Info("restart budget changed",
			zap.Int("max_restarts", m.Budget.MaxRestarts),
			zap.Duration("within", m.Budget.Within),
			zap.Duration("backoff", m.Budget.Backoff))
	}
}

func hasChild(ctx actor.Context, pid *actor.PID) bool {
	for _, c := range ctx.Children() {
		if c.Equal(pid) {
			return true
		}
	}
	return false
}

// HandleFailure implements actor.SupervisorStrategy for the children.
func (s *ProtocolSupervisor) HandleFailure(system *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, rs *actor.RestartStatistics, reason, _ any) {
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
	if s.budget.Backoff <= 0 {
		sup.RestartChildren(child)
		t.Stats.SetState(stats.Running)
		return
	}
	// After the backoff the restart comes back through this actor's
	// mailbox, so it runs in the actor's turn and can check that the child
	// is still the one that failed: a reload may have stopped it meanwhile,
	// and its successor has the same PID.
	if self, ok := sup.(actor.Context); ok {
		msg := &restartChild{pid: child, target: t}
		time.AfterFunc(s.budget.Backoff, func() { system.Root.Send(self.Self(), msg) })
		return
	}
	time.AfterFunc(s.budget.Backoff, func() {
		sup.RestartChildren(child)
		t.Stats.SetState(stats.Running)
	})
}

// restartChild is the supervisor's own message: restart pid after its
// backoff, if it is still target's instance.
type restartChild struct {
	pid    *actor.PID
	target *Target
}
