package remote

// The shared-memory link, daemon side: the proxy of a protocol instance
// that runs on a protocol host of this machine (hosts[].transport: shm).
// Control (OPEN, stats, supervision) stays on protoactor remote; batches
// cross through the instance's region (package shm).
//
//  1. The router sends the proxy batches (ownership passes). With a region
//     up, Send copies the packets into the region's TX slots — one copy —
//     and publishes them with one index store; the batch is released.
//  2. When the host holds every TX slot the rest of the batch waits in a
//     staging queue (at most StagedBatches), handed over as slots come
//     back. When that is full the mailbox's policy picks the victim:
//     drop_newest the new batch, drop_oldest the oldest staged one's unsent
//     packets. Counted remote_window either way.
//  3. The host link hands the proxy each new region once the host opened
//     the instance (RegionUp). A reader goroutine waits on the region's
//     doorbell: packets from the host are copied out of its slots into the
//     daemon's pool (before anything reads them) and go to the injector;
//     slots coming back flush what is staged.
//  4. The host completes a packet only when its protocol is done with it
//     (sent, or dropped and counted there). When the host dies — its
//     doorbell end closes at once, even on kill -9 — every packet handed
//     over and not completed is counted host_lost on <name>.host, and every
//     packet it published that the daemon never read host_lost on
//     <name>.in. The counts are exact: <name>.host holds in = out + dropped
//     + in flight, always.
//  5. A host that breaks the protocol (a bad descriptor, ring index or
//     doorbell flood) is counted malformed on remote, and its link kills
//     it; the restarted host gets a fresh region. So is a host that holds
//     packets and completes none for StuckTimeout (stopped or wedged).

import (
	"errors"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"

	"switchyard/actors/mailbox"
	"switchyard/actors/remote/shm"
	"switchyard/packet"
	"switchyard/stats"
)

// SHMSpec configures a shared-memory link.
type SHMSpec struct {
	Name     string
	Stats    *stats.Counters // the proxy: Out = handed to the host; its drops (its mailbox counts In)
	Host     *stats.Counters // <name>.host: In = handed, Out = completed by the host, drops host_lost
	In       *stats.Counters // <name>.in: from the host to the injector
	Bad      *stats.Counters // remote: what a host did wrong
	Injector *actor.PID
	Pool     *packet.Pool
	Policy   mailbox.Policy
	Log      *zap.Logger
	// OnStarted and OnStopping run in the actor's turn (attach to and
	// detach from the host link).
	OnStarted  func(ctx actor.Context)
	OnStopping func(ctx actor.Context)
}

// RegionUp hands a link the region of the host incarnation that opened its
// instance (ownership passes). Link is the host link, told of violations.
type RegionUp struct {
	Region *shm.Daemon
	Link   *actor.PID
}

// HostViolation tells a host link that its host broke the shared-memory
// protocol: kill it.
type HostViolation struct {
	Name string
	Err  error
}

type (
	// regionEnded: the reader goroutine of region stopped (the host died,
	// a violation, or Close).
	regionEnded struct {
		region *shm.Daemon
		err    error
	}
	// slotsBack: the host completed slots after a send ran short.
	slotsBack struct{ region *shm.Daemon }
	// stuckCheck: is the host of region still completing? completed is
	// TXCompleted when it last moved, at since.
	stuckCheck struct {
		region    *shm.Daemon
		completed uint64
		since     time.Time
	}
)

type staged struct {
	b    *packet.Batch
	next int // the first packet not yet handed over
}

type shmLink struct {
	spec      SHMSpec
	region    *shm.Daemon
	link      *actor.PID
	reader    sync.WaitGroup
	staged    []staged
	completed uint64 // TXCompleted of region already counted out on Host
	noBufs    stats.LogLimiter
	sendErrs  stats.LogLimiter
}

// NewSHMLink returns the producer of a shared-memory link actor.
func NewSHMLink(spec SHMSpec) actor.Producer {
	return func() actor.Actor { return &shmLink{spec: spec} }
}

func (l *shmLink) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *packet.Batch:
		l.send(m)
	case *slotsBack:
		if m.region == l.region {
			l.flush()
		}
	case *RegionUp:
		l.end(ctx, nil) // a region from an earlier incarnation ends first
		l.region, l.link, l.completed = m.Region, m.Link, 0
		l.reader.Add(1)
		go l.read(ctx.ActorSystem().Root, ctx.Self(), m.Region)
		l.checkLater(ctx, &stuckCheck{region: m.Region, since: time.Now()})
	case *stuckCheck:
		if m.region != l.region {
			return
		}
		// Completions are reaped as slots are needed: while nothing is sent
		// the host's last ones wait on the ring. Reap them first, or an
		// idle tunnel's last batch looks held forever (make soak found a
		// host killed as stuck when its load stopped).
		if _, err := m.region.Reap(); err != nil {
			return // the region failed: its reader ends it
		}
		l.countCompleted() // keeps <name>.host current while nothing is sent
		c := m.region.Counts()
		if c.TXInFlight == 0 || c.TXCompleted != m.completed {
			l.checkLater(ctx, &stuckCheck{region: m.region, completed: c.TXCompleted, since: time.Now()})
			return
		}
		if time.Since(m.since) < StuckTimeout {
			l.checkLater(ctx, m)
			return
		}
		// Alive (its doorbell end is open) but completing nothing while it
		// holds packets: stopped (SIGSTOP), wedged or hostile. Its link
		// kills it; what it held is counted host_lost when the region ends.
		l.spec.Log.Warn("protocol host stuck: holding packets and completing none; killing it",
			zap.String("protocol", l.spec.Name), zap.Int("in_flight", c.TXInFlight), zap.Duration("for", time.Since(m.since)))
		if l.link != nil {
			ctx.Send(l.link, &HostViolation{Name: l.spec.Name, Err: errStuck})
		}
	case *regionEnded:
		if m.region == l.region {
			l.end(ctx, m.err)
		}
	case *PeerDown:
		l.end(ctx, nil)
	case *actor.Started:
		if l.spec.OnStarted != nil {
			l.spec.OnStarted(ctx)
		}
	case *actor.Stopping, *actor.Restarting:
		if l.spec.OnStopping != nil {
			l.spec.OnStopping(ctx)
		}
		l.end(ctx, nil)
	}
}

var errStuck = errors.New("stuck: completed nothing while holding packets")

// checkLater sends m to the actor after StuckCheckInterval.
func (l *shmLink) checkLater(ctx actor.Context, m *stuckCheck) {
	self, root := ctx.Self(), ctx.ActorSystem().Root
	time.AfterFunc(StuckCheckInterval, func() { root.Send(self, m) })
}

// send takes ownership of b: it hands its packets to the host, stages it,
// or drops them.
func (l *shmLink) send(b *packet.Batch) {
	if l.region == nil {
		l.spec.Stats.Drop(stats.HostDown, b.Len())
		b.Release()
		return
	}
	if len(l.staged) > 0 {
		l.flush() // older batches first
	}
	if len(l.staged) > 0 {
		l.stage(b, 0)
		return
	}
	if next := l.handOver(b, 0); next < b.Len() {
		l.stage(b, next)
		return
	}
	b.Release()
}

// handOver borrows b: it hands packets from..b.Len() to the host and
// returns the first one it could not place (b.Len(): all placed). A dead
// or reclaimed region drops the rest as host_down.
func (l *shmLink) handOver(b *packet.Batch, from int) int {
	for from < b.Len() {
		next, err := l.region.Send(b, from)
		if n := next - from; n > 0 {
			bytes := packet.PayloadBytes(b.Bufs[from:next])
			l.spec.Stats.Out(n, bytes)
			l.spec.Host.In(n, bytes)
		}
		l.countCompleted()
		switch {
		case err == nil:
			return next
		case errors.Is(err, shm.ErrOversized):
			l.spec.Stats.Drop(stats.Oversized, 1)
			from = next + 1
		default:
			// The region is over (the host died, or a violation its reader
			// reports): the rest cannot cross.
			l.spec.Stats.Drop(stats.HostDown, b.Len()-next)
			l.sendErrs.Event(l.spec.Log, "shm send failed; dropping as host_down", l.spec.Name, b.Len()-next, err)
			return b.Len()
		}
	}
	return from
}

// stage keeps b (ownership) to hand over from next once slots come back.
// The staging queue is the tail of the mailbox: when it is full the policy
// picks the victim — drop_newest the rest of b, drop_oldest the oldest
// staged batch's unsent packets.
func (l *shmLink) stage(b *packet.Batch, next int) {
	if len(l.staged) == StagedBatches && l.spec.Policy != mailbox.DropOldest {
		l.spec.Stats.Drop(stats.RemoteWindow, b.Len()-next)
		b.Release()
		return
	}
	if len(l.staged) == StagedBatches {
		old := l.staged[0]
		l.spec.Stats.Drop(stats.RemoteWindow, old.b.Len()-old.next)
		old.b.Release()
		l.staged = append(l.staged[:0], l.staged[1:]...)
	}
	l.staged = append(l.staged, staged{b, next})
}

// flush hands staged batches over, oldest first, while slots last.
func (l *shmLink) flush() {
	for len(l.staged) > 0 && l.region != nil {
		s := &l.staged[0]
		s.next = l.handOver(s.b, s.next)
		if s.next < s.b.Len() {
			return
		}
		s.b.Release()
		l.staged = append(l.staged[:0], l.staged[1:]...)
	}
	l.countCompleted()
}

// countCompleted counts out on Host what the host completed since the last
// call.
func (l *shmLink) countCompleted() {
	if l.region == nil {
		return
	}
	c := l.region.Counts().TXCompleted
	if d := c - l.completed; d > 0 {
		l.spec.Host.Out(int(d), 0)
		l.completed = c
	}
}

// read runs on its own goroutine for one region: it delivers what the host
// sends and reports slots coming back, until the region ends.
func (l *shmLink) read(root *actor.RootContext, self *actor.PID, d *shm.Daemon) {
	defer l.reader.Done()
	for {
		ev, err := d.Wait()
		if err == nil && ev&shm.EventReceive != 0 {
			err = l.drain(root, d)
		}
		if err != nil {
			if errors.Is(err, shm.ErrPeerGone) {
				err = l.drain(root, d) // what it published before it died
				if err == nil {
					err = shm.ErrPeerGone
				}
			}
			root.Send(self, &regionEnded{region: d, err: err})
			return
		}
		if ev&shm.EventSlots != 0 {
			root.Send(self, &slotsBack{region: d})
		}
	}
}

// drain receives batches from d until its RX ring is empty and sends them
// to the injector (ownership passes).
func (l *shmLink) drain(root *actor.RootContext, d *shm.Daemon) error {
	for {
		b := l.spec.Pool.GetBatch()
		n, err := d.Receive(b)
		if n > 0 {
			bytes := b.Bytes()
			l.spec.In.In(n, bytes)
			l.spec.In.Out(n, bytes)
			root.Send(l.spec.Injector, b)
		} else {
			b.Release()
		}
		switch {
		case errors.Is(err, shm.ErrNoBuffers):
			// The packets wait on the ring; the host, short of fill slots,
			// drops by its own policy. Try again shortly.
			l.noBufs.Event(l.spec.Log, "shm receive: buffer pool exhausted; the host's packets wait", l.spec.Name, 1, nil)
			time.Sleep(NoBuffersPause)
		case err != nil:
			return err
		case n == 0:
			return nil
		}
	}
}

// end finishes the current region: the reader stops, what the host still
// held is counted host_lost, a violation is counted and reported to the
// host link, and staged batches drop as host_down.
func (l *shmLink) end(ctx actor.Context, why error) {
	d := l.region
	if d == nil {
		l.dropStaged()
		return
	}
	l.region = nil
	// Deliver what the host published before it died, then take every
	// slot back.
	if why == nil || errors.Is(why, shm.ErrPeerGone) {
		_ = l.drain(ctx.ActorSystem().Root, d)
	}
	before := d.Counts()
	lost := d.Reclaim()
	if done := before.TXCompleted - l.completed; done > 0 {
		l.spec.Host.Out(int(done), 0)
	}
	l.spec.Host.Drop(stats.HostLost, lost.TXPackets)
	if lost.RXUnread > 0 {
		l.spec.In.In(lost.RXUnread, 0)
		l.spec.In.Drop(stats.HostLost, lost.RXUnread)
	}
	_ = d.Close()
	l.reader.Wait()
	if errors.Is(why, shm.ErrMalformed) {
		l.spec.Bad.Drop(stats.Malformed, 1)
		l.spec.Log.Warn("protocol host broke the shared-memory protocol: killing it", zap.String("protocol", l.spec.Name), zap.Error(why))
		if l.link != nil {
			ctx.Send(l.link, &HostViolation{Name: l.spec.Name, Err: why})
		}
	}
	if lost.TXPackets > 0 || lost.RXUnread > 0 {
		l.spec.Log.Warn("protocol host gone with packets in its hands: counted host_lost",
			zap.String("protocol", l.spec.Name), zap.Int("to_host", lost.TXPackets), zap.Int("from_host", lost.RXUnread))
	}
	l.dropStaged()
}

func (l *shmLink) dropStaged() {
	for _, s := range l.staged {
		l.spec.Stats.Drop(stats.HostDown, s.b.Len()-s.next)
		s.b.Release()
	}
	l.staged = l.staged[:0]
}
