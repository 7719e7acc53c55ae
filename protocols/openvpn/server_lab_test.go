package openvpn

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"switchyard/internal/lab"
)

// serverLab is a lab whose side a runs a Switchyard openvpn server.
type serverLab struct {
	*lab.Lab
	pki    *pki
	tcKey  string
	daemon *lab.Daemon
}

func startSwitchyardServer(t *testing.T, ctx context.Context) *serverLab {
	t.Helper()
	daemon, tools := binaries(t)
	l, err := lab.New(ctx, lab.Options{Binary: daemon, Tools: tools})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	o := &serverLab{Lab: l}
	o.pki = newPKI(t, l.Dir, "ours", net.IP(l.A.Veth4.AsSlice()))
	o.tcKey = filepath.Join(l.Dir, "tc.key")
	if out, err := exec.Command("openvpn", "--genkey", "tls-crypt", o.tcKey).CombinedOutput(); err != nil {
		t.Fatalf("openvpn --genkey: %v: %s", err, out)
	}
	_ = os.Chmod(o.tcKey, 0o600)
	d, err := l.StartDaemonYAML(ctx, l.A, serverYAMLFor(l.A, o.pki.serverCert, o.pki.serverKey, o.pki.ca, o.tcKey))
	if err != nil {
		t.Fatal(err)
	}
	o.daemon = d
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server daemon log:\n%s", d.LogTail())
		}
	})
	return o
}

func serverInfo(t *testing.T, ctx context.Context, d *lab.Daemon) ServerInfo {
	t.Helper()
	snap, err := d.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	row, ok := lab.FindActor(snap, "vpn")
	if !ok {
		t.Fatal("no stats row vpn")
	}
	var in ServerInfo
	b, _ := json.Marshal(row.Info)
	_ = json.Unmarshal(b, &in)
	return in
}

// transferAndPing pings both ways and moves 100 MiB from b to a.
func transferAndPing(t *testing.T, ctx context.Context, l *lab.Lab) {
	t.Helper()
	if err := l.PingUntil(ctx, l.B, l.A.TUN4, 20*time.Second); err != nil {
		t.Fatalf("ping b→a: %v", err)
	}
	if err := l.PingUntil(ctx, l.A, l.B.TUN4, 10*time.Second); err != nil {
		t.Fatalf("ping a→b: %v", err)
	}
	tr, err := l.TCPTransfer(ctx, l.B, l.A, 5201, 100<<20, 0)
	if err != nil {
		t.Fatalf("transfer: %v", err)
	}
	if !tr.Match() {
		t.Fatalf("transfer mismatch: sent %+v received %+v", tr.Sent, tr.Received)
	}
	t.Logf("100 MiB b→a in %.1f s (%.2f Gbit/s, race-enabled daemon)", tr.Received.Seconds, tr.Gbps())
}

// TestOpenVPNClientToServer: a real openvpn 2.6 client ↔ the Switchyard
// server: ping both ways, 100 MiB sha256-checked, per-peer stats.
func TestOpenVPNClientToServer(t *testing.T) {
	needLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	o := startSwitchyardServer(t, ctx)
	logPath := filepath.Join(o.Dir, "openvpn-client.log")
	conf := fmt.Sprintf(`client
dev tun
proto udp4
remote %s %d
nobind
ca %s
cert %s
key %s
remote-cert-tls server
tls-crypt %s
data-ciphers AES-256-GCM:CHACHA20-POLY1305
disable-dco
tun-mtu 1420
verb 3
log %s
`, o.A.Veth4, ovpnPort, o.pki.ca, o.pki.clientCert, o.pki.clientKey, o.tcKey, logPath)
	confPath := filepath.Join(o.Dir, "client.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd, err := o.Command(context.Background(), o.B, "openvpn", "--config", confPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		o.Done(cmd)
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("openvpn client log:\n%s", tailLines(string(b), 60))
		}
	})
	transferAndPing(t, ctx, o.Lab)
	in := serverInfo(t, ctx, o.daemon)
	if len(in.Peers) != 1 || in.Peers[0].Renegotiations == 0 {
		t.Fatalf("peers %+v, want one", in.Peers)
	}
	p := in.Peers[0]
	if got, want := p.Address, o.B.TUN4.String(); got != want {
		t.Errorf("peer address %s, want %s", got, want)
	}
	if p.RxPackets == 0 || p.TxPackets == 0 {
		t.Errorf("per-peer counters did not move: %+v", p)
	}
	t.Logf("server info: %+v", in)
}

// TestSwitchyardToSwitchyard: the Switchyard client ↔ the Switchyard server.
func TestSwitchyardToSwitchyard(t *testing.T) {
	needLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	o := startSwitchyardServer(t, ctx)
	d, err := o.StartDaemonYAML(ctx, o.B, clientYAMLFor(o.B, netipAddrPort(o.A), o.pki.clientCert, o.pki.clientKey, o.pki.ca, o.tcKey))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("client daemon log:\n%s", d.LogTail())
		}
	})
	in := waitConnected(t, ctx, d, 20*time.Second)
	if got, want := in.Address, o.B.TUN4.String()+"/24"; got != want {
		t.Errorf("pushed address %q, want %q", got, want)
	}
	transferAndPing(t, ctx, o.Lab)
	// The server renegotiates every 5 s (reneg_sec: 5): the transfer above
	// crossed at least one key change.
	in, _ = info(t, ctx, d)
	sv := serverInfo(t, ctx, o.daemon)
	if len(sv.Peers) != 1 || sv.Peers[0].Renegotiations == 0 {
		t.Errorf("no renegotiation seen by the server: %+v", sv)
	}
	if in.Reconnects != 0 {
		t.Errorf("client reconnected %d times (%s)", in.Reconnects, in.LastError)
	}
	t.Logf("client %+v; server %+v", in, sv)
}

func netipAddrPort(s *lab.Side) netip.AddrPort { return netip.AddrPortFrom(s.Veth4, ovpnPort) }
