package ipsec

// Outbound flow (router → network), inside the actor's Receive:
//
//  1. *actor.Started opens a udpbind.Bind on the NAT-T port (4500) and the
//     IKE socket on local_port (500), starts the readers (receive.go) and
//     the IKE goroutine (control.go), which initiates.
//  2. The router sends a *packet.Batch; the actor takes ownership.
//  3. Without an outbound CHILD SA (IKE not up yet, or being
//     re-established) the batch is dropped (no_sa).
//  4. Each packet is sealed in place (esp.Outbound.Seal: the ESP header
//     goes into the headroom, trailer and tag into the spare capacity);
//     one that does not fit a datagram is dropped (malformed).
//  5. The sealed packets go to the peer's port 4500 in one bind.Send call:
//     sendmmsg, with UDP GSO for runs of same-sized datagrams.
//  6. Stats count them out, or the send error drops them; the batch is
//     released either way.
//  7. *actor.Stopping and *actor.Restarting stop the IKE goroutine (which
//     deletes the IKE SA at the peer first), close the sockets and wait for
//     the readers.

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gaissmai/bart"
	"go.uber.org/zap"
	"golang.zx2c4.com/wireguard/conn"

	"switchyard/packet"
	"switchyard/protocols"
	"switchyard/protocols/ipsec/esp"
	"switchyard/protocols/udpbind"
	"switchyard/stats"
)

// inboundSAs is the set of inbound CHILD SAs the readers look SPIs up in
// (one, or two around a re-establishment). It is replaced, never changed.
type inboundSAs []*esp.Inbound

func (s inboundSAs) find(spi uint32) *esp.Inbound {
	for _, in := range s {
		if in.SPI == spi {
			return in
		}
	}
	return nil
}

// ipsecActor is one ipsec protocol instance.
type ipsecActor struct {
	name       string
	set        Settings
	env        protocols.Env
	maxBatch   int
	maxPayload int
	allowed    atomic.Pointer[bart.Lite] // the CHILD SA's remote selectors: inner sources accepted from the peer

	bind     conn.Bind
	peerNATT atomic.Pointer[udpbind.Endpoint] // remote:4500, or where a responder's peer sends from
	ctl      *controller
	ike      ikeCounters // the IKE goroutine's counters; they outlive restarts

	out     atomic.Pointer[esp.Outbound] // set by the IKE goroutine; sealed with by Receive only
	inbound atomic.Pointer[inboundSAs]   // set by the IKE goroutine; read by the readers
	lastIn  atomic.Int64                 // unix nanoseconds of the last authenticated ESP batch
	snap    atomic.Pointer[saSnapshot]   // what the IKE goroutine negotiated, for info

	closing   atomic.Bool
	readers   sync.WaitGroup
	scratch   [][]byte
	gsoLogged bool

	sendLog stats.LogLimiter
	recvLog stats.LogLimiter
	poolLog stats.LogLimiter
}

func newIPsecActor(name string, set Settings, env protocols.Env) *ipsecActor {
	if env.Log == nil {
		env.Log = zap.NewNop()
	}
	maxBatch := env.MaxBatch
	if maxBatch <= 0 || maxBatch > packet.MaxBatch {
		maxBatch = packet.MaxBatch
	}
	maxPayload := maxIPv4Payload
	if set.Remote.Is6() {
		maxPayload = maxIPv6Payload
	}
	a := &ipsecActor{name: name, set: set, env: env, maxBatch: maxBatch, maxPayload: maxPayload,
		scratch: make([][]byte, 0, packet.MaxBatch)}
	a.allowed.Store(new(bart.Lite))
	return a
}

// Receive implements actor.Actor.
func (a *ipsecActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *packet.Batch:
		a.send(msg)
	case *actor.Started:
		a.start()
	case *actor.Stopping:
		a.stop()
	case *actor.Restarting:
		a.stop()
	}
}

// start opens the sockets and starts the readers and the IKE goroutine. A
// failure panics: the supervisor counts a restart and retries.
func (a *ipsecActor) start() {
	ike500, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a.set.Local, a.set.LocalPort)))
	if err != nil {
		panic(fmt.Errorf("ipsec %s: IKE socket %s:%d: %w", a.name, a.set.Local, a.set.LocalPort, err))
	}
	bind := udpbind.New(udpbind.Options{Stats: a.env.FromNetwork})
	fns, _, err := bind.Open(a.set.NATTPort)
	if err != nil {
		_ = ike500.Close()
		panic(fmt.Errorf("ipsec %s: NAT-T port %d: %w", a.name, a.set.NATTPort, err))
	}
	if a.env.Mark != 0 {
		err := bind.SetMark(a.env.Mark)
		if err == nil {
			err = setMark(ike500, a.env.Mark)
		}
		if err != nil {
			_ = bind.Close()
			_ = ike500.Close()
			panic(fmt.Errorf("ipsec %s: set firewall mark %#x: %w", a.name, a.env.Mark, err))
		}
	}
	a.bind = bind
	a.peerNATT.Store(udpbind.NewEndpoint(netip.AddrPortFrom(a.set.Remote, a.set.RemoteNATT)))
	a.closing.Store(false)
	a.out.Store(nil)
	a.inbound.Store(nil)
	a.ctl = newController(a, ike500)
	var readers []*reader
	for _, fn := range fns {
		r, ok := newReader(a, fn)
		if !ok {
			for _, r := range readers {
				r.release()
			}
			_ = ike500.Close()
			a.closeBind()
			panic(fmt.Errorf("ipsec %s: buffer pool exhausted", a.name))
		}
		readers = append(readers, r)
	}
	for _, r := range readers {
		a.readers.Add(1)
		go r.run()
	}
	a.env.ToNetwork.SetInfo(a.info)
	a.ctl.start()
	a.env.Log.Info("ipsec started", zap.String("instance", a.name), zap.Stringer("local", a.set.Local),
		zap.Stringer("remote", a.set.Remote), zap.String("mode", a.set.Mode))
}

// send takes ownership of b: it seals its packets and sends them to the
// peer in one call, then releases it.
func (a *ipsecActor) send(b *packet.Batch) {
	out := a.out.Load()
	if a.bind == nil || out == nil {
		a.env.ToNetwork.Drop(NoSA, b.Len())
		b.Release()
		return
	}
	bufs := a.scratch[:0]
	bytes, malformed, exhausted := 0, 0, 0
	for _, buf := range b.Bufs {
		n := len(buf) - packet.Headroom
		d, err := out.Seal(buf)
		switch {
		case errors.Is(err, esp.ErrSeqWrap):
			exhausted++
		case err != nil || len(d) > a.maxPayload:
			malformed++
		default:
			bufs = append(bufs, d)
			bytes += n
		}
	}
	out.Publish(bytes)
	a.env.ToNetwork.Drop(stats.Malformed, malformed)
	a.env.ToNetwork.Drop(SeqExhausted, exhausted)
	if exhausted > 0 {
		a.ctl.poke() // rekey now
	}
	if len(bufs) > 0 {
		err := a.bind.Send(bufs, a.peerNATT.Load())
		if err != nil {
			var gso *udpbind.GSODisabledError
			if errors.As(err, &gso) {
				if !a.gsoLogged {
					a.gsoLogged = true
					a.env.Log.Warn("ipsec: UDP GSO disabled", zap.String("instance", a.name), zap.Error(err))
				}
				err = gso.RetryErr
			}
		}
		if err != nil {
			a.env.ToNetwork.Drop(stats.SendError, len(bufs))
			a.sendLog.Event(a.env.Log, "ipsec send failed", a.name, len(bufs), err)
		} else {
			a.env.ToNetwork.Out(len(bufs), bytes)
		}
	}
	clear(bufs)
	a.scratch = bufs[:0]
	b.Release()
}

// sendNATT sends one datagram to the peer's NAT-T port (IKE with the
// non-ESP marker, or a keepalive). Any goroutine may call it.
func (a *ipsecActor) sendNATT(d []byte) error {
	return a.bind.Send([][]byte{d}, a.peerNATT.Load())
}

// stop ends the IKE SA (a Delete to the peer, answered or timed out), then
// closes the sockets and waits for the readers. Calling it twice is
// harmless.
func (a *ipsecActor) stop() {
	if a.bind == nil {
		return
	}
	a.ctl.shutdown()
	a.env.ToNetwork.SetInfo(nil)
	a.closeBind()
	a.readers.Wait()
	a.out.Store(nil)
	a.inbound.Store(nil)
}

func (a *ipsecActor) closeBind() {
	a.closing.Store(true)
	if err := a.bind.Close(); err != nil {
		a.env.Log.Warn("ipsec close", zap.String("instance", a.name), zap.Error(err))
	}
	a.bind = nil
}
