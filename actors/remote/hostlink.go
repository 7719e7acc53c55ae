package remote

// The host link: the daemon's actor for one protocol host.
//
//  1. A spawned host (hosts[].spawn) is started as `switchyard host` with a
//     pipe on fd 3; once it listens it writes its address there. Each
//     incarnation listens on a port of its own choosing, so nothing from an
//     earlier one (a connection, a connect retry, its termination event)
//     can reach or disturb it: one connection per incarnation. A host that
//     was not spawned is assumed to listen already, on its configured
//     address.
//  2. Each remote protocol's proxy attaches to its host link when it
//     starts. Once the host listens, the link sends one OPEN per attached
//     instance; each OPENED gives the proxy its peer (PeerUp), and traffic
//     flows. Until then the proxy drops as host_down.
//  3. A spawned host that exits (or is killed) is restarted after the
//     supervision backoff, as long as it failed at most max_restarts times
//     within the window; every restart is counted on host/<name>. While it
//     is down the proxies drop as host_down (PeerDown). Past the budget
//     the host stays down, logged.
//  4. A host that was not spawned is watched (remote Watch); when its
//     connection terminates, the proxies go down and the link sends OPENs
//     again every backoff until the host answers.
//  5. The host's counter reports (STATS) are mirrored into the daemon's
//     registry as <host>/<actor>, so stats, metrics and top show both sides.

import (
	"bufio"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/eventstream"
	"github.com/asynkron/protoactor-go/remote"
	"go.uber.org/zap"

	"switchyard/actors/remote/shm"
	"switchyard/actors/remote/wire"
	"switchyard/actors/stage"
	"switchyard/protocols"
	"switchyard/stats"
)

// HostSpec configures a host link.
type HostSpec struct {
	Name   string
	Listen string // the host's address, "127.0.0.1:7100"
	Spawn  bool
	// Command is the host process to spawn: the switchyard binary and its
	// arguments (host --listen … and TLS flags). Only with Spawn.
	Command []string
	Budget  stage.Budget
	Stats   *stats.Counters // host/<name>: restarts and state
	Mirror  *stats.Registry // where the host's reported counters go
	Log     *zap.Logger
	// SHMDir, if set, makes batches cross through shared memory: each OPEN
	// gets a fresh region, handed over on a socket in this directory (the
	// daemon's private runtime directory, mode 0700).
	SHMDir string
	// Secret is handed to a spawned host on a pipe (fd 4, --secret-fd 4):
	// the host requires it of every stream (auth.go).
	Secret string
	// Session, if set, is given each session an instance on the host
	// reports, and the zero Session when the host goes down (session.go).
	Session func(instance string, s protocols.Session)
	// Bad, if set, counts session reports that break a bound (malformed).
	Bad *stats.Counters
}

// Attach registers a remote protocol's proxy with its host link; Detach
// unregisters it (the proxy stopped) and closes the instance on the host.
type (
	Attach struct {
		Proxy *actor.PID
		Open  Open
	}
	Detach struct{ Name string }
)

type hostState int

const (
	hostDown       hostState = iota
	hostSpawning             // the process runs; it has not said it listens
	hostConnecting           // OPENs sent; waiting for every OPENED
	hostUp
)

type attached struct {
	proxy  *actor.PID
	open   Open
	opened bool
	region *shm.Daemon   // transport shm: the region of the OPEN in flight, until the proxy takes it
	ln     *shm.Listener // and its handover socket, until the host fetched it
}

// handedOver reports the end of a region's handover.
type handedOver struct {
	name   string
	region *shm.Daemon
	err    error
}

type hostLink struct {
	spec     HostSpec
	addr     string // the host's address: spec.Listen, or what this incarnation reported
	hostPID  *actor.PID
	state    hostState
	gen      int // connection generation: bumped when the host goes down or the connection is lost
	proc     int // process generation: bumped per spawned process
	cmd      *exec.Cmd
	exited   chan struct{}
	failures []time.Time
	insts    map[string]*attached
	mirrored map[string]*stats.Mirrored
	stopping bool
	sub      *eventstream.Subscription
	wg       sync.WaitGroup
	sessLog  stats.LogLimiter // bad session reports
	sessions map[string]bool  // instances that reported a session (session.go)
}

// NewHostLink returns the producer of a host link actor.
func NewHostLink(spec HostSpec) actor.Producer {
	return func() actor.Actor {
		return &hostLink{
			spec:     spec,
			addr:     spec.Listen,
			hostPID:  actor.NewPID(spec.Listen, HostActorID),
			insts:    map[string]*attached{},
			mirrored: map[string]*stats.Mirrored{},
		}
	}
}

type (
	hostReady struct {
		gen  int
		addr string // where this incarnation listens
	}
	hostExit struct {
		gen int
		err error
	}
	hostRetry       struct{ gen int }
	hostOpenTimeout struct{ gen int }
	reopenCheck     struct{ gen, proc int }
	connectionLost  struct{ addr string }
)

func (l *hostLink) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		l.spec.Stats.SetState(stats.Restarting)
		self, root := ctx.Self(), ctx.ActorSystem().Root
		l.sub = ctx.ActorSystem().EventStream.Subscribe(func(evt any) {
			if t, ok := evt.(*remote.EndpointTerminatedEvent); ok {
				root.Send(self, &connectionLost{addr: t.Address})
			}
		})
		if l.spec.Spawn {
			l.startProcess(ctx)
		} else {
			l.connect(ctx)
		}
	case *Attach:
		l.insts[m.Open.Name] = &attached{proxy: m.Proxy, open: m.Open}
		if l.state == hostConnecting || l.state == hostUp {
			l.sendOpen(ctx, l.insts[m.Open.Name])
		}
	case *Detach:
		if a, ok := l.insts[m.Name]; ok {
			a.dropRegion()
		}
		delete(l.insts, m.Name)
		if l.state == hostUp {
			ctx.Request(l.hostPID, &wire.Envelope{Kind: wire.Kind_CLOSE, Payload: []byte(m.Name)})
		}
	case *hostReady:
		if m.gen == l.proc && l.state == hostSpawning {
			l.spec.Log.Info("protocol host listening", zap.String("host", l.spec.Name), zap.String("address", m.addr), zap.Int("incarnation", l.proc))
			if old := l.addr; old != m.addr {
				// The previous incarnation's connection may linger in
				// protoactor's endpoint manager (a writer in its connect
				// retry): drop it. Its address is not this one's, so its
				// events are ignored (connectionLost) and it can never
				// reach the new process.
				ctx.ActorSystem().EventStream.Publish(&remote.EndpointTerminatedEvent{Address: old})
			}
			l.addr = m.addr
			l.hostPID = actor.NewPID(m.addr, HostActorID)
			l.connect(ctx)
		}
	case *hostExit:
		if m.gen != l.proc {
			return // an earlier process's exit
		}
		l.cmd = nil
		l.down(ctx, "protocol host exited", zap.Error(m.err))
		if !l.stopping {
			l.restart(ctx)
		}
	case *hostRetry:
		if m.gen != l.gen || l.state != hostDown || l.stopping {
			return
		}
		if l.spec.Spawn {
			l.startProcess(ctx)
		} else {
			l.connect(ctx)
		}
	case *hostOpenTimeout:
		if m.gen != l.gen || l.state == hostUp || l.stopping {
			return
		}
		if len(l.insts) == 0 {
			// A host no protocol uses: nothing to open, nothing timed out.
			if l.spec.Spawn && l.state == hostConnecting {
				l.state = hostUp
				l.spec.Stats.SetState(stats.Running)
			}
			return
		}
		l.spec.Log.Warn("protocol host did not answer", zap.String("host", l.spec.Name), zap.Duration("timeout", OpenTimeout))
		if l.spec.Spawn && l.cmd != nil {
			_ = l.cmd.Process.Kill() // its exit restarts it
			return
		}
		l.down(ctx, "protocol host unreachable")
		l.retryLater(ctx)
	case *wire.Envelope:
		l.control(ctx, m)
	case *handedOver:
		if a, ok := l.insts[m.name]; ok && a.region == m.region {
			l.spec.Log.Warn("protocol host did not fetch its shared-memory region", zap.String("host", l.spec.Name),
				zap.String("protocol", m.name), zap.Error(m.err))
		}
	case *HostViolation:
		l.spec.Log.Warn("killing and restarting the protocol host", zap.String("host", l.spec.Name),
			zap.String("protocol", m.Name), zap.String("why", m.Err.Error()))
		if l.spec.Spawn && l.cmd != nil {
			_ = l.cmd.Process.Kill() // its exit restarts it, with fresh regions
			return
		}
		l.down(ctx, "protocol host "+m.Err.Error())
		l.retryLater(ctx)
	case *actor.Terminated:
		if !l.spec.Spawn && m.Who.Equal(l.hostPID) && l.state == hostUp {
			l.down(ctx, "protocol host connection lost")
			l.retryLater(ctx)
		}
	case *connectionLost:
		if m.addr != l.addr {
			return // another peer's, or an earlier incarnation's
		}
		// protoactor dropped the connection to the host (and with it the
		// envelopes in flight). While the host runs, open the instances
		// again: each gets a new window.
		if !l.spec.Spawn && (l.state == hostUp || l.state == hostConnecting) {
			// No process to tell us whether the host lives: it is down
			// until it answers an OPEN again (as on Terminated).
			l.down(ctx, "protocol host connection lost")
			l.retryLater(ctx)
			return
		}
		if l.state == hostUp || l.state == hostConnecting {
			// Most often the process just died and its exit is on the way:
			// decide once it had time to arrive, so a kill costs one
			// restart, not a re-open of a dead host first.
			gen, proc, self, root := l.gen, l.proc, ctx.Self(), ctx.ActorSystem().Root
			time.AfterFunc(ReopenGrace, func() { root.Send(self, &reopenCheck{gen: gen, proc: proc}) })
		}
	case *reopenCheck:
		if m.gen != l.gen || m.proc != l.proc || l.cmd == nil || l.stopping || (l.state != hostUp && l.state != hostConnecting) {
			return // it exited (and restarts), or something else happened since
		}
		select {
		case <-l.exited:
			return // its exit message is queued: it restarts
		default:
		}
		l.spec.Log.Warn("connection to protocol host lost; opening its instances again", zap.String("host", l.spec.Name))
		l.gen++
		l.connect(ctx)
	case *actor.DeadLetterResponse:
		// An OPEN could not be delivered (no connection): the open timeout
		// or the process exit handles it.
	case *actor.Stopping:
		l.stopping = true
		for _, a := range l.insts {
			a.dropRegion()
		}
		ctx.ActorSystem().EventStream.Unsubscribe(l.sub)
		for name := range l.insts {
			if l.state == hostUp && !l.spec.Spawn {
				ctx.Request(l.hostPID, &wire.Envelope{Kind: wire.Kind_CLOSE, Payload: []byte(name)})
			}
		}
		l.stopProcess()
		l.wg.Wait()
	}
}

func (l *hostLink) control(ctx actor.Context, env *wire.Envelope) {
	switch env.Kind {
	case wire.Kind_OPENED:
		var o Opened
		if err := decodeControl(env, &o); err != nil {
			l.spec.Log.Warn("bad OPENED from protocol host", zap.String("host", l.spec.Name), zap.Error(err))
			return
		}
		a, ok := l.insts[o.Name]
		if !ok || l.state == hostDown {
			return
		}
		if o.Error != "" {
			l.spec.Log.Error("protocol host could not start the instance; its traffic drops as host_down",
				zap.String("host", l.spec.Name), zap.String("protocol", o.Name), zap.String("error", o.Error))
			return
		}
		if a.region != nil {
			if o.Region != a.region.ID().String() {
				l.spec.Log.Error("protocol host attached another region than the one opened; its traffic drops as host_down",
					zap.String("host", l.spec.Name), zap.String("protocol", o.Name))
				return
			}
			ctx.Send(a.proxy, &RegionUp{Region: a.region, Link: ctx.Self()}) // ownership passes
			a.region = nil
			if a.ln != nil {
				_ = a.ln.Close() // the host has it: its handover is over
				a.ln = nil
			}
		} else {
			ctx.Send(a.proxy, &PeerUp{PID: o.In.PID()})
		}
		a.opened = true
		if l.state != hostUp && l.allOpened() {
			l.state = hostUp
			l.spec.Stats.SetState(stats.Running)
			if !l.spec.Spawn {
				ctx.Watch(l.hostPID)
			}
			l.spec.Log.Info("protocol host up", zap.String("host", l.spec.Name), zap.Int("instances", len(l.insts)))
		}
	case wire.Kind_STATS:
		var r Report
		if err := decodeControl(env, &r); err != nil {
			return
		}
		for _, s := range r.Actors {
			name := l.spec.Name + "/" + s.Name
			a, ok := l.mirrored[name]
			if !ok {
				a = stats.NewMirrored(l.spec.Mirror.Row(name, s.Kind))
				l.mirrored[name] = a
			}
			a.Report(s, uint64(l.proc))
		}
	case wire.Kind_SESSION:
		l.session(env)
	}
}

func (l *hostLink) allOpened() bool {
	for _, a := range l.insts {
		if !a.opened {
			return false
		}
	}
	return true
}

// connect sends an OPEN for every attached instance.
func (l *hostLink) connect(ctx actor.Context) {
	l.state = hostConnecting
	for _, a := range l.insts {
		l.sendOpen(ctx, a)
	}
	gen, self, root := l.gen, ctx.Self(), ctx.ActorSystem().Root
	time.AfterFunc(OpenTimeout, func() { root.Send(self, &hostOpenTimeout{gen}) })
}

func (l *hostLink) sendOpen(ctx actor.Context, a *attached) {
	a.opened = false
	a.dropRegion()
	o := a.open
	if l.spec.SHMDir != "" {
		region, nonce, ln, sock, err := l.newRegion(ctx, a.open.Name)
		if err != nil {
			l.spec.Log.Error("shared-memory region", zap.String("host", l.spec.Name), zap.String("protocol", a.open.Name), zap.Error(err))
			return // the open timeout retries
		}
		a.region, a.ln = region, ln
		o.SHMSocket, o.SHMNonce = sock, nonce.String()
	}
	env, err := encodeControl(wire.Kind_OPEN, o)
	if err != nil {
		l.spec.Log.Error("encode OPEN", zap.Error(err))
		return
	}
	ctx.Request(l.hostPID, env) // the sender (this actor) gets OPENED
}

// newRegion makes a region for one OPEN of instance name and serves its
// handover on a socket of its own (so concurrent handovers never take each
// other's connections) until the host fetched it or HandoverTimeout passed.
func (l *hostLink) newRegion(ctx actor.Context, name string) (*shm.Daemon, shm.Nonce, *shm.Listener, string, error) {
	region, err := shm.New(shm.Config{TXSlots: SHMTXSlots, RXSlots: SHMRXSlots})
	if err != nil {
		return nil, shm.Nonce{}, nil, "", err
	}
	nonce, err := shm.NewNonce()
	if err != nil {
		_ = region.Close()
		return nil, shm.Nonce{}, nil, "", err
	}
	ln, err := shm.Listen(l.spec.SHMDir, "r-"+nonce.String()[:16]+".sock")
	if err != nil {
		_ = region.Close()
		return nil, shm.Nonce{}, nil, "", err
	}
	self, root := ctx.Self(), ctx.ActorSystem().Root
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		_, err := ln.HandOver(region, nonce, time.Now().Add(HandoverTimeout))
		_ = ln.Close()
		if err != nil {
			root.Send(self, &handedOver{name: name, region: region, err: err})
		}
	}()
	return region, nonce, ln, ln.Path(), nil
}

// dropRegion closes the region of an OPEN that no proxy took.
func (a *attached) dropRegion() {
	if a.ln != nil {
		_ = a.ln.Close() // ends its HandOver
		a.ln = nil
	}
	if a.region != nil {
		_ = a.region.Close()
		a.region = nil
	}
}

// down marks the host down: every proxy drops as host_down until it is up.
func (l *hostLink) down(ctx actor.Context, why string, fields ...zap.Field) {
	if l.state != hostDown {
		l.spec.Log.Warn(why+"; its protocols drop as host_down",
			append([]zap.Field{zap.String("host", l.spec.Name)}, fields...)...)
	}
	l.state = hostDown
	l.gen++
	l.endSessions()
	l.spec.Stats.SetState(stats.Restarting) // restart (below) may make it Down
	for _, a := range l.insts {
		a.opened = false
		a.dropRegion()
		ctx.Send(a.proxy, &PeerDown{})
	}
}

// restart starts the process again after the backoff, within the budget.
func (l *hostLink) restart(ctx actor.Context) {
	b := l.spec.Budget
	now := time.Now()
	kept := l.failures[:0]
	for _, t := range l.failures {
		if now.Sub(t) <= b.Within {
			kept = append(kept, t)
		}
	}
	l.failures = append(kept, now)
	if len(l.failures) > b.MaxRestarts {
		l.spec.Stats.SetState(stats.Down)
		l.spec.Log.Error("protocol host exceeded its restart budget: not restarted; its protocols drop as host_down",
			zap.String("host", l.spec.Name), zap.Int("failures", len(l.failures)),
			zap.Int("max_restarts", b.MaxRestarts), zap.Duration("within", b.Within))
		return
	}
	l.spec.Stats.Restarted()
	l.spec.Stats.SetState(stats.Restarting)
	gen, self, root := l.gen, ctx.Self(), ctx.ActorSystem().Root
	time.AfterFunc(b.Backoff, func() { root.Send(self, &hostRetry{gen}) })
}

func (l *hostLink) retryLater(ctx actor.Context) {
	gen, self, root := l.gen, ctx.Self(), ctx.ActorSystem().Root
	time.AfterFunc(max(l.spec.Budget.Backoff, 100*time.Millisecond), func() { root.Send(self, &hostRetry{gen}) })
}

// startProcess runs the host binary with a ready pipe on fd 3 and its
// secret on fd 4.
func (l *hostLink) startProcess(ctx actor.Context) {
	l.proc++
	l.state = hostSpawning
	gen, self, root := l.proc, ctx.Self(), ctx.ActorSystem().Root
	r, w, err := os.Pipe()
	if err != nil {
		l.spec.Log.Error("start protocol host", zap.Error(err))
		root.Send(self, &hostExit{gen: gen, err: err})
		return
	}
	args := append(slices.Clone(l.spec.Command[1:]), "--ready-fd", "3")
	extra := []*os.File{w}
	if l.spec.Secret != "" {
		// The secret goes on a second pipe, written before the host starts
		// (it is far below a pipe's buffer) and closed, so the host reads
		// it to EOF.
		sr, err := secretPipe(l.spec.Secret)
		if err != nil {
			r.Close()
			w.Close()
			l.spec.Log.Error("start protocol host: its secret", zap.Error(err))
			root.Send(self, &hostExit{gen: gen, err: err})
			return
		}
		defer sr.Close() // the child has its copy once started
		args = append(args, "--secret-fd", "4")
		extra = append(extra, sr)
	}
	cmd := exec.Command(l.spec.Command[0], args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.ExtraFiles = extra
	cmd.SysProcAttr = hostProcAttr() // procattr_*.go
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		l.spec.Log.Error("start protocol host", zap.String("host", l.spec.Name), zap.Error(err))
		root.Send(self, &hostExit{gen: gen, err: err})
		return
	}
	w.Close()
	l.cmd = cmd
	l.spec.Log.Info("protocol host started", zap.String("host", l.spec.Name), zap.Int("pid", cmd.Process.Pid))
	exited := make(chan struct{})
	l.exited = exited
	l.wg.Add(2)
	go func() {
		defer l.wg.Done()
		defer r.Close()
		line, err := bufio.NewReader(io.LimitReader(r, readyLineBytes)).ReadString('\n')
		if err != nil {
			return // the host died before it listened: its exit restarts it
		}
		addr := strings.TrimSpace(line)
		if _, err := netip.ParseAddrPort(addr); err != nil {
			l.spec.Log.Error("protocol host reported no address on its ready pipe", zap.String("host", l.spec.Name), zap.String("line", addr))
			return // the open timeout kills it
		}
		root.Send(self, &hostReady{gen: gen, addr: addr})
	}()
	go func() {
		defer l.wg.Done()
		err := cmd.Wait()
		close(exited)
		root.Send(self, &hostExit{gen: gen, err: err})
	}()
}

// secretPipe returns the read end of a pipe that holds secret and a line
// break, its write end closed.
func secretPipe(secret string) (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	_, err = io.WriteString(w, secret+"\n")
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// stopProcess ends a spawned host: SIGTERM, then SIGKILL after
// HostStopTimeout.
func (l *hostLink) stopProcess() {
	if l.cmd == nil {
		return
	}
	_ = l.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-l.exited:
	case <-time.After(HostStopTimeout):
		_ = l.cmd.Process.Kill()
		<-l.exited
	}
}

// HostStopTimeout (3 s) is how long a spawned host gets to stop on SIGTERM.
const HostStopTimeout = 3 * time.Second

// ReopenGrace (200 ms) is how long a host link waits, after the connection
// to a spawned host that still runs was lost, before it opens the instances
// again: a killed host's exit usually arrives within it.
const ReopenGrace = 200 * time.Millisecond

// readyLineBytes (256 bytes) bounds the line a spawned host writes on its
// ready pipe: its listen address.
const readyLineBytes = 256
