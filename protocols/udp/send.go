package udp

// Outbound flow (router → network), all inside the actor's Receive:
//
//  1. *actor.Started opens a udpbind.Bind on listen's port, marks its
//     sockets with Env.Mark if set, and starts one reader goroutine per
//     receive function (see receive.go).
//  2. The router sends a *packet.Batch; the actor takes ownership.
//  3. Packets too large for one UDP datagram are dropped (malformed).
//  4. The rest go to the peer in one bind.Send call: sendmmsg, with UDP GSO
//     coalescing runs of same-sized packets into the first buffer's spare
//     capacity (so the slices handed over keep the pool buffers' capacity).
//  5. Stats count them out, or the send error drops them; the batch is
//     released either way.
//  6. *actor.Stopping and *actor.Restarting close the bind, which makes every
//     receive function return net.ErrClosed, and wait for the readers.

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gaissmai/bart"
	"go.uber.org/zap"
	"golang.zx2c4.com/wireguard/conn"

	"switchyard/packet"
	"switchyard/protocols"
	"switchyard/protocols/udpbind"
	"switchyard/stats"
)

// udpActor is one udp protocol instance.
type udpActor struct {
	name       string
	set        Settings
	env        protocols.Env
	maxBatch   int        // packets per inbound batch, ≤ packet.MaxBatch
	maxPayload int        // largest packet one datagram to the peer carries
	allowed    *bart.Lite // allowed_sources; nil accepts any source

	newBind func() conn.Bind // udpbind.New, or a benchmark's sink
	bind    conn.Bind
	peer    conn.Endpoint
	closing atomic.Bool // set before the bind is closed; readers exit on it
	readers sync.WaitGroup

	scratch   [][]byte // the packet slices of the batch in hand, reused
	gsoLogged bool     // "GSO disabled" was logged once

	sendLog stats.LogLimiter // send errors
	recvLog stats.LogLimiter // receive errors, shared by the readers
	poolLog stats.LogLimiter // pool exhaustion on receive, shared by the readers
}

func newUDPActor(name string, set Settings, env protocols.Env) *udpActor {
	if env.Log == nil {
		env.Log = zap.NewNop()
	}
	maxBatch := env.MaxBatch
	if maxBatch <= 0 || maxBatch > packet.MaxBatch {
		maxBatch = packet.MaxBatch
	}
	maxPayload := maxIPv4Payload
	if set.Peer.Addr().Is6() {
		maxPayload = maxIPv6Payload
	}
	var allowed *bart.Lite
	if set.AllowedSources != nil {
		allowed = new(bart.Lite)
		for _, pfx := range set.AllowedSources {
			allowed.Insert(pfx)
		}
	}
	return &udpActor{
		name:       name,
		set:        set,
		env:        env,
		maxBatch:   maxBatch,
		maxPayload: maxPayload,
		allowed:    allowed,
		scratch:    make([][]byte, 0, packet.MaxBatch),
		newBind: func() conn.Bind {
			return udpbind.New(udpbind.Options{Stats: env.FromNetwork})
		},
	}
}

// NewWithBind returns a udp protocol actor for inst (whose Settings came
// from the udp Parse) that uses newBind for its transport instead of
// udpbind.New. Benchmarks pass an in-memory sink to measure the actor
// pipeline without the kernel's share.
func NewWithBind(inst protocols.Instance, newBind func() conn.Bind) actor.Actor {
	a := newUDPActor(inst.Name, inst.Settings.(Settings), inst.Env)
	a.newBind = newBind
	return a
}

// Receive implements actor.Actor.
func (a *udpActor) Receive(ctx actor.Context) {
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

// start opens the bind and starts the readers. A failure panics, so the
// supervisor logs it, counts a restart and retries after its backoff.
func (a *udpActor) start() {
	bind := a.newBind()
	peer, err := bind.ParseEndpoint(a.set.Peer.String())
	if err != nil {
		panic(fmt.Errorf("udp %s: peer %s: %w", a.name, a.set.Peer, err))
	}
	fns, _, err := bind.Open(a.set.Listen.Port())
	if err != nil {
		panic(fmt.Errorf("udp %s: listen %s: %w", a.name, a.set.Listen, err))
	}
	if a.env.Mark != 0 {
		if err := bind.SetMark(a.env.Mark); err != nil {
			_ = bind.Close()
			panic(fmt.Errorf("udp %s: set firewall mark %#x on the sockets of %s: %w", a.name, a.env.Mark, a.set.Listen, err))
		}
	}
	a.bind, a.peer = bind, peer
	a.closing.Store(false)
	readers := make([]*reader, 0, len(fns))
	for _, fn := range fns {
		r, ok := newReader(a, fn)
		if !ok {
			for _, r := range readers {
				r.release()
			}
			a.closeBind()
			panic(fmt.Errorf("udp %s: buffer pool exhausted: cannot give %d buffers to each of %d readers",
				a.name, packet.MaxBatch, len(fns)))
		}
		readers = append(readers, r)
	}
	for _, r := range readers {
		a.readers.Add(1)
		go r.run()
	}
	sources := "any"
	if a.set.AllowedSources != nil {
		sources = fmt.Sprint(a.set.AllowedSources)
	}
	a.env.Log.Info("udp listening", zap.String("instance", a.name),
		zap.Stringer("listen", a.set.Listen), zap.Stringer("peer", a.set.Peer),
		zap.String("allowed_sources", sources))
}

// send takes ownership of b, sends its packets to the peer in one call and
// releases it.
func (a *udpActor) send(b *packet.Batch) {
	if a.bind == nil {
		// Not started (the last start failed): nothing can be sent.
		a.env.ToNetwork.Drop(stats.SendError, b.Len())
		b.Release()
		return
	}
	bufs := a.scratch[:0]
	bytes, oversized := 0, 0
	for _, buf := range b.Bufs {
		pkt := buf[packet.Headroom:]
		if len(pkt) > a.maxPayload {
			oversized++
			continue
		}
		bufs = append(bufs, pkt)
		bytes += len(pkt)
	}
	if oversized > 0 {
		a.env.ToNetwork.Drop(stats.Malformed, oversized)
	}
	if len(bufs) > 0 {
		err := a.bind.Send(bufs, a.peer)
		if err != nil {
			err = a.gsoDisabled(err)
		}
		if err != nil {
			a.env.ToNetwork.Drop(stats.SendError, len(bufs))
			a.sendLog.Event(a.env.Log, "udp send failed", a.name, len(bufs), err)
		} else {
			a.env.ToNetwork.Out(len(bufs), bytes)
		}
	}
	clear(bufs)
	a.scratch = bufs[:0]
	b.Release()
}

// gsoDisabled logs, once, that the bind turned UDP GSO off (the kernel
// refused it: no checksum offload) and resent without it; it returns the
// error of that resend. Other errors are returned as they are.
func (a *udpActor) gsoDisabled(err error) error {
	var ours *udpbind.GSODisabledError
	var std conn.ErrUDPGSODisabled
	var retry error
	switch {
	case errors.As(err, &ours):
		retry = ours.RetryErr
	case errors.As(err, &std): // a conn.StdNetBind given to NewWithBind
		retry = std.RetryErr
	default:
		return err
	}
	if !a.gsoLogged {
		a.gsoLogged = true
		a.env.Log.Warn("udp GSO disabled", zap.String("instance", a.name), zap.Error(err))
	}
	return retry
}

// stop closes the bind and waits for the readers to exit; they return their
// buffers to the pool on the way out. Calling it twice is harmless.
func (a *udpActor) stop() {
	if a.bind == nil {
		return
	}
	a.closeBind()
	a.readers.Wait()
}

func (a *udpActor) closeBind() {
	a.closing.Store(true)
	if err := a.bind.Close(); err != nil {
		a.env.Log.Warn("udp close", zap.String("instance", a.name), zap.Error(err))
	}
	a.bind = nil
}
