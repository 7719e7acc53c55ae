package openvpn

// Flow of a client instance:
//
//  1. *actor.Started opens a udpbind.Bind (sockets on a free port), starts
//     one reader per socket and the manager goroutine, which runs sessions
//     (session.go) one after the other, pausing between failures.
//  2. Outbound, in Receive: the router's *packet.Batch (the actor takes
//     ownership) is sealed with the session's primary key into pooled
//     output buffers (data.go), sent with one sendmmsg, and released.
//  3. Inbound, in each reader: a batch of datagrams from the server;
//     P_DATA_V2 ones are opened in place under the key's lock (held once
//     per run of one key), pings are dropped silently, the IP packets go to
//     the injector in batches (ownership passes); control datagrams are
//     copied to the session goroutine.
//  4. When a session comes up its pushed address (and routes, with
//     accept_routes) are reported with Env.ReportSession; the zero Session
//     when it ends.
//  5. *actor.Stopping and *actor.Restarting stop the manager and close the
//     bind; the readers return their buffers.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"
	"golang.zx2c4.com/wireguard/conn"

	"switchyard/packet"
	"switchyard/protocols"
	"switchyard/protocols/udpbind"
	"switchyard/stats"
)

type clientActor struct {
	name     string
	set      Settings
	env      protocols.Env
	maxBatch int

	bind    conn.Bind
	closing atomic.Bool
	readers sync.WaitGroup
	cancel  context.CancelFunc
	mgr     sync.WaitGroup
	live    atomic.Pointer[session]

	out     [][]byte // output buffers of a send, from the pool
	scratch [][]byte

	sendLog stats.LogLimiter
	recvLog stats.LogLimiter
	poolLog stats.LogLimiter

	infoMu sync.Mutex
	info   clientInfo
}

// clientInfo is the instance's stats info.
type clientInfo struct {
	State          string `json:"state"`
	Remote         string `json:"remote"`
	Address        string `json:"address,omitempty"`
	Cipher         string `json:"cipher,omitempty"`
	PeerID         uint32 `json:"peer_id"`
	Reconnects     uint64 `json:"reconnects"`
	Renegotiations uint64 `json:"renegotiations"`
	ControlGarbage uint64 `json:"control_garbage"`
	LastError      string `json:"last_error,omitempty"`
}

func newClientActor(name string, set Settings, env protocols.Env) *clientActor {
	if env.Log == nil {
		env.Log = zap.NewNop()
	}
	mb := env.MaxBatch
	if mb <= 0 || mb > packet.MaxBatch {
		mb = packet.MaxBatch
	}
	a := &clientActor{name: name, set: set, env: env, maxBatch: mb,
		out: make([][]byte, packet.MaxBatch), scratch: make([][]byte, 0, packet.MaxBatch)}
	a.info.Remote = set.Remote.String()
	a.info.State = "stopped"
	return a
}

// Receive implements actor.Actor.
func (a *clientActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *packet.Batch:
		a.send(msg)
	case *actor.Started:
		a.start()
	case *actor.Stopping:
		a.stop()
		a.env.ToNetwork.SetInfo(nil)
	case *actor.Restarting:
		a.stop()
	}
}

func (a *clientActor) start() {
	bind := udpbind.New(udpbind.Options{Stats: a.env.FromNetwork})
	fns, _, err := bind.Open(0)
	if err != nil {
		panic(fmt.Errorf("openvpn %s: open UDP socket: %w", a.name, err))
	}
	if a.env.Mark != 0 {
		if err := bind.SetMark(a.env.Mark); err != nil {
			_ = bind.Close()
			panic(fmt.Errorf("openvpn %s: set firewall mark %#x: %w", a.name, a.env.Mark, err))
		}
	}
	a.bind = bind
	a.closing.Store(false)
	readers := make([]*reader, 0, len(fns))
	for _, fn := range fns {
		r, ok := newReader(a, fn)
		if !ok {
			for _, r := range readers {
				r.h.Release()
			}
			a.closing.Store(true)
			_ = bind.Close()
			a.bind = nil
			panic(fmt.Errorf("openvpn %s: buffer pool exhausted", a.name))
		}
		readers = append(readers, r)
	}
	for _, r := range readers {
		a.readers.Add(1)
		go r.run()
	}
	a.env.ToNetwork.SetInfo(func() any {
		a.infoMu.Lock()
		in := a.info
		a.infoMu.Unlock()
		if s := a.live.Load(); s != nil {
			in.ControlGarbage = s.ctrlGarbage.Load()
			in.Renegotiations = s.renegs.Load()
		}
		return in
	})
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	a.mgr.Add(1)
	go func() {
		defer a.mgr.Done()
		a.manage(ctx)
	}()
	a.env.Log.Info("openvpn client started", zap.String("instance", a.name), zap.Stringer("remote", a.set.Remote))
}

func (a *clientActor) stop() {
	if a.cancel != nil {
		a.cancel()
		a.mgr.Wait()
		a.cancel = nil
	}
	if a.bind != nil {
		a.closing.Store(true)
		_ = a.bind.Close()
		a.readers.Wait()
		a.bind = nil
	}
}

func (a *clientActor) setInfo(f func(*clientInfo)) {
	a.infoMu.Lock()
	f(&a.info)
	a.infoMu.Unlock()
}

// manage runs sessions until ctx ends.
func (a *clientActor) manage(ctx context.Context) {
	pause := reconnectMin
	for ctx.Err() == nil {
		ep := udpbind.NewEndpoint(a.set.Remote)
		s := newSession(a, a.sessionConfig(), ep, newTLSCrypt(&a.set.TLSCryptKey, false))
		a.live.Store(s)
		a.setInfo(func(in *clientInfo) { in.State = "connecting" })
		done := make(chan error, 1)
		go func() { done <- s.run(ctx) }()
		var err error
		select {
		case p := <-s.up:
			pause = reconnectMin
			a.sessionUp(p)
			err = <-done
		case err = <-done:
		}
		a.live.Store(nil)
		a.env.ReportSession(protocols.Session{})
		if ctx.Err() != nil {
			return
		}
		a.setInfo(func(in *clientInfo) {
			in.State, in.LastError, in.Address = "reconnecting", err.Error(), ""
			in.Reconnects++
		})
		a.sendLog.Event(a.env.Log, "openvpn session ended, reconnecting", a.name, 1, err)
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		pause = min(2*pause, reconnectMax)
	}
}

// sessionUp reports the pushed address and routes.
func (a *clientActor) sessionUp(p pushReply) {
	var sess protocols.Session
	if p.Addr.IsValid() {
		sess.Addrs = append(sess.Addrs, p.Addr)
	}
	if p.Addr6.IsValid() {
		sess.Addrs = append(sess.Addrs, p.Addr6)
	}
	if a.set.AcceptRoutes {
		sess.Routes = append([]netip.Prefix(nil), p.Routes...)
	}
	a.env.ReportSession(sess)
	a.setInfo(func(in *clientInfo) {
		in.State, in.Address, in.Cipher, in.PeerID, in.LastError = "connected", p.Addr.String(), p.Cipher, p.PeerID, ""
	})
	a.env.Log.Info("openvpn session up", zap.String("instance", a.name), zap.Stringer("address", p.Addr),
		zap.String("cipher", p.Cipher), zap.Int("routes", len(p.Routes)))
}

func (a *clientActor) sessionConfig() sessionConfig {
	return sessionConfig{tls: a.tlsConfig(), ciphers: a.set.DataCiphers, reneg: a.set.Reneg}
}

func (a *clientActor) logEvent(msg string, n int, err error) {
	a.sendLog.Event(a.env.Log, msg, a.name, n, err)
}

// sendDatagrams sends datagrams to ep (control packets, pings).
func (a *clientActor) sendDatagrams(d [][]byte, ep conn.Endpoint) error {
	b := a.bind
	if b == nil {
		return net.ErrClosed
	}
	return sendRetryGSO(b, d, ep)
}

func sendRetryGSO(b conn.Bind, d [][]byte, ep conn.Endpoint) error {
	err := b.Send(d, ep)
	var g *udpbind.GSODisabledError
	if errors.As(err, &g) {
		return g.RetryErr
	}
	return err
}

// send takes ownership of b: it seals its packets with the session's
// primary key, sends them in one call and releases the batch.
func (a *clientActor) send(b *packet.Batch) {
	defer b.Release()
	s := a.live.Load()
	var k *dataKey
	if s != nil {
		k = s.ring.primary.Load()
	}
	if k == nil || a.bind == nil {
		a.env.ToNetwork.Drop(NoSession, b.Len())
		return
	}
	in := a.scratch[:0]
	bytes, oversized := 0, 0
	for _, buf := range b.Bufs {
		if n := len(buf) - packet.Headroom; n == 0 || n > a.set.MTU {
			oversized++
			continue
		}
		in = append(in, buf)
		bytes += len(buf) - packet.Headroom
	}
	a.env.ToNetwork.Drop(stats.Malformed, oversized)
	if len(in) == 0 {
		return
	}
	out := a.out[:len(in)]
	if !a.env.Pool.GetBufs(out) {
		a.env.ToNetwork.Drop(stats.NoBuffers, len(in))
		a.poolLog.Event(a.env.Log, "openvpn send: buffer pool exhausted", a.name, len(in), nil)
		clear(in)
		return
	}
	err := k.sealBatch(in, out)
	if err == nil {
		err = sendRetryGSO(a.bind, out, s.ep)
	}
	a.env.Pool.PutBufs(out)
	clear(in)
	if err != nil {
		a.env.ToNetwork.Drop(stats.SendError, len(in))
		a.sendLog.Event(a.env.Log, "openvpn send failed", a.name, len(in), err)
		return
	}
	a.env.ToNetwork.Out(len(in), bytes)
}

// reader receives from one socket of the bind.
type reader struct {
	a     *clientActor
	recv  conn.ReceiveFunc
	h     *packet.Harvester
	bufs  [][]byte // h.Slots[i] full length: datagrams land at offset 0
	sizes []int
	eps   []conn.Endpoint
	good  []int
	emit  packet.Emit
}

func newReader(a *clientActor, fn conn.ReceiveFunc) (*reader, bool) {
	h, ok := packet.NewHarvester(a.env.Pool, packet.MaxBatch, a.maxBatch)
	if !ok {
		return nil, false
	}
	r := &reader{a: a, recv: fn, h: h, bufs: make([][]byte, packet.MaxBatch), sizes: make([]int, packet.MaxBatch),
		eps: make([]conn.Endpoint, packet.MaxBatch), good: make([]int, 0, packet.MaxBatch)}
	copy(r.bufs, h.Slots)
	r.emit = r.send
	return r, true
}

func (r *reader) run() {
	defer r.a.readers.Done()
	defer r.h.Release()
	udpbind.Loop(r.recv, r.bufs, r.sizes, r.eps, r.a.closing.Load,
		func(err error) { r.a.recvLog.Event(r.a.env.Log, "openvpn receive failed", r.a.name, 1, err) }, r.deliver)
}

// deliver handles the n datagrams just received (see the flow above).
func (r *reader) deliver(n int) {
	if n == 0 {
		return
	}
	env := &r.a.env
	s := r.a.live.Load()
	now := time.Now().UnixNano()
	good := r.good[:0]
	in, inBytes, unknown, garbage, replayed, noKey := 0, 0, 0, 0, 0, 0
	var held *dataKey
	heard := false // an authentic data packet came: once per batch for ping-restart
	for i := 0; i < n; i++ {
		size := r.sizes[i]
		d := r.bufs[i][:size]
		src, _ := udpbind.Source(r.eps[i])
		if s == nil || src != r.a.set.Remote {
			in++
			inBytes += size
			unknown++
			continue
		}
		op := d[0] >> opShift
		if op != opDataV2 {
			if !s.deliverControl(d) {
				s.ctrlGarbage.Add(1)
			}
			continue
		}
		k := s.ring.forRecv(d[0]&keyIDMask, now)
		if k == nil {
			in++
			inBytes += size
			noKey++
			continue
		}
		if k != held {
			if held != nil {
				held.recvMu.Unlock()
			}
			k.recvMu.Lock()
			held = k
		}
		m, err := k.open(r.bufs[i], size)
		switch {
		case errors.Is(err, errOld):
			in++
			inBytes += size
			replayed++
			continue
		case err != nil:
			in++
			inBytes += size
			garbage++
			continue
		}
		heard = true
		if m == len(pingMagic) && [16]byte(r.bufs[i][packet.Headroom:packet.Headroom+16]) == pingMagic {
			continue // keepalive: not a packet
		}
		in++
		inBytes += size
		if packet.Check(r.bufs[i][packet.Headroom:packet.Headroom+m]) != nil {
			garbage++
			continue
		}
		r.sizes[i] = m
		good = append(good, i)
	}
	if held != nil {
		held.recvMu.Unlock()
	}
	if heard {
		s.lastRecv.Store(now)
	}
	clear(r.eps[:n])
	r.good = good[:0]
	env.FromNetwork.In(in, inBytes)
	env.FromNetwork.Drop(UnknownPeer, unknown)
	env.FromNetwork.Drop(DecryptFailed, garbage)
	env.FromNetwork.Drop(Replayed, replayed)
	env.FromNetwork.Drop(UnknownKey, noKey)
	if len(good) == 0 {
		return
	}
	if !r.h.Move(good, r.sizes, r.emit) {
		env.FromNetwork.Drop(stats.NoBuffers, len(good))
		r.a.poolLog.Event(env.Log, "openvpn receive: buffer pool exhausted", r.a.name, len(good), nil)
		return
	}
	for _, i := range good {
		r.bufs[i] = r.h.Slots[i]
	}
}

// send takes ownership of b and passes it to the injector.
func (r *reader) send(b *packet.Batch, bytes int) {
	r.a.env.FromNetwork.Out(b.Len(), bytes)
	r.a.env.System.Root.Send(r.a.env.Injector, b)
}
