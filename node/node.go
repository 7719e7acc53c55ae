// Package node assembles a Switchyard node from its config: the TUN device
// (addresses and kernel routes through netlink), the buffer pool, the actor
// system, and the data-path actors — capture → router → protocols → network,
// and protocols → injector → TUN — each with its drop-policy mailbox.
//
// Lifecycle, in the manner of Caddy's modules: New validates everything and
// touches nothing; Start creates the device and spawns the actors; Reload
// (reload.go) validates a new config fully and swaps in only what changed;
// Stop closes the device (ending capture), stops the actors from the source
// outwards so every queued batch is counted, and shuts the system down.
package node

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"switchyard/actors/stage"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"
	"golang.zx2c4.com/wireguard/tun"

	"switchyard/actors"
	"switchyard/actors/mailbox"
	"switchyard/actors/remote"
	"switchyard/config"
	"switchyard/packet"
	"switchyard/protocols"
	"switchyard/router"
	"switchyard/stats"
)

// Options adjust how a node is built.
type Options struct {
	// Device, if set, is used instead of creating the TUN named in the
	// config (tests and benchmarks pass an in-memory device). The node takes
	// ownership and closes it on Stop.
	Device tun.Device
	// Log receives every log line; nil means zap.NewNop().
	Log *zap.Logger
	// Level, if set, is Log's level: Reload applies a changed log.level to
	// it. Without it a log.level change is reported but not applied.
	Level *zap.AtomicLevel
	// Executable is the switchyard binary a spawned protocol host runs
	// (`Executable host --listen …`); empty means this process's own.
	Executable string
}

// Node is one running Switchyard data plane.
type Node struct {
	cfg       *config.Config // the config Start ran; only its reload-immutable parts are read after Start
	current   atomic.Pointer[config.Config]
	log       *zap.Logger
	opts      Options
	protocols []parsedProtocol

	// mu serializes Reload and Stop; live is true between a successful
	// Start and Stop. The fields below it change only under mu after Start.
	mu           sync.Mutex
	live         bool
	running      map[string]*runningProtocol // by instance name
	routerMB     *mailbox.Mailbox
	injectorMB   *mailbox.Mailbox
	ownTUN       bool           // the node created the TUN (tunctl applies to it)
	tunctl       tunControl     // the TUN's addresses and routes; nil unless ownTUN
	kernelRoutes []netip.Prefix // kernel routes the node installed into the TUN (routes.go)
	mark         uint32         // FullTunnelMark on the sockets of protocols in the daemon, or 0

	pool     *packet.Pool
	dev      tun.Device
	system   *actor.ActorSystem
	registry stats.Registry
	routing  atomic.Pointer[actors.Routing]
	started  time.Time

	capture, router, injector, supervisor *actor.PID
	captureDone                           chan struct{}
	deadLetters                           *stats.Counters

	// Out of process (only when the config has hosts): the remote
	// transport, its guard's counters, and one host link per host.
	transport   *remote.Transport
	remoteStats *stats.Counters
	hostLinks   map[string]*actor.PID
	shmDir      string // the private directory of shared-memory handover sockets
	// hostBindsLow: the spawned host was given CAP_NET_BIND_SERVICE (a
	// protocol on it listened below 1024 at start).
	hostBindsLow map[string]bool

	// Sessions the protocols reported (session.go): the queue any
	// goroutine reports into, and under mu what each session applied.
	sq          sessionQueue
	sessions    map[string]*sessionState
	sessStats   *stats.Counters
	sessionInfo atomic.Pointer[[]SessionInfo]
}

type parsedProtocol struct {
	cfg      config.Protocol
	info     protocols.Info
	settings any
}

// Check validates cfg fully, including every protocol's settings and the
// routes that would capture a protocol's own endpoint whatever the kernel's
// table holds (routes.go), without touching the system. Errors are
// config.Errors with file:line:col.
func Check(cfg *config.Config) error {
	_, err := parse(cfg)
	return err
}

func parse(cfg *config.Config) ([]parsedProtocol, error) {
	var errs config.Errors
	out := make([]parsedProtocol, 0, len(cfg.Protocols))
	ports := make([][]config.Port, len(cfg.Protocols))
	for i, p := range cfg.Protocols {
		info, ok := protocols.Lookup(p.Type)
		if !ok {
			errs = append(errs, cfg.Errorf(p.TypePos, fmt.Sprintf("protocols[%d].type", i),
				"unknown protocol type %q (known: %v)", p.Type, protocols.Names()))
			continue
		}
		settings, err := info.Parse(p.Settings)
		if err != nil {
			var ce config.Errors
			var one *config.Error
			switch {
			case errors.As(err, &ce):
				errs = append(errs, ce...)
			case errors.As(err, &one):
				errs = append(errs, one)
			default:
				errs = append(errs, cfg.Errorf(p.Settings.Pos(), p.Settings.Path(), "%v", err))
			}
			continue
		}
		out = append(out, parsedProtocol{cfg: p, info: info, settings: settings})
		if b, ok := settings.(config.PortBinder); ok {
			ports[i] = b.Ports()
		}
	}
	errs = append(errs, cfg.CheckPorts(ports)...) // two protocols on one port: run could not bind the second
	if len(errs) > 0 {
		return nil, errs
	}
	if errs := checkCaptures(cfg, out); len(errs) > 0 {
		return nil, errs
	}
	return out, nil
}

// New validates cfg and returns a node that has not started.
func New(cfg *config.Config, opts Options) (*Node, error) {
	ps, err := parse(cfg)
	if err != nil {
		return nil, err
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	n := &Node{cfg: cfg, log: opts.Log, opts: opts, protocols: ps}
	n.current.Store(cfg)
	return n, nil
}

// Pool returns the node's buffer pool (tests check it for leaks).
func (n *Node) Pool() *packet.Pool { return n.pool }

// Config returns the config the node runs: the last one Reload applied.
func (n *Node) Config() *config.Config { return n.current.Load() }

// Start opens the device and spawns the actors. On error everything that
// was made is undone.
func (n *Node) Start() (err error) {
	cfg := n.cfg
	n.pool = packet.NewPool(cfg.Batch.PoolBuffers)
	n.started = time.Now()

	n.dev = n.opts.Device
	if n.dev == nil {
		if marksSockets {
			n.mark = FullTunnelMark
		}
		install := kernelRoutePrefixes(cfg.TUN, cfg.Routes)
		if lookupRoute != nil {
			if err := kernelCaptures(install, endpointsOf(cfg, n.protocols, n.mark), lookupRoute); err != nil {
				return fmt.Errorf("refused before creating tun %q: %w", cfg.TUN.Name, err)
			}
		}
		n.dev, n.tunctl, n.kernelRoutes, err = openTUN(cfg.TUN, install, cfg.Routes)
		if err != nil {
			return err
		}
		n.ownTUN = true
	}
	defer func() {
		if err != nil {
			n.Stop()
		}
	}()

	n.system = actor.NewActorSystemWithConfig(actor.Configure(
		actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
			return slog.New(remote.LogHandler(n.log.Core()))
		}),
	))
	n.deadLetters = n.registry.Row("dead_letters", "dead_letters")
	n.system.EventStream.Subscribe(n.onDeadLetter)
	root := n.system.Root

	// Injector first: everything else sends to it.
	injStats := n.registry.Row("injector", "injector")
	injMB, err := n.mailbox(cfg.Mailbox, injStats)
	if err != nil {
		return err
	}
	n.injectorMB = injMB
	injector := actors.NewInjector(n.dev, injStats, n.log.Named("injector"))
	if n.injector, err = root.SpawnNamed(stage.Props(func() actor.Actor { return injector }, injMB, injStats), "injector"); err != nil {
		return fmt.Errorf("spawn injector: %w", err)
	}

	// Protocols, under their supervisor.
	budget := stage.Budget{
		MaxRestarts: cfg.Supervision.MaxRestarts,
		Within:      time.Duration(cfg.Supervision.Within),
		Backoff:     time.Duration(cfg.Supervision.Backoff),
	}
	n.startSessions()
	sup := stage.NewProtocolSupervisor(budget, n.log.Named("supervisor"))
	if n.supervisor, err = root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor { return sup }), "protocols"); err != nil {
		return fmt.Errorf("spawn protocol supervisor: %w", err)
	}
	// The remote transport and the host links, before any protocol that
	// runs on a host attaches to its link.
	if err := n.startRemote(); err != nil {
		return err
	}

	n.running = make(map[string]*runningProtocol, len(n.protocols))
	targets := make([]*stage.Target, 0, len(n.protocols))
	for _, p := range n.protocols {
		rp, err := n.spawnProtocol(p)
		if err != nil {
			return err
		}
		n.running[p.cfg.Name] = rp
		targets = append(targets, rp.target)
	}

	// The route table, then the router.
	routing, err := buildRouting(cfg.Routes, targets)
	if err != nil {
		return err
	}
	n.routing.Store(routing)
	rtStats := n.registry.Row("router", "router")
	rtMB, err := n.mailbox(cfg.Mailbox, rtStats)
	if err != nil {
		return err
	}
	n.routerMB = rtMB
	// ICMP errors are sourced from the rejected destination itself (the
	// zero Addr tells router.Unreachable so): the kernel discards an error
	// whose source is one of its own addresses, such as the TUN's.
	rt := actors.NewRouter(&n.routing, n.injector, n.pool, rtStats, netip.Addr{}, netip.Addr{})
	if n.router, err = root.SpawnNamed(stage.Props(func() actor.Actor { return rt }, rtMB, rtStats), "router"); err != nil {
		return fmt.Errorf("spawn router: %w", err)
	}

	// Capture last: traffic starts flowing now.
	capStats := n.registry.Row("capture", "capture")
	n.captureDone = make(chan struct{})
	capture := actors.NewCapture(n.dev, n.router, n.pool, capStats, cfg.Batch.MaxPackets, n.log.Named("capture"), n.captureDone)
	if n.capture, err = root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor { return capture }), "capture"); err != nil {
		return fmt.Errorf("spawn capture: %w", err)
	}
	n.mu.Lock()
	n.live = true
	n.mu.Unlock()
	n.sq.mu.Lock()
	n.sq.signal() // reports that came before the node was live
	n.sq.mu.Unlock()
	device := cfg.TUN.Name
	if n.tunctl != nil {
		device = n.tunctl.device() // macOS names its utun devices itself
	}
	n.log.Info("node started",
		zap.String("node", cfg.Node.Name),
		zap.String("tun", device),
		zap.Int("protocols", len(targets)),
		zap.Int("routes", len(cfg.Routes)),
		zap.Int("pool_buffers", n.pool.Limit()))
	return nil
}

func (n *Node) mailbox(mc config.Mailbox, st *stats.Counters) (*mailbox.Mailbox, error) {
	mb := mailbox.New(mc.Capacity, mc.Drop(), st)
	mb.SetCoDel(time.Duration(mc.Target), time.Duration(mc.Interval))
	return mb, nil
}

// runningProtocol is a protocol instance the node has spawned.
type runningProtocol struct {
	parsed  parsedProtocol
	target  *stage.Target
	mailbox *mailbox.Mailbox
}

func (n *Node) spawnProtocol(p parsedProtocol) (*runningProtocol, error) {
	st := n.registry.Row(p.cfg.Name, p.cfg.Type)
	var recv *stats.Counters
	if p.cfg.Host == "" { // a host counts its protocols' inbound; mirrored as <host>/<name>.recv
		recv = n.registry.Row(p.cfg.Name+".recv", p.cfg.Type)
	}
	mb, err := n.mailbox(p.cfg.Mailbox, st)
	if err != nil {
		return nil, err
	}
	inst := protocols.Instance{
		Name:     p.cfg.Name,
		Settings: p.settings,
		Env: protocols.Env{
			System:      n.system,
			Injector:    n.injector,
			Pool:        n.pool,
			ToNetwork:   st,
			FromNetwork: recv,
			MaxBatch:    n.cfg.Batch.MaxPackets,
			Log:         n.log.Named("protocol").With(zap.String("protocol", p.cfg.Name)),
			Mark:        n.mark,
		},
	}
	t := &stage.Target{Name: p.cfg.Name, Stats: st}
	// Each incarnation starts without a session and reports its own.
	producer := func() actor.Actor {
		inst := inst
		inst.Env.Session = n.sessionReporter(p.cfg.Name, n.incarnation(p.cfg.Name))
		return p.info.New(inst)
	}
	if p.cfg.Host != "" {
		remote, err := n.remoteProducer(p, st, mb)
		if err != nil {
			return nil, err
		}
		producer = func() actor.Actor {
			n.incarnation(p.cfg.Name) // the host reports the sessions (hostSession)
			return remote()
		}
	}
	res, err := n.system.Root.RequestFuture(n.supervisor, &stage.SpawnProtocol{
		Name:     p.cfg.Name,
		Producer: producer,
		Mailbox:  mb,
		Target:   t,
	}, stage.SpawnTimeout).Result()
	if err != nil {
		return nil, fmt.Errorf("spawn protocol %q: no answer within %v", p.cfg.Name, stage.SpawnTimeout)
	}
	spawned := res.(*stage.ProtocolSpawned)
	if spawned.PID == nil {
		return nil, spawned.Err
	}
	t.PID = spawned.PID
	return &runningProtocol{parsed: p, target: t, mailbox: mb}, nil
}

func buildRouting(routes []config.Route, targets []*stage.Target) (*actors.Routing, error) {
	index := make(map[string]int, len(targets))
	for i, t := range targets {
		index[t.Name] = i
	}
	table, err := buildTable(routes, index)
	if err != nil {
		return nil, err
	}
	return &actors.Routing{Table: table, Targets: targets}, nil
}

// buildTable builds the route table; index gives each protocol instance's
// position in the targets the table will be paired with.
//
// extra routes (the sessions', session.go) follow the config's.
func buildTable(routes []config.Route, index map[string]int, extra ...router.Route) (*router.Table, error) {
	rs := make([]router.Route, 0, len(routes)+len(extra))
	for _, r := range routes {
		rr := router.Route{Prefix: r.Prefix}
		switch r.Action {
		case "drop":
			rr.Action = router.Drop
		case "reject":
			rr.Action = router.Reject
		default:
			i, ok := index[r.To]
			if !ok {
				return nil, fmt.Errorf("%s: route to unknown protocol %q", r.Pos, r.To)
			}
			rr.Action, rr.Target = router.Forward, i
		}
		rs = append(rs, rr)
	}
	rs = append(rs, extra...)
	table, err := router.NewTable(rs)
	if err != nil {
		return nil, fmt.Errorf("build route table: %w", err)
	}
	return table, nil
}

// onDeadLetter releases batches sent to actors that no longer exist, so they
// are counted instead of leaking.
func (n *Node) onDeadLetter(evt any) {
	dl, ok := evt.(*actor.DeadLetterEvent)
	if !ok {
		return
	}
	if b, ok := dl.Message.(*packet.Batch); ok {
		n.deadLetters.In(b.Len(), b.Bytes())
		n.deadLetters.Drop(stats.DeadLetter, b.Len())
		b.Release()
	}
}

// Stop shuts the node down: capture ends first (the device closes), then the
// router, the protocols and the injector stop in turn, each dropping and
// counting what was still queued. It logs the final counters. A reload in
// progress finishes first; reloads after Stop are refused.
func (n *Node) Stop() {
	n.stopSessions()
	n.mu.Lock()
	defer n.mu.Unlock()
	n.live = false
	if n.sessions != nil {
		n.clearSessions() // what sessions added, before the TUN closes
	}
	if n.dev != nil {
		if err := n.dev.Close(); err != nil {
			n.log.Warn("close tun", zap.Error(err))
		}
		n.dev = nil
	}
	if n.tunctl != nil {
		// The routes went with the device; the full tunnel's rules did not.
		if err := n.tunctl.close(); err != nil {
			n.log.Warn("remove the full tunnel's policy rules", zap.Error(err))
		}
		n.tunctl = nil
	}
	if n.captureDone != nil {
		select {
		case <-n.captureDone:
		case <-time.After(stage.SpawnTimeout):
			n.log.Error("capture reader did not exit after the device closed")
		}
	}
	if n.system != nil {
		for _, pid := range []*actor.PID{n.capture, n.router, n.supervisor} {
			if pid != nil {
				_ = n.system.Root.StopFuture(pid).Wait()
			}
		}
		for _, pid := range n.hostLinks {
			_ = n.system.Root.StopFuture(pid).Wait()
		}
		if n.injector != nil {
			_ = n.system.Root.StopFuture(n.injector).Wait()
		}
		if n.transport != nil {
			n.transport.Stop()
			n.transport = nil
		}
		if n.shmDir != "" {
			_ = os.RemoveAll(n.shmDir)
			n.shmDir = ""
		}
		n.system.Shutdown()
		n.system = nil
	}
	if n.pool != nil {
		snap := n.Stats()
		for _, a := range snap.Actors {
			n.log.Info("final counters",
				zap.String("actor", a.Name),
				zap.Uint64("in_packets", a.InPackets),
				zap.Uint64("out_packets", a.OutPackets),
				zap.Uint64("dropped", a.DroppedTotal()),
				zap.Any("drops", a.Drops),
				zap.Uint64("restarts", a.Restarts))
		}
		if out := n.pool.Outstanding(); out != 0 {
			n.log.Warn("buffers still outstanding at stop", zap.Int("buffers", out))
		}
	}
	n.log.Info("node stopped", zap.String("node", n.cfg.Node.Name))
}

// Snapshot is the node's state as served by GET /stats.
type Snapshot struct {
	Node   string       `json:"node"`
	Time   time.Time    `json:"time"`
	Uptime float64      `json:"uptime_seconds"`
	Pool   PoolSnapshot `json:"pool"`
	Actors []stats.Row  `json:"actors"`
	// Sessions are what protocol instances' peers assigned, as applied.
	Sessions []SessionInfo `json:"sessions,omitempty"`
	Version  string        `json:"version,omitempty"`
}

// PoolSnapshot describes the buffer pool.
type PoolSnapshot struct {
	LimitBuffers       int `json:"limit_buffers"`
	OutstandingBuffers int `json:"outstanding_buffers"`
	BufferBytes        int `json:"buffer_bytes"`
	// AllocatedBuffers is the pool's high-water mark: buffers made and
	// kept for reuse. Allocated × BufferBytes is what the pool holds in
	// memory, however few are outstanding now.
	AllocatedBuffers int `json:"allocated_buffers"`
}

// Stats returns a snapshot of every actor's counters.
func (n *Node) Stats() Snapshot {
	s := Snapshot{
		Node:     n.cfg.Node.Name,
		Time:     time.Now(),
		Uptime:   time.Since(n.started).Seconds(),
		Actors:   n.registry.Snapshot(),
		Sessions: n.Sessions(),
	}
	if n.pool != nil {
		s.Pool = PoolSnapshot{LimitBuffers: n.pool.Limit(), OutstandingBuffers: n.pool.Outstanding(),
			BufferBytes: packet.BufferBytes, AllocatedBuffers: n.pool.Allocated()}
	}
	return s
}
