package openconnect

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/goleak"

	"switchyard/packet"
	"switchyard/protocols"
	"switchyard/protocols/openconnect/cstp"
	"switchyard/stats"
)

// serverFixture is a Switchyard server instance with a users file.
type serverFixture struct {
	h      *harness
	set    ServerSettings
	pki    *testPKI
	dir    string
	listen netip.AddrPort
	echo   chan struct{}
}

func writeUsers(t *testing.T, path string, users map[string]string) {
	t.Helper()
	var b strings.Builder
	for u, pw := range users {
		fmt.Fprintf(&b, "%s:*:%s\n", u, shaCrypt("5", []byte(pw), []byte("switchyardsalt12"), cryptRoundsDefault, false))
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

// freeTCPPort returns a port free for TCP and UDP on ip.
func freePort(t *testing.T, ip string) uint16 {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort(ip, fmt.Sprint(port)))
		ln.Close()
		if err == nil {
			u.Close()
			return uint16(port)
		}
	}
	t.Fatal("no free port")
	return 0
}

func startServer(t *testing.T, listenIP string, extra string) *serverFixture {
	t.Helper()
	dir := t.TempDir()
	f := &serverFixture{dir: dir, echo: make(chan struct{})}
	f.pki = newPKI(t, dir, net.ParseIP(listenIP), ocUser)
	writeUsers(t, filepath.Join(dir, "users"), map[string]string{ocUser: ocPassword, "bob": "bobpw"})
	f.listen = netip.AddrPortFrom(netip.MustParseAddr(listenIP), freePort(t, listenIP))
	yaml := fmt.Sprintf("mode: server\nlisten: %s\ncert_file: %s\nkey_file: %s\nusers_file: %s\npool: 192.168.77.0/24\n"+
		"routes: [10.55.0.0/16]\ndpd: 2s\nkeepalive: 5s\n%s", f.listen, f.pki.certFile, f.pki.keyFile, filepath.Join(dir, "users"), extra)
	f.set = mustParse(t, yaml).Server
	f.h = newHarness(t)
	f.h.stats.Name, f.h.recvStats.Name = "srv", "srv.recv"
	f.h.spawn(func(env protocols.Env) actor.Actor { return newServerActor("srv", f.set, env) })
	waitTCP(t, f.listen.String(), 5*time.Second)
	go f.answerPings()
	return f
}

// answerPings plays the host behind the server: echo requests to the
// gateway that reach the injector are answered through the server actor.
func (f *serverFixture) answerPings() {
	seen := 0
	for {
		select {
		case <-f.echo:
			return
		case <-time.After(5 * time.Millisecond):
		}
		pkts := f.h.coll.Packets()
		for _, p := range pkts[min(seen, len(pkts)):] {
			if len(p) >= 28 && p[9] == packet.ProtoICMP && p[20] == 8 {
				f.h.send(echoReply(p))
			}
		}
		seen = len(pkts)
	}
}

// echoReply turns an IPv4 echo request into its reply.
func echoReply(req []byte) []byte {
	p := append([]byte(nil), req...)
	copy(p[12:16], req[16:20])
	copy(p[16:20], req[12:16])
	p[10], p[11] = 0, 0
	binary.BigEndian.PutUint16(p[10:12], packet.Checksum(p[:20], 0))
	ihl := int(p[0]&0x0f) * 4
	p[ihl] = 0
	p[ihl+2], p[ihl+3] = 0, 0
	binary.BigEndian.PutUint16(p[ihl+2:ihl+4], packet.Checksum(p[ihl:], 0))
	return p
}

func (f *serverFixture) serverInfo() ServerInfo {
	in, _ := f.h.stats.Info().(ServerInfo)
	return in
}

func (f *serverFixture) clientSettings(t *testing.T, dtls bool, password string) ClientSettings {
	pw := writeSecret(t, filepath.Join(t.TempDir(), "pw"), password+"\n")
	yaml := fmt.Sprintf("server: https://%s\nusername: %s\npassword_file: %s\nserver_pin: %s\ndtls: %v\n",
		f.listen, ocUser, pw, FormatPin(PinOf(f.pki.serverCert)), dtls)
	return mustParse(t, yaml).Client
}

// Switchyard client ↔ Switchyard server over loopback.
func TestClientServerLoopback(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	srv := startServer(t, "127.0.0.1", "")
	gw := [4]byte{192, 168, 77, 1}
	for _, dtls := range []bool{false, true} {
		t.Run(fmt.Sprintf("dtls=%v", dtls), func(t *testing.T) {
			h := newHarness(t)
			spawnClient(h, srv.clientSettings(t, dtls, ocPassword), nil)
			waitFor(t, "session up", 10*time.Second, func() bool { return h.clientInfo().State == "connected" })
			in := h.clientInfo()
			if in.Address.Masked() != netip.MustParsePrefix("192.168.77.0/24") || in.Address.Addr() == netip.AddrFrom4(gw) {
				t.Errorf("address %v, want one in 192.168.77.0/24 other than the gateway", in.Address)
			}
			if len(in.Routes) != 1 || in.Routes[0] != netip.MustParsePrefix("10.55.0.0/16") {
				t.Errorf("routes %v, want [10.55.0.0/16]", in.Routes)
			}
			if dtls {
				waitFor(t, "DTLS up", 10*time.Second, func() bool { return h.clientInfo().Channel == "dtls" })
			}
			for seq := uint16(1); seq <= 5; seq++ {
				ping(t, h, gw, seq)
			}
			sin := srv.serverInfo()
			if len(sin.Peers) != 1 || sin.Peers[0].User != ocUser || sin.Peers[0].Address != in.Address.Addr() {
				t.Fatalf("server peers %+v", sin.Peers)
			}
			wantCh := "cstp"
			if dtls {
				wantCh = "dtls"
				if ci := h.clientInfo(); ci.TxDTLS < 5 || ci.RxDTLS < 5 || sin.Peers[0].RxDTLS < 5 {
					t.Errorf("over DTLS: client tx %d rx %d, server rx %d; want ≥ 5", ci.TxDTLS, ci.RxDTLS, sin.Peers[0].RxDTLS)
				}
			}
			if sin.Peers[0].Channel != wantCh {
				t.Errorf("server sees channel %q, want %q", sin.Peers[0].Channel, wantCh)
			}
			h.checkBalance()
			h.stop()
			waitFor(t, "the server to drop the peer", 5*time.Second, func() bool { return len(srv.serverInfo().Peers) == 0 })
			h.coll.Release()
			if err := h.pool.CheckLeaks(); err != nil {
				t.Error(err)
			}
		})
	}

	t.Run("wrong password", func(t *testing.T) {
		h := newHarness(t)
		before := srv.serverInfo().AuthFailures
		spawnClient(h, srv.clientSettings(t, false, "nope"), nil)
		waitFor(t, "refused", 10*time.Second, func() bool { return h.clientInfo().AuthFailures >= 1 })
		if got := srv.serverInfo().AuthFailures; got <= before {
			t.Errorf("server auth_failures %d, want > %d", got, before)
		}
		h.stop()
	})

	// A client that sends frames that are not IP, then one from an address
	// it was not given, then garbage instead of a frame: each counted, the
	// session closed at the garbage, the client back with its cookie.
	t.Run("bad frames from a client", func(t *testing.T) {
		h := newHarness(t)
		defer h.coll.Release()
		sessions := make(chanSessions, 4)
		spawnClient(h, srv.clientSettings(t, false, ocPassword), &testHooks{onSession: sessions.put})
		defer h.stop()
		s := sessions.get(t)
		waitFor(t, "connected", 10*time.Second, func() bool { return h.clientInfo().State == "connected" })
		rs := srv.h.recvStats
		mal, spoof := rs.Dropped(stats.Malformed), rs.Dropped(UnknownPeer)
		own := h.clientInfo().Address.Addr().As4()
		var b []byte
		b = cstp.AppendFrame(b, cstp.Data, []byte{0x45, 0, 0}) // truncated IPv4
		b = cstp.AppendFrame(b, cstp.Data, icmpEcho([4]byte{10, 9, 9, 9}, gw, 7, 7, 60))
		b = cstp.AppendFrame(b, cstp.Type(0x42), []byte{1})             // unknown type
		b = cstp.AppendFrame(b, cstp.Data, icmpEcho(own, gw, 7, 8, 60)) // fine
		if err := s.writeCSTP(b); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "counted", 5*time.Second, func() bool {
			return rs.Dropped(stats.Malformed) == mal+2 && rs.Dropped(UnknownPeer) == spoof+1
		})
		if err := s.writeCSTP([]byte("this is not a frame at all")); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "garbage counted", 5*time.Second, func() bool { return rs.Dropped(stats.Malformed) == mal+3 })
		s2 := sessions.get(t)
		if s2 == s {
			t.Fatal("same session")
		}
		waitFor(t, "connected again", 10*time.Second, func() bool { return h.clientInfo().State == "connected" })
		ping(t, h, gw, 99)
		srv.h.checkBalance()
	})

	// A network break: the client comes back with its cookie and gets the
	// same address; a client that said DISCONNECT has spent its cookie.
	t.Run("reconnect", func(t *testing.T) {
		h := newHarness(t)
		defer h.coll.Release()
		sessions := make(chanSessions, 4)
		var keep atomic.Value
		spawnClient(h, srv.clientSettings(t, false, ocPassword), &testHooks{onSession: sessions.put,
			cookie: func(c string) string { keep.Store(c); return c }})
		defer h.stop()
		s := sessions.get(t)
		waitFor(t, "connected", 10*time.Second, func() bool { return h.clientInfo().State == "connected" })
		addr := h.clientInfo().Address
		_ = s.conn.NetConn().Close()
		sessions.get(t)
		waitFor(t, "connected again", 10*time.Second, func() bool { return h.clientInfo().State == "connected" })
		if got := h.clientInfo().Address; got != addr {
			t.Errorf("address after the reconnect %v, want %v", got, addr)
		}
		ping(t, h, gw, 50)
		h.stop()
		waitFor(t, "the server to drop the peer", 5*time.Second, func() bool { return len(srv.serverInfo().Peers) == 0 })
		// The spent cookie is refused.
		c, err := tls.Dial("tcp", srv.listen.String(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = c.Write(cstp.AppendConnect(nil, cstp.ConnectRequest{Host: "x", Cookie: keep.Load().(string)}))
		line, _, err := cstp.ReadHead(bufio.NewReader(c))
		if err != nil || !strings.HasPrefix(line, "HTTP/1.1 401") {
			t.Errorf("CONNECT with a spent cookie: got %q %v, want a 401", line, err)
		}
	})

	t.Run("garbage", func(t *testing.T) {
		before := srv.serverInfo()
		// Not TLS at all.
		c, err := net.Dial("tcp", srv.listen.String())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write([]byte("GET / HTTP/1.0\r\n\r\n" + strings.Repeat("\x00garbage", 100)))
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _ = c.Read(make([]byte, 100))
		c.Close()
		// UDP garbage and ClientHellos naming no session.
		u, err := net.Dial("udp", srv.listen.String())
		if err != nil {
			t.Fatal(err)
		}
		hello := make([]byte, 13+12+2+32+1+32)
		hello[0], hello[1], hello[13] = 22, 0xfe, 1
		hello[13+12+2+32] = 32
		for range 50 {
			_, _ = u.Write([]byte("garbage"))
			_, _ = u.Write(hello)
		}
		u.Close()
		waitFor(t, "counted", 5*time.Second, func() bool {
			in := srv.serverInfo()
			return in.BadRequests > before.BadRequests && in.DTLSUnknownSessions >= before.DTLSUnknownSessions+100
		})
	})

	close(srv.echo)
	srv.h.stop()
	srv.h.coll.Release()
	if err := srv.h.pool.CheckLeaks(); err != nil {
		t.Error(err)
	}
}

func netipAddrPort(ip string, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr(ip), port)
}

// Certificate login on the server: a client certificate signed by
// client_ca_file logs in as its CN, without a password.
func TestServerCertificateLogin(t *testing.T) {
	dir := t.TempDir()
	pki := newPKI(t, dir, net.IPv4(127, 0, 0, 1), "carol")
	listen := netipAddrPort("127.0.0.1", freePort(t, "127.0.0.1"))
	set := mustParse(t, fmt.Sprintf("mode: server\nlisten: %s\ncert_file: %s\nkey_file: %s\nclient_ca_file: %s\npool: 192.168.78.0/24\n",
		listen, pki.certFile, pki.keyFile, pki.caFile)).Server
	srv := newHarness(t)
	srv.spawn(func(env protocols.Env) actor.Actor { return newServerActor("srv", set, env) })
	defer srv.stop()
	waitTCP(t, listen.String(), 5*time.Second)

	h := newHarness(t)
	spawnClient(h, mustParse(t, fmt.Sprintf("server: https://%s\ncert_file: %s\nkey_file: %s\nserver_ca_file: %s\n",
		listen, pki.clientCert, pki.clientKey, pki.caFile)).Client, nil)
	defer h.stop()
	waitFor(t, "DTLS up", 10*time.Second, func() bool { return h.clientInfo().Channel == "dtls" })
	in, _ := srv.stats.Info().(ServerInfo)
	if len(in.Peers) != 1 || in.Peers[0].User != "carol" {
		t.Errorf("server peers %+v, want one for carol", in.Peers)
	}
}

func TestClientHelloSessionID(t *testing.T) {
	hello := make([]byte, 13+12+2+32+1+4)
	hello[0], hello[1], hello[13] = 22, 0xfe, 1
	hello[13+12+2+32] = 4
	copy(hello[13+12+2+32+1:], []byte{9, 8, 7, 6})
	if id, ok := clientHelloSessionID(hello); !ok || string(id) != "\x09\x08\x07\x06" {
		t.Errorf("got % x %v", id, ok)
	}
	for _, bad := range [][]byte{nil, hello[:40], append([]byte{23}, hello[1:]...), hello[:len(hello)-1]} {
		if _, ok := clientHelloSessionID(bad); ok {
			t.Errorf("accepted % x", bad)
		}
	}
}

func FuzzClientHelloSessionID(f *testing.F) {
	f.Add([]byte{22, 0xfe, 0xfd})
	f.Fuzz(func(t *testing.T, b []byte) {
		if id, ok := clientHelloSessionID(b); ok && (len(id) == 0 || len(id) > 32) {
			t.Fatalf("session ID of %d bytes", len(id))
		}
	})
}
