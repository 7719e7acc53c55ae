package udp

import (
	"bytes"
	"encoding/binary"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"switchyard/packet"
	"switchyard/packet/packettest"
	"switchyard/protocols"
	"switchyard/protocols/udpbind"
	"switchyard/stats"
)

// ipv4Packet returns a valid IPv4 packet of size bytes (≥ 24) whose payload
// starts with seq, so tests can check content and order.
func ipv4Packet(seq, size int) []byte {
	p := make([]byte, size)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:4], uint16(size))
	p[8], p[9] = 64, packet.ProtoUDP
	copy(p[12:16], []byte{10, 91, 0, 2})
	copy(p[16:20], []byte{10, 91, 0, 1})
	binary.BigEndian.PutUint32(p[20:24], uint32(seq))
	for i := 24; i < size; i++ {
		p[i] = byte(seq + i)
	}
	return p
}

// harness is one actor system with a udp instance, a collector injector and
// an observed logger.
type harness struct {
	t         *testing.T
	system    *actor.ActorSystem
	pool      *packet.Pool
	stats     *stats.Counters
	recvStats *stats.Counters
	coll      *packettest.Collector
	injector  *actor.PID
	logs      *observer.ObservedLogs
	log       *zap.Logger
	set       Settings
	pid       *actor.PID
}

func quietSystem() *actor.ActorSystem {
	return actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}))
}

func newHarness(t *testing.T, set Settings) *harness {
	core, logs := observer.New(zapcore.InfoLevel)
	h := &harness{
		t:         t,
		system:    quietSystem(),
		pool:      packet.NewPool(1024),
		stats:     &stats.Counters{Name: "peer-b", Kind: "udp"},
		recvStats: &stats.Counters{Name: "peer-b.recv", Kind: "udp"},
		coll:      &packettest.Collector{},
		logs:      logs,
		log:       zap.New(core),
		set:       set,
	}
	h.injector = h.system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return h.coll }))
	return h
}

// spawn starts the udp actor and waits until its socket is bound.
func (h *harness) spawn() {
	h.t.Helper()
	before := h.logs.FilterMessage("udp listening").Len()
	info, _ := protocols.Lookup("udp")
	inst := protocols.Instance{Name: "peer-b", Settings: h.set, Env: protocols.Env{
		System: h.system, Injector: h.injector, Pool: h.pool,
		ToNetwork: h.stats, FromNetwork: h.recvStats, MaxBatch: packet.MaxBatch, Log: h.log,
	}}
	h.pid = h.system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return info.New(inst) }))
	waitFor(h.t, "udp actor listening", func() bool { return h.logs.FilterMessage("udp listening").Len() > before })
}

func (h *harness) stop() {
	h.t.Helper()
	if err := h.system.Root.StopFuture(h.pid).Wait(); err != nil {
		h.t.Fatalf("stop udp actor: %v", err)
	}
}

// checkBalance asserts In = Out + drops on the receive counters.
func (h *harness) checkBalance() {
	h.t.Helper()
	s := h.recvStats.Snapshot()
	if s.InPackets != s.OutPackets+s.DroppedTotal() {
		h.t.Errorf("recv stats: in %d != out %d + drops %v", s.InPackets, s.OutPackets, s.Drops)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// freePort returns a UDP port free on the wildcard address of both families
// (StdNetBind binds both).
func freePort(t *testing.T) uint16 { t.Helper(); return packettest.FreeUDPPort(t) }

func listenLoopback(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func addrPort(c *net.UDPConn) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(c.LocalAddr().(*net.UDPAddr).Port))
}

func TestLoopback(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	peerConn := listenLoopback(t)
	listen := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), freePort(t))
	h := newHarness(t, Settings{Listen: listen, Peer: addrPort(peerConn)})
	h.spawn()
	to := net.UDPAddrFromAddrPort(listen)

	// (1) Packets from the peer reach the injector intact, in order, counted.
	var sent [][]byte
	for i := range 40 {
		p := ipv4Packet(i, 28+i*37)
		sent = append(sent, p)
		if _, err := peerConn.WriteToUDP(p, to); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "40 packets at the injector", func() bool { return len(h.coll.Packets()) == len(sent) })
	got := h.coll.Packets()
	for i := range sent {
		if !bytes.Equal(got[i], sent[i]) {
			t.Fatalf("packet %d: got % x…, want % x…", i, got[i][:24], sent[i][:24])
		}
	}
	if s := h.recvStats.Snapshot(); s.InPackets != 40 || s.OutPackets != 40 {
		t.Errorf("recv stats: in %d out %d, want 40 40", s.InPackets, s.OutPackets)
	}

	// (2) Datagrams from any other address are dropped as unknown_peer.
	stranger := listenLoopback(t)
	for i := range 5 {
		if _, err := stranger.WriteToUDP(ipv4Packet(100+i, 60), to); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "5 unknown_peer drops", func() bool { return h.recvStats.Dropped(UnknownPeer) == 5 })

	// (3) Garbage from the peer is dropped as malformed.
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 300)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	random[0] = 0x50 // version 5: never valid
	badLen := ipv4Packet(7, 100)
	binary.BigEndian.PutUint16(badLen[2:4], 200)
	garbage := [][]byte{
		random,
		ipv4Packet(1, 60)[:12], // truncated IPv4 header
		{0x60, 0, 0, 0, 0, 8},  // truncated IPv6 header
		badLen,                 // length field disagrees
	}
	for _, g := range garbage {
		if _, err := peerConn.WriteToUDP(g, to); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "malformed drops", func() bool { return h.recvStats.Dropped(stats.Malformed) == uint64(len(garbage)) })
	if n := len(h.coll.Packets()); n != 40 {
		t.Errorf("injector has %d packets, want 40", n)
	}
	h.checkBalance()

	// (4) A batch from the router reaches the peer intact and in order.
	for _, sizes := range [][]int{sameSizes(64, 1400), mixedSizes(64)} {
		want := sendBatch(t, h, sizes)
		if err := peerConn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 65536)
		for i, w := range want {
			n, from, err := peerConn.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatalf("peer read %d of %d: %v", i, len(want), err)
			}
			if from.Port() != listen.Port() {
				t.Errorf("datagram from %v, want port %d", from, listen.Port())
			}
			if !bytes.Equal(buf[:n], w) {
				t.Fatalf("datagram %d: %d bytes % x…, want %d bytes % x…", i, n, buf[:24], len(w), w[:24])
			}
		}
	}
	waitFor(t, "Stats.Out = 128", func() bool { return h.stats.Snapshot().OutPackets == 128 })

	// Oversized packets are dropped as malformed, the rest still go.
	sendBatch(t, h, []int{100, maxIPv4Payload + 1, 100})
	waitFor(t, "oversized drop", func() bool { return h.stats.Dropped(stats.Malformed) == 1 })
	waitFor(t, "Stats.Out = 130", func() bool { return h.stats.Snapshot().OutPackets == 130 })

	// (5) Stop: no socket, goroutine or buffer is left behind.
	h.stop()
	h.coll.Release()
	if err := h.pool.CheckLeaks(); err != nil {
		t.Error(err)
	}
	h.system.Root.StopFuture(h.injector).Wait()
	h.system.Shutdown()
}

func sameSizes(n, size int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = size
	}
	return s
}

func mixedSizes(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = 40 + (i*211)%1460
	}
	return s
}

// sendBatch sends the udp actor a batch of packets of the given sizes, as the
// router would, and returns copies of them.
func sendBatch(t *testing.T, h *harness, sizes []int) [][]byte {
	t.Helper()
	bufs := make([][]byte, len(sizes))
	if !h.pool.GetBufs(bufs) {
		t.Fatal("pool exhausted")
	}
	b := h.pool.GetBatch()
	var want [][]byte
	for i, size := range sizes {
		p := ipv4Packet(i, size)
		copy(bufs[i][packet.Headroom:], p)
		b.Append(bufs[i], size)
		want = append(want, p)
	}
	h.system.Root.Send(h.pid, b)
	return want
}

// TestRespawnSamePort checks that stopping closes the socket: a new actor
// binds the same port and traffic flows again.
func TestRespawnSamePort(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	peerConn := listenLoopback(t)
	listen := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), freePort(t))
	h := newHarness(t, Settings{Listen: listen, Peer: addrPort(peerConn)})
	to := net.UDPAddrFromAddrPort(listen)
	for round := range 3 {
		h.spawn()
		if _, err := peerConn.WriteToUDP(ipv4Packet(round, 80), to); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "packet at the injector", func() bool { return len(h.coll.Packets()) == round+1 })
		h.stop()
	}
	if s := h.recvStats.Snapshot(); s.InPackets != 3 || s.OutPackets != 3 {
		t.Errorf("recv stats: in %d out %d, want 3 3", s.InPackets, s.OutPackets)
	}
	h.coll.Release()
	if err := h.pool.CheckLeaks(); err != nil {
		t.Error(err)
	}
	h.system.Shutdown()
}

// TestStartFailure: a port already taken makes Started panic with the
// listen address in the error; nothing leaks.
func TestStartFailure(t *testing.T) {
	taken, err := net.ListenUDP("udp4", &net.UDPAddr{})
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	port := uint16(taken.LocalAddr().(*net.UDPAddr).Port)
	a := newUDPActor("peer-b", Settings{
		Listen: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port),
		Peer:   netip.MustParseAddrPort("127.0.0.1:9"),
	}, protocols.Env{Pool: packet.NewPool(512), ToNetwork: &stats.Counters{}, FromNetwork: &stats.Counters{}})
	func() {
		defer func() {
			r := recover()
			err, ok := r.(error)
			if !ok || !bytes.Contains([]byte(err.Error()), []byte("udp peer-b: listen 127.0.0.1:"+strconv.Itoa(int(port)))) {
				t.Fatalf("start panicked with %v, want a listen error", r)
			}
		}()
		a.start()
	}()
	a.stop()
	if err := a.env.Pool.CheckLeaks(); err != nil {
		t.Error(err)
	}
}

// releaser is an injector that releases every batch at once.
type releaser struct{}

func (releaser) Receive(ctx actor.Context) {
	if b, ok := ctx.Message().(*packet.Batch); ok {
		b.Release()
	}
}

// TestDeliverAllocs: the receive path allocates nothing per packet (the bind
// itself does; see README). A full read of 128 datagrams costs what a read of
// one costs: the batch's trip through the mailbox.
func TestDeliverAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	system := quietSystem()
	defer system.Shutdown()
	pool := packet.NewPool(1024)
	peer := netip.MustParseAddrPort("127.0.0.1:7001")
	a := newUDPActor("peer-b", Settings{Listen: netip.MustParseAddrPort("0.0.0.0:7000"), Peer: peer}, protocols.Env{
		System: system, Injector: system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return releaser{} })),
		Pool: pool, ToNetwork: &stats.Counters{}, FromNetwork: &stats.Counters{},
	})
	r, ok := newReader(a, nil)
	if !ok {
		t.Fatal("pool exhausted")
	}
	ep := udpbind.NewEndpoint(peer)
	pkt := ipv4Packet(1, 1400)
	fill := func(n int) {
		for i := 0; i < n; i++ {
			copy(r.pkts[i], pkt)
			r.sizes[i] = len(pkt)
			r.eps[i] = ep
		}
	}
	allocs := map[int]float64{}
	for _, n := range []int{packet.MaxBatch, 1, packet.MaxBatch, 1} {
		allocs[n] = testing.AllocsPerRun(500, func() { fill(n); r.deliver(n) })
	}
	t.Logf("allocs per deliver: 1 packet %.1f, 128 packets %.1f", allocs[1], allocs[packet.MaxBatch])
	if allocs[packet.MaxBatch] > 1 || allocs[packet.MaxBatch] > allocs[1]+0.5 {
		t.Errorf("deliver allocates per packet: %v for 1, %v for 128", allocs[1], allocs[packet.MaxBatch])
	}
	waitFor(t, "all batches released", func() bool { return pool.Outstanding() == packet.MaxBatch })
	r.release()
	if err := pool.CheckLeaks(); err != nil {
		t.Error(err)
	}
}
