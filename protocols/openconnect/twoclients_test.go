package openconnect

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/vishvananda/netns"

	"switchyard/packet"
	"switchyard/protocols"
)

// loopInjector stands in for the node between a server instance's inbound
// and outbound sides: every batch that arrives goes straight back to the
// server actor, which routes it to the client owning its destination (as
// the node's router would with a route of the pool to the instance).
type loopInjector struct{ to *actor.PID }

func (l *loopInjector) Receive(ctx actor.Context) {
	if b, ok := ctx.Message().(*packet.Batch); ok {
		ctx.Send(l.to, b)
	}
}

// inNetns runs f on an OS thread inside the named namespace; sockets made
// there stay in it.
func inNetns(t *testing.T, name string, f func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if err := netns.Set(ns); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			panic(err) // a thread left in another namespace must not be reused
		}
	}()
	f()
}

// Two openconnect clients in two namespaces get distinct addresses and
// reach each other through the server: ping, then 100 MiB over TCP checked
// with SHA-256.
func TestOpenconnectTwoClients(t *testing.T) {
	needRoot(t, "openconnect", "iptables", "ping")
	l := newLab(t)
	// A second namespace behind the first, NATed by it, so that both
	// clients reach the server's address.
	ns2 := l.ns + "b"
	run(t, "ip", "netns", "add", ns2)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns2).Run() })
	inner := fmt.Sprintf("10.96.%d.", l.subnet)
	run(t, "ip", "netns", "exec", l.ns, "ip", "link", "add", "ocC", "type", "veth", "peer", "name", "ocD")
	run(t, "ip", "netns", "exec", l.ns, "ip", "link", "set", "ocD", "netns", ns2)
	l.exec("ip", "addr", "add", inner+"1/24", "dev", "ocC")
	l.exec("ip", "link", "set", "ocC", "up")
	l.exec("sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward") // this namespace only
	l.exec("iptables", "-t", "nat", "-A", "POSTROUTING", "-s", inner+"0/24", "-j", "MASQUERADE")
	run(t, "ip", "netns", "exec", ns2, "ip", "addr", "add", inner+"2/24", "dev", "ocD")
	run(t, "ip", "netns", "exec", ns2, "ip", "link", "set", "ocD", "up")
	run(t, "ip", "netns", "exec", ns2, "ip", "link", "set", "lo", "up")
	run(t, "ip", "netns", "exec", ns2, "ip", "route", "add", "default", "via", inner+"1")
	l2 := &lab{t: t, ns: ns2, dir: l.dir, subnet: l.subnet}

	// The server, its inbound looped back to it.
	dir := t.TempDir()
	f := &serverFixture{dir: dir}
	f.pki = newPKI(t, dir, l.ip, ocUser)
	writeUsers(t, dir+"/users", map[string]string{ocUser: ocPassword})
	f.listen = netipAddrPort(l.ip.String(), freePort(t, l.ip.String()))
	f.set = mustParse(t, fmt.Sprintf("mode: server\nlisten: %s\ncert_file: %s\nkey_file: %s\nusers_file: %s\npool: 192.168.77.0/24\n",
		f.listen, f.pki.certFile, f.pki.keyFile, dir+"/users")).Server
	h := newHarness(t)
	f.h = h
	loop := &loopInjector{}
	h.injector = h.system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return loop }))
	h.spawn(func(env protocols.Env) actor.Actor { return newServerActor("srv", f.set, env) })
	loop.to = h.pid
	defer h.stop()
	waitTCP(t, f.listen.String(), 5*time.Second)
	url, pin := "https://"+f.listen.String(), FormatPin(PinOf(f.pki.serverCert))

	script := strings.Replace(vpncScript, "\t;;", "\tip route add 192.168.77.0/24 dev \"$TUNDEV\"\n\t;;", 1)
	ocA := startOpenconnectScript(t, l, url, pin, "ocA", script)
	ocB := startOpenconnectScript(t, l2, url, pin, "ocB", script)
	waitFor(t, "two peers on DTLS", 30*time.Second, func() bool {
		in := f.serverInfo()
		return len(in.Peers) == 2 && in.Peers[0].Channel == "dtls" && in.Peers[1].Channel == "dtls"
	})
	in := f.serverInfo()
	a, b := in.Peers[0].Address, in.Peers[1].Address
	if a == b {
		t.Fatalf("both clients got %v", a)
	}
	addrOf := func(ns string) string {
		out := run(t, "ip", "netns", "exec", ns, "ip", "-4", "-o", "addr", "show", "dev", "oc0")
		for _, p := range in.Peers {
			if strings.Contains(out, p.Address.String()+" ") {
				return p.Address.String()
			}
		}
		t.Fatalf("no pool address on oc0 in %s:\n%s", ns, out)
		return ""
	}
	waitFor(t, "both tun devices configured and up", 10*time.Second, func() bool {
		for _, ns := range []string{l.ns, ns2} {
			addr, _ := exec.Command("ip", "netns", "exec", ns, "ip", "-4", "-o", "addr", "show", "dev", "oc0").CombinedOutput()
			route, _ := exec.Command("ip", "netns", "exec", ns, "ip", "-4", "route", "show", "192.168.77.0/24").CombinedOutput()
			if !strings.Contains(string(addr), "192.168.77.") || !strings.Contains(string(route), "oc0") {
				return false
			}
		}
		return true
	})
	addrA, addrB := addrOf(l.ns), addrOf(ns2)
	var out []byte
	var err error
	for try := 0; try < 3; try++ { // the first echo may race the far end's configuration
		out, err = exec.Command("ip", "netns", "exec", l.ns, "ping", "-c", "3", "-i", "0.2", "-W", "2", addrB).CombinedOutput()
		if err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("ping %s → %s through the server: %v\n%s\nserver: %+v", addrA, addrB, err, out, f.serverInfo())
	}

	// 100 MiB from A to B over TCP, through both tunnels and the server.
	const size = 100 << 20
	var ln net.Listener
	inNetns(t, ns2, func() {
		ln, err = net.Listen("tcp", addrB+":5001")
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan [32]byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- [32]byte{}
			return
		}
		defer c.Close()
		hs := sha256.New()
		_, _ = io.Copy(hs, c)
		got <- [32]byte(hs.Sum(nil))
	}()
	var conn net.Conn
	inNetns(t, l.ns, func() {
		conn, err = net.DialTimeout("tcp", addrB+":5001", 10*time.Second)
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := sha256.New()
	start := time.Now()
	_ = conn.SetDeadline(time.Now().Add(3 * time.Minute))
	if _, err := io.Copy(io.MultiWriter(conn, hs), io.LimitReader(rand.Reader, size)); err != nil {
		t.Fatalf("send: %v", err)
	}
	conn.Close()
	var sum [32]byte
	select {
	case sum = <-got:
	case <-time.After(3 * time.Minute):
		t.Fatal("receiver did not finish")
	}
	elapsed := time.Since(start)
	if sum != [32]byte(hs.Sum(nil)) {
		t.Fatalf("SHA-256 differs after 100 MiB: got %x want %x", sum, hs.Sum(nil))
	}
	build := "normal build"
	if raceEnabled {
		build = "-race build"
	}
	t.Logf("100 MiB A→B through the server in %v: %.2f Gbit/s (indicative only: %s, two openconnect clients and the server on one shared 2-core machine)",
		elapsed.Round(time.Millisecond), float64(size*8)/elapsed.Seconds()/1e9, build)
	in = f.serverInfo()
	for _, p := range in.Peers {
		t.Logf("peer %s %s: rx %d (dtls %d) tx %d (dtls %d) packets", p.User, p.Address, p.RxPackets, p.RxDTLS, p.TxPackets, p.TxDTLS)
	}
	if s := h.recvStats.Snapshot(); s.InPackets != s.OutPackets+s.DroppedTotal() {
		t.Errorf("recv stats: in %d != out %d + drops %v", s.InPackets, s.OutPackets, s.Drops)
	}
	ocA.stop(t)
	ocB.stop(t)
}
