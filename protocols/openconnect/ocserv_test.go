package openconnect

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"switchyard/protocols"
	"switchyard/stats"
)

// ocservLab is a real ocserv in its own namespace.
type ocservLab struct {
	*lab
	pki    *testPKI
	ocserv *daemon
	url    string
	pwFile string // the right password, mode 0600
}

const (
	ocUser     = "alice"
	ocPassword = "correct horse"
	ocDPD      = 2 // seconds: DPD and DTLS DPD announced by ocserv, short so fallback is quick
)

// startOcserv starts ocserv 1.1.6 (Debian) in a fresh namespace, with plain
// (ocpasswd) login.
func startOcserv(t *testing.T) *ocservLab { return startOcservAuth(t, "") }

// startOcservAuth starts ocserv with the given auth lines and extra
// configuration lines.
func startOcservAuth(t *testing.T, auth string) *ocservLab { return startOcservConf(t, auth, "") }

// startOcservConf starts ocserv with the given auth lines (default: plain
// with an ocpasswd file, where the user is in group staff) and extra lines.
func startOcservConf(t *testing.T, auth, extra string) *ocservLab {
	needRoot(t, "ocserv", "ocpasswd", "iptables")
	l := newLab(t)
	o := &ocservLab{lab: l}
	o.pki = newPKI(t, l.dir, l.far, ocUser)
	passwd := filepath.Join(l.dir, "ocpasswd")
	cmd := exec.Command("ocpasswd", "-c", passwd, "-g", "staff", ocUser)
	cmd.Stdin = strings.NewReader(ocPassword + "\n" + ocPassword + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ocpasswd: %v: %s", err, out)
	}
	if auth == "" {
		auth = fmt.Sprintf(`auth = "plain[passwd=%s/ocpasswd]"`, l.dir)
	}
	conf := auth + fmt.Sprintf(`
listen-host = %[2]s
tcp-port = 4443
udp-port = 4443
run-as-user = nobody
run-as-group = nogroup
socket-file = %[1]s/ocserv.sock
occtl-socket-file = %[1]s/occtl.sock
pid-file = %[1]s/ocserv.pid
use-occtl = true
isolate-workers = false
server-cert = %[3]s
server-key = %[4]s
ca-cert = %[5]s
max-ban-score = 0
max-clients = 16
max-same-clients = 8
device = vpns
ipv4-network = 192.168.99.0
ipv4-netmask = 255.255.255.0
ipv6-network = fd97:%[6]d::/48
ipv6-subnet-prefix = 64
route = 10.97.%[6]d.0/255.255.255.0
route = 198.18.7.0/255.255.255.0
cisco-client-compat = true
dtls-legacy = true
try-mtu-discovery = false
dpd = %[7]d
mobile-dpd = %[7]d
keepalive = 30
cookie-timeout = 300
rekey-time = 86400
`+extra, l.dir, l.far, o.pki.certFile, o.pki.keyFile, o.pki.caFile, l.subnet, ocDPD)
	confPath := filepath.Join(l.dir, "ocserv.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	o.ocserv = l.start("ocserv.log", "ocserv", "-f", "-c", confPath, "-d", "3")
	waitTCP(t, net.JoinHostPort(l.far.String(), "4443"), 10*time.Second)
	o.url = "https://" + net.JoinHostPort(l.far.String(), "4443")
	o.pwFile = writeSecret(t, filepath.Join(l.dir, "alice.pw"), ocPassword+"\n")
	return o
}

// clientSettings are client settings for this ocserv.
func (o *ocservLab) clientSettings(t *testing.T, dtls bool, pwFile string) ClientSettings {
	t.Helper()
	yaml := fmt.Sprintf("server: %s\nusername: %s\npassword_file: %s\nserver_ca_file: %s\ndtls: %v\naccept_routes: true\n",
		o.url, ocUser, pwFile, o.pki.caFile, dtls)
	return mustParse(t, yaml).Client
}

// gateway returns ocserv's address on its vpns device (the tunnel's far end).
func (o *ocservLab) gateway(t *testing.T) [4]byte {
	t.Helper()
	var out string
	waitFor(t, "ocserv's vpns device", 10*time.Second, func() bool {
		out = o.exec("ip", "-o", "-4", "addr", "show")
		return strings.Contains(out, "vpns")
	})
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if strings.HasPrefix(f[1], "vpns") && f[i] == "inet" {
				a := netip.MustParseAddr(strings.Split(f[i+1], "/")[0])
				return a.As4()
			}
		}
	}
	t.Fatalf("no vpns address in:\n%s", out)
	return [4]byte{}
}

// gateway6 returns ocserv's global IPv6 address on its vpns device.
func (o *ocservLab) gateway6(t *testing.T) netip.Addr {
	t.Helper()
	var out string
	waitFor(t, "an IPv6 address on vpns", 10*time.Second, func() bool {
		out = o.exec("ip", "-o", "-6", "addr", "show", "scope", "global")
		return strings.Contains(out, "vpns")
	})
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if len(f) > 1 && strings.HasPrefix(f[1], "vpns") && f[i] == "inet6" {
				return netip.MustParseAddr(strings.Split(f[i+1], "/")[0])
			}
		}
	}
	t.Fatalf("no IPv6 on vpns in:\n%s", out)
	return netip.Addr{}
}

func spawnClient(h *harness, set ClientSettings, hooks *testHooks) {
	h.spawn(func(env protocols.Env) actor.Actor {
		a := newClientActor("oc", set, env)
		a.testHooks = hooks
		return a
	})
}

// ping sends an echo request to dst from the session's address and waits
// for the reply at the injector.
func ping(t *testing.T, h *harness, dst [4]byte, seq uint16) {
	t.Helper()
	src := h.clientInfo().Address.Addr().As4()
	before := h.coll.Count()
	const id = 0x5359
	h.send(icmpEcho(src, dst, id, seq, 84))
	waitFor(t, fmt.Sprintf("echo reply %d from %v", seq, netip.AddrFrom4(dst)), 10*time.Second, func() bool {
		if h.coll.Count() == before {
			return false
		}
		for _, p := range h.coll.Packets() {
			if isEchoReply(p, dst, id, seq) {
				return true
			}
		}
		return false
	})
}

func TestOcserv(t *testing.T) {
	o := startOcserv(t)

	t.Run("password_cstp", func(t *testing.T) {
		h := newHarness(t)
		defer h.coll.Release()
		spawnClient(h, o.clientSettings(t, false, o.pwFile), nil)
		defer h.stop()
		waitFor(t, "session up", 20*time.Second, func() bool { return h.clientInfo().State == "connected" })
		in := h.clientInfo()
		if !netip.MustParsePrefix("192.168.99.0/24").Contains(in.Address.Addr()) {
			t.Errorf("address %v, want one in 192.168.99.0/24", in.Address)
		}
		wantRoute := netip.MustParsePrefix(fmt.Sprintf("10.97.%d.0/24", o.subnet))
		found := false
		for _, r := range in.Routes {
			found = found || r == wantRoute
		}
		if !found {
			t.Errorf("routes %v, want %v among them", in.Routes, wantRoute)
		}
		if in.Channel != "cstp" {
			t.Errorf("channel %q, want cstp", in.Channel)
		}
		if !netip.MustParsePrefix(fmt.Sprintf("fd97:%d::/48", o.subnet)).Contains(in.Address6.Addr()) {
			t.Errorf("IPv6 address %v, want one in fd97:%d::/48", in.Address6, o.subnet)
		}
		gw := o.gateway(t)
		for seq := uint16(1); seq <= 3; seq++ {
			ping(t, h, gw, seq)
		}
		// IPv6 through the same tunnel, to ocserv's IPv6 on its vpns device.
		gw6 := o.gateway6(t)
		src6 := h.clientInfo().Address6.Addr()
		before := h.coll.Count()
		h.send(icmp6Echo(src6, gw6, 0x6666, 1, 100))
		waitFor(t, "ICMPv6 echo reply from "+gw6.String(), 10*time.Second, func() bool {
			if h.coll.Count() == before {
				return false
			}
			for _, p := range h.coll.Packets() {
				if isEcho6Reply(p, gw6, 0x6666, 1) {
					return true
				}
			}
			return false
		})
		if s := h.stats.Snapshot(); s.OutPackets < 3 {
			t.Errorf("out %d packets, want ≥ 3", s.OutPackets)
		}
		h.checkBalance()

		// Stopping sends a DISCONNECT: ocserv logs a user disconnection.
		h.stop()
		waitFor(t, "ocserv to log the DISCONNECT", 5*time.Second, func() bool {
			return strings.Contains(o.ocserv.logText(), "reason: user disconnected")
		})
		h.coll.Release()
		if err := h.pool.CheckLeaks(); err != nil {
			t.Error(err)
		}
	})

	t.Run("dtls_then_fallback", func(t *testing.T) {
		h := newHarness(t)
		defer h.coll.Release()
		spawnClient(h, o.clientSettings(t, true, o.pwFile), nil)
		defer h.stop()
		waitFor(t, "DTLS up", 20*time.Second, func() bool { return h.clientInfo().Channel == "dtls" })
		gw := o.gateway(t)
		for seq := uint16(1); seq <= 3; seq++ {
			ping(t, h, gw, seq)
		}
		in := h.clientInfo()
		if in.TxDTLS < 3 || in.RxDTLS < 3 {
			t.Errorf("over DTLS: tx %d rx %d packets, want ≥ 3 each (cstp tx %d rx %d)", in.TxDTLS, in.RxDTLS, in.TxCSTP, in.RxCSTP)
		}
		if !strings.Contains(in.DTLSCipher, "PSK") {
			t.Errorf("DTLS cipher %q, want a PSK suite", in.DTLSCipher)
		}
		if !strings.Contains(o.ocserv.logText(), "DTLS") {
			t.Error("ocserv's log does not mention DTLS")
		}

		// UDP to ocserv blocked: DPD finds DTLS dead and data falls back to
		// CSTP.
		rule := []string{"INPUT", "-p", "udp", "--dport", "4443", "-j", "DROP"}
		o.exec(append([]string{"iptables", "-I"}, rule...)...)
		defer o.exec(append([]string{"iptables", "-D"}, rule...)...)
		waitFor(t, "DTLS declared dead", time.Duration(ocDPD*(dpdDeadFactor+2))*time.Second+5*time.Second,
			func() bool { return h.clientInfo().Channel == "cstp" })
		rxCSTP := h.clientInfo().RxCSTP
		for seq := uint16(10); seq <= 12; seq++ {
			ping(t, h, gw, seq)
		}
		in = h.clientInfo()
		if in.RxCSTP < rxCSTP+3 || in.DTLSDowns < 1 {
			t.Errorf("after the fallback: cstp rx %d (was %d), dtls downs %d; want 3 more over CSTP and ≥ 1 down",
				in.RxCSTP, rxCSTP, in.DTLSDowns)
		}
		h.checkBalance()
	})

	// Many packets at once, batch after batch: over CSTP every echo comes
	// back, replies arriving in batches of more than one packet; over DTLS
	// (UDP, where bursts may be lost on the way) nearly every one.
	t.Run("bulk", func(t *testing.T) {
		for _, dtls := range []bool{false, true} {
			t.Run(fmt.Sprintf("dtls=%v", dtls), func(t *testing.T) {
				h := newHarness(t)
				defer h.coll.Release()
				spawnClient(h, o.clientSettings(t, dtls, o.pwFile), nil)
				defer h.stop()
				channel := "cstp"
				if dtls {
					channel = "dtls"
				}
				waitFor(t, "channel "+channel, 20*time.Second, func() bool { return h.clientInfo().Channel == channel })
				gw := o.gateway(t)
				src := h.clientInfo().Address.Addr().As4()
				const batches, per = 20, 64
				for i := range batches {
					pkts := make([][]byte, per)
					for j := range pkts {
						pkts[j] = icmpEcho(src, gw, 0x4242, uint16(i*per+j), 1300)
					}
					h.send(pkts...)
					time.Sleep(10 * time.Millisecond)
				}
				want := batches * per
				if dtls {
					want = batches * per * 95 / 100
				}
				deadline := time.Now().Add(15 * time.Second)
				for h.coll.Count() < want && time.Now().Before(deadline) {
					time.Sleep(20 * time.Millisecond)
				}
				time.Sleep(200 * time.Millisecond)
				got := 0
				for _, p := range h.coll.Packets() {
					if len(p) == 1300 && p[20] == 0 {
						got++
					}
				}
				sizes := h.coll.BatchSizes()
				largest := 0
				for _, n := range sizes {
					largest = max(largest, n)
				}
				t.Logf("%d of %d echo replies in %d batches (largest %d); out %d packets, recv drops %v", got, batches*per,
					len(sizes), largest, h.stats.Snapshot().OutPackets, h.recvStats.Snapshot().Drops)
				if got < want {
					t.Errorf("%d replies, want ≥ %d of %d", got, want, batches*per)
					t.Logf("ocserv log:\n%s", tail(o.ocserv.logText(), 30))
				}
				if !dtls && largest < 2 {
					t.Errorf("CSTP replies came one packet per batch (%d batches)", len(sizes))
				}
				h.checkBalance()
			})
		}
	})

	t.Run("wrong_password", func(t *testing.T) {
		h := newHarness(t)
		bad := writeSecret(t, filepath.Join(o.dir, "wrong.pw"), "not the password\n")
		spawnClient(h, o.clientSettings(t, false, bad), nil)
		waitFor(t, "a refused login", 20*time.Second, func() bool { return h.clientInfo().AuthFailures >= 1 })
		in := h.clientInfo()
		if in.State != "auth_failed" {
			t.Errorf("state %q, want auth_failed", in.State)
		}
		if n := h.logs.FilterMessage("openconnect login refused").Len(); n < 1 {
			t.Errorf("%d log lines about the refused login, want ≥ 1", n)
		}
		// Packets sent meanwhile are dropped and counted.
		h.send(icmpEcho([4]byte{192, 168, 99, 9}, [4]byte{192, 168, 99, 1}, 1, 1, 60))
		waitFor(t, "a send_error drop", 5*time.Second, func() bool { return h.stats.Dropped(stats.SendError) == 1 })
		h.stop()
		h.coll.Release()
	})

	t.Run("reconnect", func(t *testing.T) {
		h := newHarness(t)
		defer h.coll.Release()
		var sessions chanSessions = make(chan *session, 8)
		var expire atomic.Bool
		spawnClient(h, o.clientSettings(t, false, o.pwFile), &testHooks{onSession: sessions.put,
			cookie: func(c string) string {
				if expire.Swap(false) {
					return "expired" + c[len(c)/2:]
				}
				return c
			}})
		defer h.stop()
		s1 := sessions.get(t)
		gw := o.gateway(t)
		ping(t, h, gw, 1)

		// A network break: the TLS connection dies under the session. The
		// client reconnects with its cookie, without a new login.
		logins := h.logs.FilterMessage("openconnect login refused").Len()
		_ = s1.conn.NetConn().Close()
		s2 := sessions.get(t)
		if s2 == s1 {
			t.Fatal("same session")
		}
		waitFor(t, "connected again", 10*time.Second, func() bool { return h.clientInfo().State == "connected" })
		ping(t, h, gw, 2)
		if in := h.clientInfo(); in.Reconnects != 1 {
			t.Errorf("reconnects %d, want 1", in.Reconnects)
		}
		if h.logs.FilterMessage("openconnect login refused").Len() != logins {
			t.Error("a login was refused")
		}

		// The gateway ends the session (occtl disconnect): the cookie is
		// spent, so the client logs in afresh.
		o.exec("occtl", "-s", filepath.Join(o.dir, "occtl.sock"), "disconnect", "user", ocUser)
		s3 := sessions.get(t)
		if s3 == s2 {
			t.Fatal("same session")
		}
		waitFor(t, "connected again", 10*time.Second, func() bool { return h.clientInfo().State == "connected" })
		ping(t, h, gw, 3)

		// A break, and the cookie no longer good: ocserv refuses the
		// CONNECT (with a 503, as when overloaded), twice, and the client
		// logs in afresh.
		expire.Store(true)
		_ = s3.conn.NetConn().Close()
		s4 := sessions.get(t)
		if s4 == s3 || expire.Load() {
			t.Fatal("no reconnect with the expired cookie")
		}
		waitFor(t, "connected again", 10*time.Second, func() bool { return h.clientInfo().State == "connected" })
		ping(t, h, gw, 4)
		if n := h.logs.FilterMessage("openconnect connect failed").Len(); n < 1 {
			t.Error("the refused CONNECT was not logged")
		}
		h.checkBalance()
	})
}

type chanSessions chan *session

func (c chanSessions) put(s *session) { c <- s }
func (c chanSessions) get(t *testing.T) *session {
	t.Helper()
	select {
	case s := <-c:
		return s
	case <-time.After(20 * time.Second):
		t.Fatal("no session within 20s")
		return nil
	}
}

func mustParse(t *testing.T, yaml string) Settings {
	t.Helper()
	s, err := configSettings(yaml)
	if err != nil {
		t.Fatal(err)
	}
	v, err := parse(s)
	if err != nil {
		t.Fatalf("parse:\n%s\n%v", yaml, err)
	}
	return v.(Settings)
}

var _ = stats.Malformed

// Certificate login: ocserv with auth = "certificate", the user from the
// client certificate's CN.
func TestOcservCertificate(t *testing.T) {
	o := startOcservAuth(t, "auth = \"certificate\"\ncert-user-oid = 2.5.4.3")
	h := newHarness(t)
	defer h.coll.Release()
	yaml := fmt.Sprintf("server: %s\ncert_file: %s\nkey_file: %s\nserver_ca_file: %s\n",
		o.url, o.pki.clientCert, o.pki.clientKey, o.pki.caFile)
	spawnClient(h, mustParse(t, yaml).Client, nil)
	defer h.stop()
	waitFor(t, "DTLS up", 20*time.Second, func() bool { return h.clientInfo().Channel == "dtls" })
	gw := o.gateway(t)
	for seq := uint16(1); seq <= 3; seq++ {
		ping(t, h, gw, seq)
	}
	if !strings.Contains(o.ocserv.logText(), ocUser) {
		t.Errorf("ocserv's log does not name the certificate's user %q", ocUser)
	}
	h.checkBalance()
}

// Auth groups: ocserv offers a group <select>; the client picks the one
// its settings name, and ocserv logs the user in with it.
func TestOcservGroup(t *testing.T) {
	o := startOcservConf(t, "", "select-group = ops\nselect-group = staff\nauto-select-group = false\n")
	h := newHarness(t)
	defer h.coll.Release()
	set := o.clientSettings(t, false, o.pwFile)
	set.Group = "staff"
	spawnClient(h, set, nil)
	defer h.stop()
	waitFor(t, "session up", 20*time.Second, func() bool { return h.clientInfo().State == "connected" })
	ping(t, h, o.gateway(t), 1)
	for _, line := range strings.Split(o.ocserv.logText(), "\n") {
		if strings.Contains(line, "staff") {
			t.Logf("%s", line)
		}
	}
	if log := o.ocserv.logText(); !strings.Contains(log, "of group: 'staff'") {
		t.Errorf("ocserv's log does not say the user logged in with group staff:\n%s", tail(log, 30))
	}

	// A group the user is not in is refused.
	h2 := newHarness(t)
	set.Group = "ops"
	spawnClient(h2, set, nil)
	waitFor(t, "the refusal", 20*time.Second, func() bool { return h2.clientInfo().AuthFailures >= 1 })
	h2.stop()
}
