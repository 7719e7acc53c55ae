package wireguard

import (
	"bytes"
	"net"
	"net/netip"
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

// node is one wireguard instance in the test's actor system, with a
// collector as its injector.
type node struct {
	t         *testing.T
	system    *actor.ActorSystem
	name      string
	set       Settings
	pool      *packet.Pool
	stats     *stats.Counters
	recvStats *stats.Counters
	coll      *packettest.Collector
	injector  *actor.PID
	logs      *observer.ObservedLogs
	log       *zap.Logger
	pid       *actor.PID
}

func newNode(t *testing.T, system *actor.ActorSystem, name string, set Settings) *node {
	core, logs := observer.New(zapcore.InfoLevel)
	n := &node{
		t: t, system: system, name: name, set: set,
		pool:      packet.NewPool(1024),
		stats:     &stats.Counters{Name: name, Kind: "wireguard"},
		recvStats: &stats.Counters{Name: name + ".recv", Kind: "wireguard"},
		coll:      &packettest.Collector{},
		logs:      logs,
		log:       zap.New(core),
	}
	n.injector = system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return n.coll }))
	return n
}

// spawn starts the instance and waits until its device is up.
func (n *node) spawn() {
	n.t.Helper()
	before := n.logs.FilterMessage("wireguard up").Len()
	info, _ := protocols.Lookup("wireguard")
	inst := protocols.Instance{Name: n.name, Settings: n.set, Env: protocols.Env{
		System: n.system, Injector: n.injector, Pool: n.pool,
		ToNetwork: n.stats, FromNetwork: n.recvStats, MaxBatch: packet.MaxBatch, Log: n.log,
	}}
	n.pid = n.system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return info.New(inst) }))
	waitFor(n.t, 5*time.Second, n.name+" up", func() bool { return n.logs.FilterMessage("wireguard up").Len() > before })
}

func (n *node) stop() {
	n.t.Helper()
	if err := n.system.Root.StopFuture(n.pid).Wait(); err != nil {
		n.t.Fatalf("stop %s: %v", n.name, err)
	}
}

// send hands a batch of pkts to the instance as the router would.
func (n *node) send(pkts [][]byte) {
	n.system.Root.Send(n.pid, batchOf(n.t, n.pool, pkts))
}

func (n *node) info() Info {
	in, _ := n.stats.Snapshot().Info.(Info)
	return in
}

// pair configures two instances on loopback ports that are each other's
// peer; b's peer entry for a uses aKeyAtB (a's real public key, or a wrong
// one).
func pair(t *testing.T, aKeyAtB Key) (a, b Settings) {
	pa, pb := freePort(t), freePort(t)
	lo := netip.MustParseAddr("127.0.0.1")
	a = Settings{PrivateKey: mustKey(privA), ListenPort: pa, Peers: []Peer{{
		PublicKey: mustKey(pubB), Endpoint: netip.AddrPortFrom(lo, pb),
		AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.90.0.2/32"), netip.MustParsePrefix("fd90::2/128")},
	}}}
	b = Settings{PrivateKey: mustKey(privB), ListenPort: pb, Peers: []Peer{{
		PublicKey: aKeyAtB, Endpoint: netip.AddrPortFrom(lo, pa),
		AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.90.0.1/32"), netip.MustParsePrefix("fd90::1/128")},
	}}}
	return a, b
}

var (
	ip6A = [16]byte{0xfd, 0x90, 15: 1}
	ip6B = [16]byte{0xfd, 0x90, 15: 2}
)

// TestPairLoopback: two instances in one process exchange packets over
// loopback, encrypted, both ways and both families; unknown destinations
// are no_peer drops; garbage datagrams are counted; per-peer info shows
// the handshake; stopping leaks no buffer and no goroutine.
func TestPairLoopback(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	system := quietSystem()
	defer system.Shutdown()

	sa, sb := pair(t, mustKey(pubA))
	a, b := newNode(t, system, "a", sa), newNode(t, system, "b", sb)
	a.spawn()
	b.spawn()

	// a → b: IPv4 and IPv6, several batches, sizes up to 1420.
	var want [][]byte
	for batch := range 4 {
		var pkts [][]byte
		for i := range 30 {
			seq := batch*100 + i
			if i%2 == 0 {
				pkts = append(pkts, ipv4Packet(ipA, ipB, seq, 28+seq*3%1392))
			} else {
				pkts = append(pkts, ipv6Packet(ip6A, ip6B, seq, 48+seq*7%1372))
			}
		}
		want = append(want, pkts...)
		a.send(pkts)
	}
	waitFor(t, 10*time.Second, "a's packets at b", func() bool { return b.coll.Count() >= len(want) })
	got := b.coll.Packets()
	if len(got) != len(want) {
		t.Fatalf("b received %d packets, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("packet %d differs after the tunnel", i)
		}
	}
	b.coll.Release()

	// b → a, and a destination no peer covers (dropped as no_peer at b).
	back := [][]byte{ipv4Packet(ipB, ipA, 1, 100), ipv6Packet(ip6B, ip6A, 2, 100)}
	b.send(append(back, ipv4Packet(ipB, [4]byte{10, 99, 0, 1}, 3, 100), []byte{0x45, 0, 0}))
	waitFor(t, 5*time.Second, "b's packets at a", func() bool { return a.coll.Count() >= 2 })
	for i, p := range a.coll.Packets() {
		if !bytes.Equal(p, back[i]) {
			t.Errorf("b→a packet %d differs", i)
		}
	}
	a.coll.Release()
	if got := b.stats.Dropped(NoPeer); got != 1 {
		t.Errorf("b no_peer = %d, want 1", got)
	}
	if got := b.stats.Dropped(stats.Malformed); got != 1 {
		t.Errorf("b malformed = %d, want 1", got)
	}

	// Garbage datagrams on b's port are counted and go nowhere.
	c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(sb.ListenPort)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	bad := msg(1, 148)
	bad[3] = 7
	for _, d := range [][]byte{[]byte("hello"), bad, msg(2, 100), msg(7, 64)} {
		if _, err := c.Write(d); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "garbage counted", func() bool { return b.recvStats.Dropped(stats.Malformed) == 4 })

	// Per-peer info: a handshake, bytes both ways.
	for _, n := range []*node{a, b} {
		in := n.info()
		if len(in.Peers) != 1 {
			t.Fatalf("%s info: %+v, want one peer", n.name, in)
		}
		p := in.Peers[0]
		if p.LastHandshake == nil || time.Since(*p.LastHandshake) > time.Minute || p.RxBytes == 0 || p.TxBytes == 0 {
			t.Errorf("%s peer info = %+v, want a recent handshake and bytes both ways", n.name, p)
		}
		if in.PublicKey != PublicKey(n.set.PrivateKey).String() || in.ListenPort != int(n.set.ListenPort) {
			t.Errorf("%s info = %+v", n.name, in)
		}
	}

	a.stop()
	b.stop()
	for _, n := range []*node{a, b} {
		s := n.stats.Snapshot()
		if s.Info != nil {
			t.Errorf("%s: info after stop = %v, want none", n.name, s.Info)
		}
		r := n.recvStats.Snapshot()
		if r.InPackets != r.OutPackets+r.DroppedTotal() {
			t.Errorf("%s recv: in %d != out %d + drops %v", n.name, r.InPackets, r.OutPackets, r.Drops)
		}
		if err := n.pool.CheckLeaks(); err != nil {
			t.Errorf("%s: %v", n.name, err)
		}
	}
	if got := a.stats.Snapshot().OutPackets; got != uint64(len(want)) {
		t.Errorf("a out = %d, want %d", got, len(want))
	}
}

// TestWrongKey: b knows a different key for a: no handshake completes and
// nothing reaches b's injector.
func TestWrongKey(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	system := quietSystem()
	defer system.Shutdown()

	wrong := PublicKey(mustKey("QBTOqK9DJf7RCBlGqPbxH6RSUeWn0aSc4xXbq6xdtHw="))
	sa, sb := pair(t, wrong)
	a, b := newNode(t, system, "a", sa), newNode(t, system, "b", sb)
	a.spawn()
	b.spawn()
	for i := range 5 {
		a.send([][]byte{ipv4Packet(ipA, ipB, i, 100)})
		b.send([][]byte{ipv4Packet(ipB, ipA, i, 100)})
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	if n := b.coll.Count(); n != 0 {
		t.Errorf("b received %d packets from a peer with the wrong key", n)
	}
	if n := a.coll.Count(); n != 0 {
		t.Errorf("a received %d packets from a peer that does not know its key", n)
	}
	for _, n := range []*node{a, b} {
		in := n.info()
		if len(in.Peers) != 1 || in.Peers[0].LastHandshake != nil || in.Peers[0].RxBytes != 0 {
			t.Errorf("%s info = %+v, want no handshake and nothing received", n.name, in)
		}
	}
	a.stop()
	b.stop()
	for _, n := range []*node{a, b} {
		if err := n.pool.CheckLeaks(); err != nil {
			t.Errorf("%s: %v", n.name, err)
		}
	}
}

// TestRespawn: stopping closes the socket and the device; a new instance
// binds the same port and the tunnel works again, three times.
func TestRespawn(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	system := quietSystem()
	defer system.Shutdown()
	sa, sb := pair(t, mustKey(pubA))
	a, b := newNode(t, system, "a", sa), newNode(t, system, "b", sb)
	b.spawn()
	for round := range 3 {
		a.spawn()
		a.send([][]byte{ipv4Packet(ipA, ipB, round, 60)})
		waitFor(t, 10*time.Second, "packet through the respawned instance", func() bool { return b.coll.Count() == 1 })
		b.coll.Release()
		a.stop()
		if err := a.pool.CheckLeaks(); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
	b.stop()
}

// TestStartFailure: a port in use makes start panic with a clear message
// (the supervisor then restarts with backoff); nothing leaks.
func TestStartFailure(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	sa, _ := pair(t, mustKey(pubA))
	hog, err := net.ListenUDP("udp4", &net.UDPAddr{Port: int(sa.ListenPort)})
	if err != nil {
		t.Fatal(err)
	}
	defer hog.Close()
	a := newWGActor("a", sa, protocols.Env{Pool: packet.NewPool(128), ToNetwork: &stats.Counters{}, FromNetwork: &stats.Counters{}})
	func() {
		defer func() {
			r := recover()
			if r == nil {
				t.Fatal("start on a busy port did not panic")
			}
			if msg := r.(error).Error(); !bytes.Contains([]byte(msg), []byte("wireguard a: up (listen_port")) {
				t.Errorf("panic = %q", msg)
			}
		}()
		a.start()
	}()
	// Batches after a failed start are dropped and counted.
	a.send(batchOf(t, a.env.Pool, [][]byte{ipv4Packet(ipA, ipB, 0, 40)}))
	if got := a.env.ToNetwork.Dropped(stats.SendError); got != 1 {
		t.Errorf("send_error = %d, want 1", got)
	}
	a.stop()
	if err := a.env.Pool.CheckLeaks(); err != nil {
		t.Error(err)
	}
}

// TestSendAllocs: the outbound path (allowed-IPs check, hand-over, copy
// into the device's buffers) allocates nothing per packet.
func TestSendAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	sa, _ := pair(t, mustKey(pubA))
	pool := packet.NewPool(1024)
	a := newWGActor("a", sa, protocols.Env{Pool: pool, ToNetwork: &stats.Counters{}, FromNetwork: &stats.Counters{}, Log: zap.NewNop()})
	a.tun = newFeedTUN("a", &a.env, packet.MaxBatch) // no device: the test reads
	bufs, sizes := deviceBufs(packet.MaxBatch), make([]int, packet.MaxBatch)
	pkts := make([][]byte, packet.MaxBatch)
	for i := range pkts {
		if i%2 == 0 {
			pkts[i] = ipv4Packet(ipA, ipB, i, 1400)
		} else {
			pkts[i] = ipv6Packet(ip6A, ip6B, i, 1400)
		}
	}
	in := make([][]byte, packet.MaxBatch)
	run := func(n int) {
		in := in[:n]
		pool.GetBufs(in)
		b := pool.GetBatch()
		for i := range in {
			b.Append(in[i], copy(in[i][packet.Headroom:], pkts[i]))
			in[i] = nil
		}
		a.send(b)
		if got, _ := a.tun.Read(bufs, sizes, 16); got != n {
			t.Fatalf("Read = %d, want %d", got, n)
		}
	}
	allocs := map[int]float64{}
	for _, n := range []int{packet.MaxBatch, 1, packet.MaxBatch, 1} {
		allocs[n] = testing.AllocsPerRun(200, func() { run(n) })
	}
	t.Logf("allocs per batch: 1 packet %.1f, 128 packets %.1f", allocs[1], allocs[packet.MaxBatch])
	if allocs[packet.MaxBatch] > 0 || allocs[1] > 0 {
		t.Errorf("send allocates: %v for 1 packet, %v for 128", allocs[1], allocs[packet.MaxBatch])
	}
	if err := pool.CheckLeaks(); err != nil {
		t.Error(err)
	}
}

// TestEmptiesMixedIntoTunnel (issue 12, finding 3): a stranger's empty
// datagrams sent to b's port while a sends to b cost no packet of the
// tunnel, and b counts every one as "empty". On conn.StdNetBind (UDP GRO
// on) none was counted and the datagrams read behind one were lost.
func TestEmptiesMixedIntoTunnel(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	system := quietSystem()
	defer system.Shutdown()
	sa, sb := pair(t, mustKey(pubA))
	a, b := newNode(t, system, "a", sa), newNode(t, system, "b", sb)
	a.spawn()
	b.spawn()

	// The handshake first: one packet through.
	a.send([][]byte{ipv4Packet(ipA, ipB, 0, 100)})
	waitFor(t, 10*time.Second, "the first packet at b", func() bool { return b.coll.Count() == 1 })
	b.coll.Release()

	stranger, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(sb.ListenPort)})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	const batches, per, empties = 20, 16, 400
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range empties {
			_, _ = stranger.Write(nil)
			time.Sleep(100 * time.Microsecond)
		}
	}()
	var want [][]byte
	for i := range batches {
		var pkts [][]byte
		for j := range per {
			pkts = append(pkts, ipv4Packet(ipA, ipB, i*per+j, 1000))
		}
		want = append(want, pkts...)
		a.send(pkts)
		// Leave the device time to drain: the test is about what the
		// receiver loses, not about a's queues.
		for deadline := time.Now().Add(2 * time.Second); b.coll.Count() < len(want) && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
	}
	<-done
	for deadline := time.Now().Add(5 * time.Second); b.recvStats.Dropped(udpbind.Empty) < empties && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	got := b.coll.Packets()
	if len(got) != len(want) {
		t.Fatalf("b received %d packets, want %d (%d of %d empties counted)",
			len(got), len(want), b.recvStats.Dropped(udpbind.Empty), empties)
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("packet %d differs after the tunnel", i)
		}
	}
	if e := b.recvStats.Dropped(udpbind.Empty); e != empties {
		t.Errorf("b empty = %d, want %d", e, empties)
	}
	b.coll.Release()
	a.stop()
	b.stop()
	r := b.recvStats.Snapshot()
	if r.InPackets != r.OutPackets+r.DroppedTotal() {
		t.Errorf("b recv: in %d != out %d + drops %v", r.InPackets, r.OutPackets, r.Drops)
	}
	for _, n := range []*node{a, b} {
		if err := n.pool.CheckLeaks(); err != nil {
			t.Errorf("%s: %v", n.name, err)
		}
	}
}
