package openconnect

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// vpncScript configures openconnect's tun device in its namespace: the
// address with the server's gateway as peer, nothing else.
const vpncScript = `#!/bin/sh
case "$reason" in
connect)
	ip addr add "$INTERNAL_IP4_ADDRESS/32" peer 192.168.77.1 dev "$TUNDEV"
	ip link set "$TUNDEV" up mtu "${INTERNAL_IP4_MTU:-1400}"
	;;
esac
exit 0
`

// startOpenconnect runs the real openconnect client in l's namespace
// against the server at url.
func startOpenconnect(t *testing.T, l *lab, url, pin, password, name string) *daemon {
	t.Helper()
	return startOC(t, l, url, pin, password, name, name, vpncScript)
}

// startOpenconnectScript runs openconnect with interface oc0 and script,
// logging to name.log.
func startOpenconnectScript(t *testing.T, l *lab, url, pin, name, script string) *daemon {
	t.Helper()
	return startOC(t, l, url, pin, ocPassword, name, "oc0", script)
}

func startOC(t *testing.T, l *lab, url, pin, password, name, iface, script string) *daemon {
	t.Helper()
	path := filepath.Join(l.dir, name+"-script")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return l.startInput(name+".log", password+"\n", "openconnect", "--user="+ocUser, "--passwd-on-stdin",
		"--servercert", pin, "--script="+path, "--interface="+iface, "--non-inter", url)
}

// The real openconnect client against the Switchyard server.
func TestOpenconnectClient(t *testing.T) {
	needRoot(t, "openconnect")
	l := newLab(t)
	srv := startServer(t, l.ip.String(), "")
	defer func() {
		close(srv.echo)
		srv.h.stop()
		srv.h.coll.Release()
	}()
	url := "https://" + srv.listen.String()
	pin := FormatPin(PinOf(srv.pki.serverCert))

	oc := startOpenconnect(t, l, url, pin, ocPassword, "oc0")
	waitFor(t, "openconnect's session", 20*time.Second, func() bool { return len(srv.serverInfo().Peers) == 1 })
	waitFor(t, "oc0 configured and up", 10*time.Second, func() bool {
		out, _ := exec.Command("ip", "netns", "exec", l.ns, "ip", "-4", "-o", "addr", "show", "dev", "oc0").CombinedOutput()
		link, _ := exec.Command("ip", "netns", "exec", l.ns, "ip", "-o", "link", "show", "dev", "oc0").CombinedOutput()
		return strings.Contains(string(out), "192.168.77.") && strings.Contains(string(link), ",UP")
	})
	waitFor(t, "DTLS up", 15*time.Second, func() bool {
		in := srv.serverInfo()
		return len(in.Peers) == 1 && in.Peers[0].Channel == "dtls"
	})
	out, err := exec.Command("ip", "netns", "exec", l.ns, "ping", "-c", "5", "-i", "0.2", "-W", "2", "192.168.77.1").CombinedOutput()
	if err != nil {
		t.Fatalf("ping through the tunnel: %v\n%s", err, out)
	}
	in := srv.serverInfo()
	p := in.Peers[0]
	if p.User != ocUser || p.RxDTLS < 5 || p.TxDTLS < 5 {
		t.Errorf("peer %+v: want user %s and ≥ 5 packets each way over DTLS", p, ocUser)
	}
	for _, line := range strings.Split(oc.logText(), "\n") {
		if strings.Contains(line, "DTLS") {
			t.Logf("openconnect: %s", line)
		}
	}
	if !strings.Contains(oc.logText(), "DTLS") {
		t.Errorf("openconnect's log does not mention DTLS:\n%s", tail(oc.logText(), 20))
	}
	srv.h.checkBalance()

	// A wrong password is refused and counted; the first client keeps its
	// session.
	bad := startOpenconnect(t, l, url, pin, "wrong", "oc1")
	waitFor(t, "the refused login", 15*time.Second, func() bool { return srv.serverInfo().AuthFailures >= 1 })
	select {
	case <-bad.done:
	case <-time.After(10 * time.Second):
		t.Error("openconnect with a wrong password is still running")
	}
	out, err = exec.Command("ip", "netns", "exec", l.ns, "ping", "-c", "2", "-i", "0.2", "-W", "2", "192.168.77.1").CombinedOutput()
	if err != nil {
		t.Fatalf("ping after the refused login: %v\n%s", err, out)
	}

	// UDP blocked in the client's namespace: openconnect's DTLS dies, it
	// falls back to CSTP, and so does the server for this client.
	for _, chain := range []string{"INPUT", "OUTPUT"} {
		rule := []string{chain, "-p", "udp", "-j", "DROP"}
		l.exec(append([]string{"iptables", "-I"}, rule...)...)
		defer l.exec(append([]string{"iptables", "-D"}, rule...)...)
	}
	rxCSTP := srv.serverInfo().Peers[0].RxPackets - srv.serverInfo().Peers[0].RxDTLS
	waitFor(t, "the server back on CSTP for this client", 30*time.Second, func() bool {
		_ = exec.Command("ip", "netns", "exec", l.ns, "ping", "-c", "1", "-W", "1", "192.168.77.1").Run()
		in := srv.serverInfo()
		return len(in.Peers) == 1 && in.Peers[0].Channel == "cstp"
	})
	out, err = exec.Command("ip", "netns", "exec", l.ns, "ping", "-c", "3", "-i", "0.2", "-W", "2", "192.168.77.1").CombinedOutput()
	if err != nil {
		t.Fatalf("ping over CSTP after UDP was blocked: %v\n%s", err, out)
	}
	if p := srv.serverInfo().Peers[0]; p.RxPackets-p.RxDTLS < rxCSTP+3 {
		t.Errorf("peer %+v: want ≥ 3 more packets over CSTP", p)
	}

	// openconnect stopped (SIGTERM) says goodbye: the server drops the peer.
	oc.stop(t)
	waitFor(t, "the peer gone", 10*time.Second, func() bool { return len(srv.serverInfo().Peers) == 0 })
	if t.Failed() {
		t.Logf("openconnect log:\n%s", tail(oc.logText(), 40))
	}
}

// DPD on the server: a real openconnect that stops answering (SIGSTOP) is
// declared dead after dpdDeadFactor DPD intervals (dpd: 2s) and dropped;
// a second client connected meanwhile keeps its session.
func TestServerDPD(t *testing.T) {
	needRoot(t, "openconnect")
	l := newLab(t)
	srv := startServer(t, l.ip.String(), "")
	defer func() {
		close(srv.echo)
		srv.h.stop()
		srv.h.coll.Release()
	}()
	url := "https://" + srv.listen.String()
	pin := FormatPin(PinOf(srv.pki.serverCert))

	frozen := startOpenconnect(t, l, url, pin, ocPassword, "oc0")
	waitFor(t, "the first session", 20*time.Second, func() bool { return len(srv.serverInfo().Peers) == 1 })
	alive := startOpenconnect(t, l, url, pin, ocPassword, "oc1")
	waitFor(t, "the second session", 20*time.Second, func() bool { return len(srv.serverInfo().Peers) == 2 })

	if err := frozen.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = frozen.cmd.Process.Signal(syscall.SIGCONT) }()
	start := time.Now()
	dead := 2 * time.Second * dpdDeadFactor
	waitFor(t, "the silent client dropped", dead+10*time.Second, func() bool { return len(srv.serverInfo().Peers) == 1 })
	if took := time.Since(start); took < dead-2*time.Second {
		t.Errorf("dropped after %v, before %d DPD intervals of 2s", took, dpdDeadFactor)
	}
	if n := srv.h.logs.FilterMessage("openconnect: client silent, closing").Len(); n != 1 {
		t.Errorf("%d log lines about the silent client, want 1", n)
	}
	// The other client still has its session and traffic.
	out, err := exec.Command("ip", "netns", "exec", l.ns, "ping", "-c", "2", "-i", "0.2", "-W", "2", "-I", "oc1", "192.168.77.1").CombinedOutput()
	if err != nil {
		t.Fatalf("ping from the live client: %v\n%s", err, out)
	}
	_ = alive
}
