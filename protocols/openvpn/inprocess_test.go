package openvpn

// In-process tests: a Switchyard server and client over loopback, with
// collector injectors, and a hostile socket on the server's port.

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"switchyard/packet"
	"switchyard/packet/packettest"
	"switchyard/protocols"
	"switchyard/stats"
)

type end struct {
	t      *testing.T
	system *actor.ActorSystem
	pool   *packet.Pool
	out    *stats.Counters
	in     *stats.Counters
	coll   *packettest.Collector
	pid    *actor.PID
	sess   chan protocols.Session
}

func newEnd(t *testing.T, mk func(protocols.Env) actor.Actor) *end {
	e := &end{t: t, pool: packet.NewPool(2048), out: &stats.Counters{Name: "vpn"}, in: &stats.Counters{Name: "vpn.recv"},
		coll: &packettest.Collector{}, sess: make(chan protocols.Session, 16)}
	e.system = actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}))
	inj := e.system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return e.coll }))
	env := protocols.Env{System: e.system, Injector: inj, Pool: e.pool, ToNetwork: e.out, FromNetwork: e.in,
		MaxBatch: packet.MaxBatch, Log: zap.NewNop(),
		Session: func(s protocols.Session) {
			select {
			case e.sess <- s:
			default:
			}
		}}
	e.pid = e.system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return mk(env) }))
	return e
}

func (e *end) send(pkts ...[]byte) {
	b := packettest.BatchOf(e.t, e.pool, pkts...)
	e.out.In(b.Len(), b.Bytes())
	e.system.Root.Send(e.pid, b)
}

func (e *end) stop() {
	if err := e.system.Root.StopFuture(e.pid).Wait(); err != nil {
		e.t.Fatal(err)
	}
	e.coll.Release()
	e.system.Shutdown()
	if err := e.pool.CheckLeaks(); err != nil {
		e.t.Error(err)
	}
}

func waitUntil(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func testSettings(t *testing.T) (client, server Settings) {
	dir := t.TempDir()
	p := newPKI(t, dir, "inproc", net.IPv4(127, 0, 0, 1))
	key := testStaticKey()
	base := func(cert, keyFile string) Settings {
		s, err := parse(mustSettings(t, "remote: 127.0.0.1:1\nca_file: "+p.ca+"\ncert_file: "+cert+"\nkey_file: "+keyFile+"\ntls_crypt_file: "+writeKey(t, dir, key)+"\n"))
		if err != nil {
			t.Fatal(err)
		}
		return s.(Settings)
	}
	port := packettest.FreeUDPPort(t)
	server = base(p.serverCert, p.serverKey)
	server.Server, server.Remote = true, netip.AddrPort{}
	server.Listen = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	server.Network = netip.MustParsePrefix("10.8.0.0/24")
	server.PushRoutes = []netip.Prefix{netip.MustParsePrefix("10.77.0.0/16")}
	server.MaxClients = defaultMaxClients
	server.Ping, server.PingRestart = time.Second, 3*time.Second
	client = base(p.clientCert, p.clientKey)
	client.Remote = server.Listen
	client.AcceptRoutes = true
	client.RemoteCertTLSServer = true
	return client, server
}

func writeKey(t *testing.T, dir string, key [staticKeyBytes]byte) string {
	path := filepath.Join(dir, "tc.key")
	text := "-----BEGIN OpenVPN Static key V1-----\n" + hexOf(key[:]) + "\n-----END OpenVPN Static key V1-----\n"
	if err := writeFile0600(path, text); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestInProcessPair: client and server in one process: the session comes
// up and reports the pushed address and routes, packets cross both ways,
// hostile datagrams on the server's port are counted, a peer that stops
// mid-handshake is bounded and expires, nothing leaks.
func TestInProcessPair(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	old := handshakeWindow
	handshakeWindow = 2 * time.Second
	defer func() { handshakeWindow = old }()

	cset, sset := testSettings(t)
	srv := newEnd(t, func(env protocols.Env) actor.Actor { return newServerActor("vpn", sset, env) })
	defer srv.stop()
	cl := newEnd(t, func(env protocols.Env) actor.Actor { return newClientActor("vpn", cset, env) })
	stopped := false
	defer func() {
		if !stopped {
			cl.stop()
		}
	}()

	var got protocols.Session
	select {
	case got = <-cl.sess:
	case <-time.After(15 * time.Second):
		t.Fatal("no session reported")
	}
	if want := "[10.8.0.2/24] [10.77.0.0/16]"; fmtSession(got) != want {
		t.Fatalf("session %s, want %s", fmtSession(got), want)
	}

	// client → server, then server → client.
	up := packettest.IPv4([4]byte{10, 8, 0, 2}, [4]byte{10, 8, 0, 1}, 200, nil)
	cl.send(up, up, up)
	waitUntil(t, "3 packets at the server", 5*time.Second, func() bool { return srv.coll.Count() == 3 })
	waitUntil(t, "the server's peer", 5*time.Second, func() bool { return len(srv.serverInfo().Peers) == 1 })
	down := packettest.IPv4([4]byte{10, 8, 0, 1}, [4]byte{10, 8, 0, 2}, 300, nil)
	srv.send(down, down)
	waitUntil(t, "2 packets at the client", 5*time.Second, func() bool { return cl.coll.Count() == 2 })
	// A packet to an address no client holds, and a spoofed source.
	srv.send(packettest.IPv4([4]byte{10, 8, 0, 1}, [4]byte{10, 8, 0, 9}, 100, nil))
	cl.send(packettest.IPv4([4]byte{10, 8, 0, 7}, [4]byte{10, 8, 0, 1}, 100, nil))
	waitUntil(t, "no_peer and spoofed_source", 5*time.Second, func() bool {
		return srv.out.Dropped(NoPeer) == 1 && srv.in.Dropped(SpoofedSource) == 1
	})

	// Hostile datagrams from another socket.
	h, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(sset.Listen))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	key := testStaticKey()
	attacker := newTLSCrypt(&key, false)
	forged := func(op byte) []byte {
		body := appendControlBody(nil, nil, sessionID{}, op, 0, nil)
		d, _ := attacker.wrap(nil, op<<opShift, sessionID{byte(time.Now().UnixNano())}, body)
		return d
	}
	bad := forged(opHardResetClientV2)
	bad[len(bad)-1] ^= 1
	for _, d := range [][]byte{
		{0xff, 1, 2, 3}, // garbage
		bad,             // a reset failing tls-crypt
		append([]byte{opDataV2 << opShift, 0, 0, 0}, make([]byte, 40)...), // data from an unknown source
	} {
		if _, err := h.Write(d); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "garbage counted", 5*time.Second, func() bool {
		in := srv.serverInfo()
		return in.ControlGarbage >= 2 && srv.in.Dropped(UnknownPeer) >= 1
	})
	// Valid resets that never go on: bounded, then expired.
	var socks []*net.UDPConn
	for i := 0; i < maxHandshakes+4; i++ {
		s, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(sset.Listen))
		if err != nil {
			t.Fatal(err)
		}
		socks = append(socks, s)
		if _, err := s.Write(forged(opHardResetClientV2)); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "handshakes bounded", 5*time.Second, func() bool {
		in := srv.serverInfo()
		return in.Handshaking == maxHandshakes && in.RefusedFull >= 4
	})
	waitUntil(t, "handshakes expired", 10*time.Second, func() bool {
		in := srv.serverInfo()
		return in.Handshaking == 0 && in.HandshakesFailed >= maxHandshakes
	})
	for _, s := range socks {
		s.Close()
	}
	// The real client is still up.
	srv.send(down)
	waitUntil(t, "3rd packet at the client", 5*time.Second, func() bool { return cl.coll.Count() == 3 })
	if in := srv.serverInfo(); len(in.Peers) != 1 || in.Peers[0].RxPackets != 3 || in.Peers[0].TxPackets != 3 {
		t.Errorf("peer stats %+v, want rx 3 tx 3", in.Peers)
	}

	cl.stop()
	stopped = true
	select {
	case s := <-cl.sess:
		if !s.IsZero() {
			t.Errorf("session at the end %s, want the zero session", fmtSession(s))
		}
	case <-time.After(2 * time.Second):
		t.Error("no zero session reported at the end")
	}
}

func (e *end) serverInfo() ServerInfo {
	in, _ := e.out.Info().(ServerInfo)
	return in
}

// TestInProcessReconnect: the server goes away (nothing answers: the
// client's ping-restart ends the session, which it reports as the zero
// session), comes back on the same port, and the client reconnects.
func TestInProcessReconnect(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	cset, sset := testSettings(t)
	srv := newEnd(t, func(env protocols.Env) actor.Actor { return newServerActor("vpn", sset, env) })
	cl := newEnd(t, func(env protocols.Env) actor.Actor { return newClientActor("vpn", cset, env) })
	defer cl.stop()
	next := func(what string, d time.Duration) protocols.Session {
		t.Helper()
		select {
		case s := <-cl.sess:
			return s
		case <-time.After(d):
			t.Fatalf("no session report (%s) within %v", what, d)
		}
		return protocols.Session{}
	}
	if s := next("up", 15*time.Second); s.IsZero() {
		t.Fatal("first report is the zero session")
	}
	srv.stop()
	if s := next("down", 10*time.Second); !s.IsZero() {
		t.Fatalf("report after the server went away: %s, want the zero session", fmtSession(s))
	}
	srv2 := newEnd(t, func(env protocols.Env) actor.Actor { return newServerActor("vpn", sset, env) })
	defer srv2.stop()
	if s := next("up again", 20*time.Second); s.IsZero() {
		t.Fatal("no session after the server came back")
	}
	waitUntil(t, "the server's peer", 5*time.Second, func() bool { return len(srv2.serverInfo().Peers) == 1 })
	down := packettest.IPv4([4]byte{10, 8, 0, 1}, [4]byte{10, 8, 0, 2}, 300, nil)
	srv2.send(down)
	waitUntil(t, "a packet through the new session", 5*time.Second, func() bool { return cl.coll.Count() == 1 })
	in, _ := cl.out.Info().(clientInfo)
	if in.Reconnects != 1 {
		t.Errorf("reconnects %d, want 1 (%+v)", in.Reconnects, in)
	}
}

// TestInProcessWrongCA: a client whose certificate comes from another CA
// is refused by the server's TLS handshake (counted as a failed handshake)
// and never reports a session.
func TestInProcessWrongCA(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	cset, sset := testSettings(t)
	other := newPKI(t, t.TempDir(), "other", nil)
	wrong, err := parse(mustSettings(t, "remote: "+sset.Listen.String()+"\nca_file: "+other.ca+"\ncert_file: "+other.clientCert+
		"\nkey_file: "+other.clientKey+"\ntls_crypt_file: "+writeKey(t, t.TempDir(), testStaticKey())+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	w := wrong.(Settings)
	w.RootCAs = cset.RootCAs // it trusts the server; the server does not trust it
	srv := newEnd(t, func(env protocols.Env) actor.Actor { return newServerActor("vpn", sset, env) })
	defer srv.stop()
	cl := newEnd(t, func(env protocols.Env) actor.Actor { return newClientActor("vpn", w, env) })
	defer cl.stop()
	waitUntil(t, "a failed handshake at the server", 10*time.Second, func() bool { return srv.serverInfo().HandshakesFailed >= 1 })
	select {
	case s := <-cl.sess:
		if !s.IsZero() {
			t.Fatalf("a client with a certificate from another CA got a session: %s", fmtSession(s))
		}
	default:
	}
	if in := srv.serverInfo(); len(in.Peers) != 0 {
		t.Fatalf("peers %+v, want none", in.Peers)
	}
	in, _ := cl.out.Info().(clientInfo)
	if in.State == "connected" {
		t.Fatalf("client connected: %+v", in)
	}
	t.Logf("client: %+v", in)
}

// TestInProcessRenegOnPacketIDs: a key that has spent most of its packet
// ids is renegotiated (reneg_sec 0), and packets keep flowing on the new
// key.
func TestInProcessRenegOnPacketIDs(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	cset, sset := testSettings(t)
	srv := newEnd(t, func(env protocols.Env) actor.Actor { return newServerActor("vpn", sset, env) })
	defer srv.stop()
	var ca *clientActor
	cl := newEnd(t, func(env protocols.Env) actor.Actor { ca = newClientActor("vpn", cset, env); return ca })
	defer cl.stop()
	select {
	case <-cl.sess:
	case <-time.After(15 * time.Second):
		t.Fatal("no session")
	}
	s := ca.live.Load()
	old := s.ring.primary.Load()
	old.sendID.Store(renegPacketIDs)
	waitUntil(t, "a new key", 10*time.Second, func() bool {
		k := s.ring.primary.Load()
		return k != nil && k.id != old.id
	})
	waitUntil(t, "the server's peer", 5*time.Second, func() bool { return len(srv.serverInfo().Peers) == 1 })
	up := packettest.IPv4([4]byte{10, 8, 0, 2}, [4]byte{10, 8, 0, 1}, 200, nil)
	cl.send(up, up)
	waitUntil(t, "2 packets at the server on the new key", 5*time.Second, func() bool { return srv.coll.Count() == 2 })
	if got := s.renegs.Load(); got != 1 {
		t.Errorf("renegotiations %d, want 1", got)
	}
}
