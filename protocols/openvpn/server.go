package openvpn

// Flow of a server instance:
//
//  1. *actor.Started opens a udpbind.Bind on listen and starts one reader
//     per socket.
//  2. A reader takes the peer table's read lock once per batch. A
//     datagram from a known source goes to its peer: P_DATA_V2 is opened
//     with the peer's key (its peer id must match), its inner source must be
//     the address the peer was given, and the packets go to the injector in
//     batches; control datagrams go to the peer's session goroutine. A
//     P_CONTROL_HARD_RESET_CLIENT_V2 from an unknown source that passes
//     tls-crypt starts a new peer (at most newPeersPerBatch per batch,
//     maxHandshakes at once, max_clients in all); everything else from
//     unknown sources is counted and dropped.
//  3. Each peer runs a session (session.go, server side in
//     session_server.go); when its push reply is sent the peer is routable
//     by its address; when the session ends (ping-restart, EXIT, a failed
//     handshake, the handshake window) the peer is removed and its address
//     and peer id are free again.
//  4. Outbound, in Receive: the router's batch (the actor takes ownership)
//     is split by destination into one group per peer under the read lock,
//     each group sealed with its peer's key into pooled buffers and sent
//     with one sendmmsg; the batch is released.
//  5. *actor.Stopping ends every session and closes the bind.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"
	"golang.zx2c4.com/wireguard/conn"

	"crypto/tls"

	"switchyard/packet"
	"switchyard/protocols"
	"switchyard/protocols/udpbind"
	"switchyard/stats"
)

// serverPeer is one client of a server.
type serverPeer struct {
	s     *session
	id    uint32
	src   netip.AddrPort
	addr  netip.Addr
	up    atomic.Bool
	since time.Time

	rxPackets, rxBytes, txPackets, txBytes atomic.Uint64
}

type serverActor struct {
	name     string
	set      Settings
	env      protocols.Env
	maxBatch int
	tlsCfg   *tls.Config
	gateway  netip.Addr

	bind    conn.Bind
	closing atomic.Bool
	readers sync.WaitGroup
	ctx     context.Context
	cancel  context.CancelFunc
	peersWG sync.WaitGroup
	probe   *tlsCrypt // checks the first packet of a new client

	mu          sync.RWMutex
	bySrc       map[netip.AddrPort]*serverPeer
	byAddr      map[netip.Addr]*serverPeer
	byID        []*serverPeer // index: peer id
	handshaking int
	freeAddrs   []netip.Addr

	groups []sendGroup
	out    [][]byte

	ctrlGarbage      atomic.Uint64 // control packets from unknown sources that failed tls-crypt or were not a reset
	refusedFull      atomic.Uint64 // new clients refused: max_clients or maxHandshakes reached
	handshakesFailed atomic.Uint64
	sessionsEnded    atomic.Uint64

	sendLog, recvLog, poolLog stats.LogLimiter
}

type sendGroup struct {
	p    *serverPeer
	bufs [][]byte
}

func newServerActor(name string, set Settings, env protocols.Env) *serverActor {
	if env.Log == nil {
		env.Log = zap.NewNop()
	}
	mb := env.MaxBatch
	if mb <= 0 || mb > packet.MaxBatch {
		mb = packet.MaxBatch
	}
	a := &serverActor{name: name, set: set, env: env, maxBatch: mb, out: make([][]byte, packet.MaxBatch)}
	a.gateway = set.Network.Addr().Next()
	a.tlsCfg = &tls.Config{
		Certificates: []tls.Certificate{set.Cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    set.RootCAs,
		MinVersion:   tls.VersionTLS12,
	}
	return a
}

// Receive implements actor.Actor.
func (a *serverActor) Receive(ctx actor.Context) {
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

func (a *serverActor) start() {
	a.bySrc = map[netip.AddrPort]*serverPeer{}
	a.byAddr = map[netip.Addr]*serverPeer{}
	a.byID = make([]*serverPeer, a.set.MaxClients)
	a.freeAddrs = a.freeAddrs[:0]
	for ad := a.gateway.Next(); a.set.Network.Contains(ad) && len(a.freeAddrs) < maxClients; ad = ad.Next() {
		if !a.set.Network.Contains(ad.Next()) {
			break // the broadcast address
		}
		a.freeAddrs = append(a.freeAddrs, ad)
	}
	// Hand out the lowest first: reverse, so pop takes from the end.
	for i, j := 0, len(a.freeAddrs)-1; i < j; i, j = i+1, j-1 {
		a.freeAddrs[i], a.freeAddrs[j] = a.freeAddrs[j], a.freeAddrs[i]
	}
	a.probe = newTLSCrypt(&a.set.TLSCryptKey, true)
	a.ctx, a.cancel = context.WithCancel(context.Background())

	bind := udpbind.New(udpbind.Options{Stats: a.env.FromNetwork})
	fns, _, err := bind.Open(a.set.Listen.Port())
	if err != nil {
		panic(fmt.Errorf("openvpn %s: listen %s: %w", a.name, a.set.Listen, err))
	}
	if a.env.Mark != 0 {
		if err := bind.SetMark(a.env.Mark); err != nil {
			_ = bind.Close()
			panic(fmt.Errorf("openvpn %s: set firewall mark %#x: %w", a.name, a.env.Mark, err))
		}
	}
	a.bind = bind
	a.closing.Store(false)
	var readers []*serverReader
	for _, fn := range fns {
		h, ok := packet.NewHarvester(a.env.Pool, packet.MaxBatch, a.maxBatch)
		if !ok {
			for _, r := range readers {
				r.h.Release()
			}
			a.closing.Store(true)
			_ = bind.Close()
			a.bind = nil
			panic(fmt.Errorf("openvpn %s: buffer pool exhausted", a.name))
		}
		r := &serverReader{a: a, recv: fn, h: h, bufs: make([][]byte, packet.MaxBatch), sizes: make([]int, packet.MaxBatch),
			eps: make([]conn.Endpoint, packet.MaxBatch), good: make([]int, 0, packet.MaxBatch)}
		copy(r.bufs, h.Slots)
		r.emit = r.send
		readers = append(readers, r)
	}
	for _, r := range readers {
		a.readers.Add(1)
		go r.run()
	}
	a.env.ToNetwork.SetInfo(func() any { return a.snapshot() })
	a.env.Log.Info("openvpn server listening", zap.String("instance", a.name), zap.Stringer("listen", a.set.Listen),
		zap.Stringer("network", a.set.Network))
}

func (a *serverActor) stop() {
	if a.bind == nil {
		return
	}
	a.cancel()
	a.peersWG.Wait()
	a.closing.Store(true)
	_ = a.bind.Close()
	a.readers.Wait()
	a.bind = nil
}

func (a *serverActor) logEvent(msg string, n int, err error) {
	a.sendLog.Event(a.env.Log, msg, a.name, n, err)
}

func (a *serverActor) sendDatagrams(d [][]byte, ep conn.Endpoint) error {
	b := a.bind
	if b == nil {
		return net.ErrClosed
	}
	return sendRetryGSO(b, d, ep)
}

// newPeer starts a session for a client whose first packet (a hard reset,
// borrowed) came from src. It reports why not, for the counters.
func (a *serverActor) newPeer(src netip.AddrPort, first []byte) {
	if !a.probe.authentic(first) {
		a.ctrlGarbage.Add(1)
		return
	}
	a.mu.Lock()
	if old := a.bySrc[src]; old != nil {
		// The client restarted from the same address: end the old session;
		// its retransmitted reset finds the address free. (A replay of the
		// current session's own reset does not get here: same session id.)
		a.mu.Unlock()
		if !old.s.isPeerSID(first) {
			old.s.fail(errors.New("the client started a new session"))
		}
		return
	}
	id := -1
	for i, p := range a.byID {
		if p == nil {
			id = i
			break
		}
	}
	if id < 0 || a.handshaking >= maxHandshakes || len(a.freeAddrs) == 0 {
		a.mu.Unlock()
		a.refusedFull.Add(1)
		return
	}
	addr := a.freeAddrs[len(a.freeAddrs)-1]
	a.freeAddrs = a.freeAddrs[:len(a.freeAddrs)-1]
	ep := udpbind.NewEndpoint(src)
	p := &serverPeer{id: uint32(id), src: src, addr: addr}
	cfg := sessionConfig{server: true, tls: a.tlsCfg, ciphers: a.set.DataCiphers, reneg: a.set.Reneg, reply: func(km2) (pushReply, error) {
		return pushReply{
			Addr: netip.PrefixFrom(addr, a.set.Network.Bits()), Gateway: a.gateway,
			Routes: a.set.PushRoutes, PeerID: p.id, HasPeerID: true,
			Ping: a.set.Ping, PingRestart: a.set.PingRestart,
		}, nil
	}}
	p.s = newSession(a, cfg, ep, newTLSCrypt(&a.set.TLSCryptKey, true))
	a.byID[id] = p
	a.bySrc[src] = p
	a.handshaking++
	a.mu.Unlock()

	p.s.deliverControl(first)
	a.peersWG.Add(1)
	go a.runPeer(p)
}

// isPeerSID reports whether control packet pkt names the session's peer
// session id (false before the peer's first packet).
func (s *session) isPeerSID(pkt []byte) bool {
	sid, ok := peekSID(pkt)
	cur := s.peerSID.Load()
	return ok && cur != nil && *cur == sid
}

// runPeer runs a peer's session and removes the peer when it ends.
func (a *serverActor) runPeer(p *serverPeer) {
	defer a.peersWG.Done()
	done := make(chan error, 1)
	go func() { done <- p.s.run(a.ctx) }()
	var err error
	wasUp := false
	select {
	case <-p.s.up:
		a.mu.Lock()
		a.handshaking--
		p.since = time.Now()
		a.byAddr[p.addr] = p
		p.up.Store(true)
		a.mu.Unlock()
		wasUp = true
		a.env.Log.Info("openvpn client connected", zap.String("instance", a.name), zap.Stringer("from", p.src),
			zap.Stringer("address", p.addr), zap.Uint32("peer_id", p.id))
		err = <-done
	case err = <-done:
	}
	a.mu.Lock()
	if !wasUp {
		a.handshaking--
		a.handshakesFailed.Add(1)
	} else {
		a.sessionsEnded.Add(1)
	}
	delete(a.byAddr, p.addr)
	if a.bySrc[p.src] == p {
		delete(a.bySrc, p.src)
	}
	a.byID[p.id] = nil
	a.freeAddrs = append(a.freeAddrs, p.addr)
	p.up.Store(false)
	a.mu.Unlock()
	if a.ctx.Err() == nil {
		a.recvLog.Event(a.env.Log, "openvpn client session ended", a.name, 1, err)
	}
}

// send takes ownership of b: it seals each peer's packets with that peer's
// key, sends them with one call per peer and releases the batch.
func (a *serverActor) send(b *packet.Batch) {
	defer b.Release()
	if a.bind == nil {
		a.env.ToNetwork.Drop(NoSession, b.Len())
		return
	}
	groups := a.groups[:0]
	noPeer, oversized := 0, 0
	a.mu.RLock()
	for _, buf := range b.Bufs {
		pkt := buf[packet.Headroom:]
		if len(pkt) == 0 || len(pkt) > a.set.MTU {
			oversized++
			continue
		}
		dst, ok := packet.Destination(pkt)
		p := a.byAddr[dst]
		if !ok || p == nil {
			noPeer++
			continue
		}
		g := -1
		for i := range groups {
			if groups[i].p == p {
				g = i
				break
			}
		}
		if g < 0 {
			if len(groups) == cap(groups) {
				groups = append(groups, sendGroup{bufs: make([][]byte, 0, packet.MaxBatch)})
			} else {
				groups = groups[:len(groups)+1]
			}
			g = len(groups) - 1
			groups[g].p = p
			groups[g].bufs = groups[g].bufs[:0]
		}
		groups[g].bufs = append(groups[g].bufs, buf)
	}
	a.mu.RUnlock()
	a.env.ToNetwork.Drop(NoPeer, noPeer)
	a.env.ToNetwork.Drop(stats.Malformed, oversized)
	for i := range groups {
		a.sendGroup(&groups[i])
		clear(groups[i].bufs)
		groups[i].p = nil
	}
	a.groups = groups[:0]
}

func (a *serverActor) sendGroup(g *sendGroup) {
	n := len(g.bufs)
	k := g.p.s.ring.primary.Load()
	if k == nil {
		a.env.ToNetwork.Drop(NoSession, n)
		return
	}
	out := a.out[:n]
	if !a.env.Pool.GetBufs(out) {
		a.env.ToNetwork.Drop(stats.NoBuffers, n)
		return
	}
	err := k.sealBatch(g.bufs, out)
	if err == nil {
		err = sendRetryGSO(a.bind, out, g.p.s.ep)
	}
	a.env.Pool.PutBufs(out)
	if err != nil {
		a.env.ToNetwork.Drop(stats.SendError, n)
		a.sendLog.Event(a.env.Log, "openvpn send failed", a.name, n, err)
		return
	}
	bytes := packet.PayloadBytes(g.bufs)
	g.p.txPackets.Add(uint64(n))
	g.p.txBytes.Add(uint64(bytes))
	a.env.ToNetwork.Out(n, bytes)
}

// serverReader receives from one socket of a server's bind.
type serverReader struct {
	a     *serverActor
	recv  conn.ReceiveFunc
	h     *packet.Harvester
	bufs  [][]byte
	sizes []int
	eps   []conn.Endpoint
	good  []int
	emit  packet.Emit
	fresh [newPeersPerBatch]struct {
		src netip.AddrPort
		pkt []byte
	}
}

func (r *serverReader) run() {
	defer r.a.readers.Done()
	defer r.h.Release()
	udpbind.Loop(r.recv, r.bufs, r.sizes, r.eps, r.a.closing.Load,
		func(err error) { r.a.recvLog.Event(r.a.env.Log, "openvpn receive failed", r.a.name, 1, err) }, r.deliver)
}

func (r *serverReader) deliver(n int) {
	if n == 0 {
		return
	}
	a := r.a
	env := &a.env
	now := time.Now().UnixNano()
	good := r.good[:0]
	nFresh := 0
	in, inBytes, unknown, garbage, replayed, noKey, spoofed := 0, 0, 0, 0, 0, 0, 0
	var held *dataKey
	var cur *serverPeer
	curPackets, curBytes := 0, 0
	flushPeer := func() {
		if cur != nil {
			cur.s.lastRecv.Store(now)
		}
		if cur != nil && curPackets > 0 {
			cur.rxPackets.Add(uint64(curPackets))
			cur.rxBytes.Add(uint64(curBytes))
		}
		curPackets, curBytes = 0, 0
	}
	a.mu.RLock()
	for i := 0; i < n; i++ {
		size := r.sizes[i]
		d := r.bufs[i][:size]
		src, _ := udpbind.Source(r.eps[i])
		p := a.bySrc[src]
		op := d[0] >> opShift
		if op != opDataV2 {
			switch {
			case p != nil && op == opHardResetClientV2 && !p.s.isPeerSID(d) && nFresh < newPeersPerBatch:
				// The client at this address started afresh (a new
				// session id): newPeer ends the old session once the reset
				// passes tls-crypt; the client's retransmission starts the
				// new one.
				r.fresh[nFresh].src = src
				r.fresh[nFresh].pkt = append(r.fresh[nFresh].pkt[:0], d...)
				nFresh++
			case p != nil:
				if !p.s.deliverControl(d) {
					p.s.ctrlGarbage.Add(1)
				}
			case op == opHardResetClientV2 && nFresh < newPeersPerBatch:
				r.fresh[nFresh].src = src
				r.fresh[nFresh].pkt = append(r.fresh[nFresh].pkt[:0], d...)
				nFresh++
			default:
				a.ctrlGarbage.Add(1)
			}
			continue
		}
		in++
		inBytes += size
		if p == nil || size < dataOverhead || uint32(d[1])<<16|uint32(d[2])<<8|uint32(d[3]) != p.id {
			unknown++
			continue
		}
		k := p.s.ring.forRecv(d[0]&keyIDMask, now)
		if k == nil {
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
			replayed++
			continue
		case err != nil:
			garbage++
			continue
		}
		if p != cur {
			flushPeer() // once per run of one peer: counters and ping-restart
			cur = p
		}
		pkt := r.bufs[i][packet.Headroom : packet.Headroom+m]
		if m == len(pingMagic) && [16]byte(pkt) == pingMagic {
			in--
			inBytes -= size
			continue
		}
		if packet.Check(pkt) != nil {
			garbage++
			continue
		}
		if s, ok := packet.Source(pkt); !ok || s != p.addr {
			spoofed++
			continue
		}
		curPackets++
		curBytes += m
		r.sizes[i] = m
		good = append(good, i)
	}
	a.mu.RUnlock()
	flushPeer()
	if held != nil {
		held.recvMu.Unlock()
	}
	clear(r.eps[:n])
	for i := 0; i < nFresh; i++ {
		a.newPeer(r.fresh[i].src, r.fresh[i].pkt)
	}
	r.good = good[:0]
	env.FromNetwork.In(in, inBytes)
	env.FromNetwork.Drop(UnknownPeer, unknown)
	env.FromNetwork.Drop(DecryptFailed, garbage)
	env.FromNetwork.Drop(Replayed, replayed)
	env.FromNetwork.Drop(UnknownKey, noKey)
	env.FromNetwork.Drop(SpoofedSource, spoofed)
	if len(good) == 0 {
		return
	}
	if !r.h.Move(good, r.sizes, r.emit) {
		env.FromNetwork.Drop(stats.NoBuffers, len(good))
		a.poolLog.Event(env.Log, "openvpn receive: buffer pool exhausted", a.name, len(good), nil)
		return
	}
	for _, i := range good {
		r.bufs[i] = r.h.Slots[i]
	}
}

func (r *serverReader) send(b *packet.Batch, bytes int) {
	r.a.env.FromNetwork.Out(b.Len(), bytes)
	r.a.env.System.Root.Send(r.a.env.Injector, b)
}

// ServerInfo is a server instance's stats info.
type ServerInfo struct {
	Listen           string     `json:"listen"`
	Network          string     `json:"network"`
	Peers            []PeerInfo `json:"peers"`
	Handshaking      int        `json:"handshaking"`
	ControlGarbage   uint64     `json:"control_garbage"`
	RefusedFull      uint64     `json:"refused_full"`
	HandshakesFailed uint64     `json:"handshakes_failed"`
	SessionsEnded    uint64     `json:"sessions_ended"`
}

// PeerInfo is one connected client.
type PeerInfo struct {
	PeerID         uint32    `json:"peer_id"`
	Endpoint       string    `json:"endpoint"`
	Address        string    `json:"address"`
	Cipher         string    `json:"cipher"`
	Since          time.Time `json:"since"`
	RxPackets      uint64    `json:"rx_packets"`
	RxBytes        uint64    `json:"rx_bytes"`
	TxPackets      uint64    `json:"tx_packets"`
	TxBytes        uint64    `json:"tx_bytes"`
	Renegotiations uint64    `json:"renegotiations"`
	ControlGarbage uint64    `json:"control_garbage"`
}

func (a *serverActor) snapshot() ServerInfo {
	in := ServerInfo{Listen: a.set.Listen.String(), Network: a.set.Network.String(),
		ControlGarbage: a.ctrlGarbage.Load(), RefusedFull: a.refusedFull.Load(),
		HandshakesFailed: a.handshakesFailed.Load(), SessionsEnded: a.sessionsEnded.Load()}
	a.mu.RLock()
	in.Handshaking = a.handshaking
	for _, p := range a.byAddr {
		pi := PeerInfo{PeerID: p.id, Endpoint: p.src.String(), Address: p.addr.String(), Since: p.since,
			RxPackets: p.rxPackets.Load(), RxBytes: p.rxBytes.Load(), TxPackets: p.txPackets.Load(), TxBytes: p.txBytes.Load(),
			Renegotiations: p.s.renegs.Load(), ControlGarbage: p.s.ctrlGarbage.Load()}
		if pr := p.s.pushed.Load(); pr != nil {
			pi.Cipher = pr.Cipher
		}
		in.Peers = append(in.Peers, pi)
	}
	a.mu.RUnlock()
	sort.Slice(in.Peers, func(i, j int) bool { return in.Peers[i].PeerID < in.Peers[j].PeerID })
	return in
}

// Gauges implements stats.MetricsInfo: per-peer counters for /metrics.
func (in ServerInfo) Gauges() []stats.Gauge {
	var g []stats.Gauge
	for _, p := range in.Peers {
		labels := map[string]string{"peer_id": fmt.Sprint(p.PeerID), "address": p.Address}
		g = append(g,
			stats.Gauge{Name: "openvpn_peer_rx_packets", Help: "Packets received from an openvpn client.", Labels: labels, Value: float64(p.RxPackets)},
			stats.Gauge{Name: "openvpn_peer_tx_packets", Help: "Packets sent to an openvpn client.", Labels: labels, Value: float64(p.TxPackets)},
			stats.Gauge{Name: "openvpn_peer_rx_bytes", Help: "Bytes received from an openvpn client.", Labels: labels, Value: float64(p.RxBytes)},
			stats.Gauge{Name: "openvpn_peer_tx_bytes", Help: "Bytes sent to an openvpn client.", Labels: labels, Value: float64(p.TxBytes)},
			stats.Gauge{Name: "openvpn_peer_since_seconds", Help: "When an openvpn client's session started (Unix time).", Labels: labels, Value: float64(p.Since.Unix())},
		)
	}
	g = append(g,
		stats.Gauge{Name: "openvpn_control_garbage", Help: "Control packets from unknown sources refused by tls-crypt or not a reset.", Labels: map[string]string{}, Value: float64(in.ControlGarbage)},
		stats.Gauge{Name: "openvpn_refused_full", Help: "New openvpn clients refused: max_clients or the handshake bound reached.", Labels: map[string]string{}, Value: float64(in.RefusedFull)},
		stats.Gauge{Name: "openvpn_handshakes_failed", Help: "openvpn client sessions that ended before their push reply.", Labels: map[string]string{}, Value: float64(in.HandshakesFailed)},
	)
	return g
}
