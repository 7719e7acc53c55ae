package remote

// A protocol host: the process `switchyard host` runs. It runs protocol
// instances for the daemons that open them.
//
//  1. The daemon's host link sends OPEN to the host actor. The host makes
//     the instance: an uplink (a link actor whose peer is the daemon's
//     receiver, the protocol's injector), the protocol actor under the
//     host's protocol supervisor (restart budget from the OPEN), and a
//     receiver that decodes the daemon's batches into the host's pool and
//     hands them to the protocol's bounded mailbox. It answers OPENED with
//     the receiver's PID.
//  2. An OPEN for a name that runs replaces it (the daemon restarted), and
//     the host watches each daemon: when one goes away its instances stop,
//     so their sockets are free for the next OPEN.
//  3. Every StatsInterval the host reports its counters to each daemon.

import (
	"errors"
	"fmt"
	"net/netip"
	"switchyard/actors/stage"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"

	"switchyard/actors/mailbox"
	"switchyard/actors/remote/shm"
	"switchyard/actors/remote/wire"
	"switchyard/config"
	"switchyard/packet"
	"switchyard/protocols"
	"switchyard/stats"
)

// HostOptions configure a protocol host.
type HostOptions struct {
	Listen netip.AddrPort
	// Security authenticates the daemons that connect: a secret (from the
	// daemon that spawned the host, or a file), mutual TLS, or both. A host
	// with neither is refused: any local user could open instances on it.
	Security    Security
	PoolBuffers int
	System      *actor.ActorSystem // made by the caller (with its logger)
	Log         *zap.Logger
}

// Host is a running protocol host.
type Host struct {
	system    *actor.ActorSystem
	transport *Transport
	pool      *packet.Pool
	registry  *stats.Registry
	log       *zap.Logger
	hostPID   *actor.PID
	sup       *actor.PID
}

// StartHost starts the transport and the host actor.
func StartHost(o HostOptions) (*Host, error) {
	if o.Security.Secret == "" && !o.Security.TLS.Enabled() {
		return nil, errors.New("a protocol host needs a secret or mutual TLS: without either, any local user could open instances on it")
	}
	h := &Host{system: o.System, pool: packet.NewPool(o.PoolBuffers), registry: &stats.Registry{}, log: o.Log}
	guard := NewGuard(h.registry.Row("remote", "remote"), o.Log.Named("guard"))
	t, err := Start(o.System, o.Listen, o.Security, guard)
	if err != nil {
		return nil, err
	}
	h.transport = t
	budget := stage.Budget{MaxRestarts: 10, Within: 10 * time.Second, Backoff: 100 * time.Millisecond}
	sup := stage.NewProtocolSupervisor(budget, o.Log.Named("supervisor"))
	if h.sup, err = o.System.Root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor { return sup }), "protocols"); err != nil {
		t.Stop()
		return nil, fmt.Errorf("spawn protocol supervisor: %w", err)
	}
	ha := &hostActor{h: h, budget: budget, instances: map[string]*instance{}}
	if h.hostPID, err = o.System.Root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor { return ha }), HostActorID); err != nil {
		t.Stop()
		return nil, fmt.Errorf("spawn host actor: %w", err)
	}
	return h, nil
}

// Address is where daemons reach the host.
func (h *Host) Address() string { return h.transport.Address }

// Stop stops every instance and the transport.
func (h *Host) Stop() {
	_ = h.system.Root.StopFuture(h.hostPID).Wait()
	_ = h.system.Root.StopFuture(h.sup).Wait()
	h.transport.Stop()
}

type instance struct {
	name     string
	owner    *actor.PID // the daemon's host link
	uplink   *actor.PID
	protocol *actor.PID
	receiver *Receiver  // transport grpc
	region   *shm.Host  // transport shm
	reader   *shmReader // transport shm
}

// closeInput stops what feeds the instance from the daemon: the receiver,
// or the region (its reader ends; the slots it borrowed are the daemon's to
// reclaim).
func (in *instance) closeInput() {
	if in.receiver != nil {
		in.receiver.Close()
	}
	if in.region != nil {
		_ = in.region.Close()
		if in.reader != nil {
			in.reader.done.Wait()
		}
	}
}

type hostActor struct {
	h         *Host
	budget    stage.Budget // the supervisor's, as last set by an OPEN
	instances map[string]*instance
	ticker    *time.Ticker
	done      chan struct{}
	wg        sync.WaitGroup
}

type statsTick struct{}

func (a *hostActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.done = make(chan struct{})
		a.ticker = time.NewTicker(StatsInterval)
		self, root := ctx.Self(), ctx.ActorSystem().Root
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			for {
				select {
				case <-a.ticker.C:
					root.Send(self, &statsTick{})
				case <-a.done:
					return
				}
			}
		}()
	case *wire.Envelope:
		a.control(ctx, m)
	case *actor.Terminated:
		for name, in := range a.instances {
			if in.owner.Equal(m.Who) {
				a.h.log.Info("daemon gone: stopping its instance", zap.String("protocol", name), zap.String("daemon", m.Who.Address))
				a.stop(ctx, in, nil)
			}
		}
	case *statsTick:
		a.report(ctx)
	case *sessionReport:
		a.reportSession(ctx, m)
	case *actor.Stopping:
		a.ticker.Stop()
		close(a.done)
		a.wg.Wait()
		a.stopAll(ctx)
	}
}

func (a *hostActor) control(ctx actor.Context, env *wire.Envelope) {
	owner := ctx.Sender()
	switch env.Kind {
	case wire.Kind_OPEN:
		var o Open
		if err := decodeControl(env, &o); err != nil || o.Name == "" || owner == nil {
			a.h.registry.Row("remote", "remote").Drop(stats.Malformed, 1)
			return
		}
		if old, ok := a.instances[o.Name]; ok {
			if !old.owner.Equal(owner) {
				// Another daemon's live instance is never replaced: it
				// ends when its owner closes it or is gone (Terminated).
				a.answer(ctx, owner, o, nil, fmt.Errorf("instance %q is open for another daemon (%s)", o.Name, old.owner.Address))
				return
			}
			// A re-open by its owner replaces the instance once the old
			// one is gone.
			a.stop(ctx, old, func() { a.open(ctx, owner, o) })
			return
		}
		a.open(ctx, owner, o)
	case wire.Kind_CLOSE:
		if in, ok := a.instances[string(env.Payload)]; ok && owner != nil && in.owner.Equal(owner) {
			a.stop(ctx, in, nil)
		}
	default:
		a.h.registry.Row("remote", "remote").Drop(stats.Malformed, 1)
	}
}

// answer sends the OPENED reply for o to its owner.
func (a *hostActor) answer(ctx actor.Context, owner *actor.PID, o Open, in *instance, err error) {
	reply := Opened{Name: o.Name}
	if err != nil {
		reply.Error = err.Error()
		a.h.log.Error("open protocol instance", zap.String("protocol", o.Name), zap.Error(err))
	} else {
		if in.receiver != nil {
			reply.In = refOf(in.receiver.PID())
		}
		if in.region != nil {
			reply.Region = in.region.ID().String()
		}
		a.h.log.Info("protocol instance open", zap.String("protocol", o.Name), zap.String("type", o.Type), zap.String("daemon", owner.Address))
	}
	if e, err := encodeControl(wire.Kind_OPENED, reply); err == nil {
		ctx.Send(owner, e)
	}
}

// open starts an instance: the uplink, then the protocol under the host's
// supervisor (asked with a request: the actor does not wait in its turn),
// then the receiver; it answers the owner when done.
func (a *hostActor) open(ctx actor.Context, owner *actor.PID, o Open) {
	info, ok := protocols.Lookup(o.Type)
	if !ok {
		a.answer(ctx, owner, o, nil, fmt.Errorf("unknown protocol type %q (known: %v)", o.Type, protocols.Names()))
		return
	}
	set, err := config.NewSettings(o.ConfigFile, o.SettingsPath, o.Settings)
	if err != nil {
		a.answer(ctx, owner, o, nil, err)
		return
	}
	settings, err := info.Parse(set)
	if err != nil {
		a.answer(ctx, owner, o, nil, err)
		return
	}
	policy, err := mailbox.ParsePolicy(o.Policy)
	if err != nil {
		a.answer(ctx, owner, o, nil, err)
		return
	}
	if o.SHMSocket == "" {
		a.openWith(ctx, owner, o, info, settings, policy, nil)
		return
	}
	// Transport shm: fetch the region from the daemon's handover socket
	// off the actor's turn, then go on.
	nonce, err := shm.ParseNonce(o.SHMNonce)
	if err != nil {
		a.answer(ctx, owner, o, nil, fmt.Errorf("shm nonce: %w", err))
		return
	}
	f := actor.NewFuture(ctx.ActorSystem(), HandoverTimeout+time.Second)
	go func() {
		files, err := shm.Dial(o.SHMSocket, nonce, HandoverTimeout)
		var h *shm.Host
		if err == nil {
			h, err = shm.Attach(files) // takes ownership of the files
		}
		ctx.ActorSystem().Root.Send(f.PID(), &regionAttached{h: h, err: err})
	}()
	ctx.ReenterAfter(f, func(res any, err error) {
		at, _ := res.(*regionAttached)
		switch {
		case err != nil:
			err = fmt.Errorf("shm handover: no answer: %w", err)
		case at == nil:
			err = errors.New("shm handover: no answer")
		case at.err != nil:
			err = fmt.Errorf("shm handover: %w", at.err)
		}
		if err != nil {
			if at != nil && at.h != nil {
				_ = at.h.Close()
			}
			a.answer(ctx, owner, o, nil, err)
			return
		}
		if old, ok := a.instances[o.Name]; ok {
			if !old.owner.Equal(owner) {
				_ = at.h.Close()
				a.answer(ctx, owner, o, nil, fmt.Errorf("instance %q is open for another daemon (%s)", o.Name, old.owner.Address))
				return
			}
			// Opened again by its owner while the region was fetched: this
			// one wins.
			a.stop(ctx, old, func() { a.openWith(ctx, owner, o, info, settings, policy, at.h) })
			return
		}
		a.openWith(ctx, owner, o, info, settings, policy, at.h)
	})
}

// regionAttached is the outcome of fetching and mapping an instance's region.
type regionAttached struct {
	h   *shm.Host
	err error
}

// openWith starts the instance with its uplink on region (transport shm)
// or on protoactor remote (region nil).
func (a *hostActor) openWith(ctx actor.Context, owner *actor.PID, o Open, info protocols.Info, settings any, policy mailbox.Policy, region *shm.Host) {
	maxBatch := min(max(o.MaxBatch, 1), packet.MaxBatch)
	h, reg := a.h, a.h.registry
	bad := reg.Row("remote", "remote")
	st := reg.Row(o.Name, o.Type)
	recv := reg.Row(o.Name+".recv", o.Type)
	upStats := reg.Row(o.Name+".up", "uplink")
	inStats := reg.Row(o.Name+".in", "receiver")

	// The uplink: the protocol's injector, sending to the daemon.
	var uplink *actor.PID
	var err error
	if region != nil {
		var ok bool
		if uplink, ok = h.system.ProcessRegistry.Add(&shmUplink{h: region, st: upStats}, "uplink/"+o.Name); !ok {
			err = errDuplicate("uplink/" + o.Name)
		}
	} else {
		upMB := mailbox.New(max(o.Capacity, 1), policy, upStats)
		if o.CoDelTarget > 0 && o.CoDelInterval > 0 {
			upMB.SetCoDel(time.Duration(o.CoDelTarget), time.Duration(o.CoDelInterval))
		}
		uplink, err = ctx.SpawnNamed(stage.Props(NewLink(LinkSpec{
			ID: AckPrefix + o.Name, Stats: upStats, Bad: bad, Window: o.Window, MaxBatch: maxBatch, Policy: policy,
			Peer: o.DaemonIn.PID(),
		}), upMB, upStats), "uplink/"+o.Name)
	}
	if err != nil {
		if region != nil {
			_ = region.Close()
		}
		a.answer(ctx, owner, o, nil, fmt.Errorf("spawn uplink: %w", err))
		return
	}
	in := &instance{name: o.Name, owner: owner, uplink: uplink, region: region}
	a.instances[o.Name] = in
	ctx.Watch(owner)

	// The protocol, under the host's supervisor.
	mb := mailbox.New(max(o.Capacity, 1), policy, st)
	if o.CoDelTarget > 0 && o.CoDelInterval > 0 {
		mb.SetCoDel(time.Duration(o.CoDelTarget), time.Duration(o.CoDelInterval))
	}
	inst := protocols.Instance{Name: o.Name, Settings: settings, Env: protocols.Env{
		System: h.system, Injector: uplink, Pool: h.pool, ToNetwork: st, FromNetwork: recv,
		MaxBatch: maxBatch, Log: h.log.Named("protocol").With(zap.String("protocol", o.Name)),
	}}
	self := ctx.Self()
	inst.Env.Session = func(s protocols.Session) { h.system.Root.Send(self, &sessionReport{in: in, s: s}) }
	budget := stage.Budget{MaxRestarts: o.MaxRestarts, Within: time.Duration(o.Within), Backoff: time.Duration(o.Backoff)}
	if budget != a.budget {
		a.budget = budget
		ctx.Send(h.sup, &stage.SetBudget{Budget: budget})
	}
	f := ctx.RequestFuture(h.sup, &stage.SpawnProtocol{
		Name: o.Name, Producer: func() actor.Actor {
			inst.Env.ReportSession(protocols.Session{}) // a new incarnation has no session yet
			return info.New(inst)
		},
		Mailbox: mb, Target: &stage.Target{Name: o.Name, Stats: st},
	}, stage.SpawnTimeout)
	ctx.ReenterAfter(f, func(res any, err error) {
		if a.instances[o.Name] != in {
			return // closed or replaced meanwhile
		}
		spawned, _ := res.(*stage.ProtocolSpawned)
		switch {
		case err != nil:
			err = fmt.Errorf("spawn protocol %q: no answer within %v", o.Name, stage.SpawnTimeout)
		case spawned == nil || spawned.PID == nil:
			err = fmt.Errorf("spawn protocol %q failed", o.Name)
			if spawned != nil && spawned.Err != nil {
				err = spawned.Err
			}
		}
		if err != nil {
			a.stop(ctx, in, nil)
			a.answer(ctx, owner, o, nil, err)
			return
		}
		in.protocol = spawned.PID
		if region != nil {
			in.reader = newSHMReader(region, h.pool, in.protocol, inStats, maxBatch)
			in.reader.done.Add(1)
			go in.reader.run(ctx.ActorSystem().Root)
			a.answer(ctx, owner, o, in, nil)
			return
		}
		// The receiver last: batches flow once the daemon knows its PID.
		if in.receiver, err = NewReceiver(h.system, ReceiverPrefix+o.Name, h.pool, in.protocol, inStats, maxBatch); err != nil {
			a.stop(ctx, in, nil)
			a.answer(ctx, owner, o, nil, err)
			return
		}
		a.answer(ctx, owner, o, in, nil)
	})
}

// stop removes an instance: receiver first (no new batches), then the
// protocol (its socket closes) and the uplink, each asked with a request so
// the actor never waits in its turn; then runs, if not nil, in this
// actor's turn.
func (a *hostActor) stop(ctx actor.Context, in *instance, then func()) {
	if a.instances[in.name] == in {
		delete(a.instances, in.name)
	}
	in.closeInput()
	stopUplink := func() {
		if in.region != nil && in.uplink != nil {
			a.h.system.ProcessRegistry.Remove(in.uplink) // a Process, not an actor
			in.uplink = nil
		}
		if in.uplink == nil {
			if then != nil {
				then()
			}
			return
		}
		ctx.ReenterAfter(ctx.StopFuture(in.uplink), func(any, error) {
			if then != nil {
				then()
			}
		})
	}
	if in.protocol == nil {
		stopUplink()
		return
	}
	f := ctx.RequestFuture(a.h.sup, &stage.StopProtocol{PID: in.protocol}, stage.SpawnTimeout)
	ctx.ReenterAfter(f, func(_ any, err error) {
		if err != nil {
			a.h.log.Error("protocol instance did not stop", zap.String("protocol", in.name), zap.Error(err))
		}
		stopUplink()
	})
}

// stopAll stops every instance and waits for them: the host is shutting
// down, and a turn that ends now runs no continuation.
func (a *hostActor) stopAll(ctx actor.Context) {
	for _, in := range a.instances {
		in.closeInput()
		if in.protocol != nil {
			if _, err := ctx.RequestFuture(a.h.sup, &stage.StopProtocol{PID: in.protocol}, stage.SpawnTimeout).Result(); err != nil {
				a.h.log.Error("protocol instance did not stop", zap.String("protocol", in.name), zap.Error(err))
			}
		}
		if in.region != nil && in.uplink != nil {
			a.h.system.ProcessRegistry.Remove(in.uplink)
		} else if in.uplink != nil {
			_ = ctx.StopFuture(in.uplink).Wait()
		}
	}
	clear(a.instances)
}

// report sends the host's counters to every daemon with an instance here.
func (a *hostActor) report(ctx actor.Context) {
	owners := map[string]*actor.PID{}
	for _, in := range a.instances {
		owners[in.owner.String()] = in.owner
	}
	if len(owners) == 0 {
		return
	}
	env, err := encodeControl(wire.Kind_STATS, Report{Actors: a.h.registry.Snapshot()})
	if err != nil {
		a.h.log.Error("encode stats report", zap.Error(err))
		return
	}
	for _, o := range owners {
		ctx.Send(o, env)
	}
}
