package openvpn

// Namespace tests with real peers, on internal/lab's two-namespace
// topology: the Switchyard daemon (built with -race) and openvpn 2.6
// (lab.StartOpenVPNServer / StartOpenVPNClient, configs as in PEERS.md).
// The tunnel is the lab's TUN subnet: side a is 10.90.0.1, side b
// 10.90.0.2, whichever end is the server.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"switchyard/internal/lab"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// binaries builds the race-enabled daemon and the lab tools once.
func binaries(t *testing.T) (daemon, tools string) {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "ovpn-bin-")
		if buildErr != nil {
			return
		}
		for _, b := range [][]string{
			{"build", "-race", "-o", filepath.Join(buildDir, "switchyard"), "../../cmd/switchyard"},
			{"build", "-o", filepath.Join(buildDir, "switchyard-lab"), "../../cmd/switchyard-lab"},
		} {
			if out, err := exec.Command("go", b...).CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go %v: %v\n%s", b, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "switchyard"), filepath.Join(buildDir, "switchyard-lab")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// needLab skips t (in the form `make test` lists) without root, netns or
// openvpn.
func needLab(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("namespace test (-short)")
	}
	if err := lab.Preflight(); err != nil {
		t.Skip(err.Error())
	}
	if err := lab.NeedTool("openvpn"); err != nil {
		t.Skip(err.Error())
	}
}

// newLab builds a lab and OpenVPN files whose server certificate names
// serverSide's veth address.
func newLab(t *testing.T, ctx context.Context, serverSide func(*lab.Lab) *lab.Side) (*lab.Lab, lab.OpenVPNFiles) {
	t.Helper()
	daemon, tools := binaries(t)
	l, err := lab.New(ctx, lab.Options{Binary: daemon, Tools: tools})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	f, err := l.WriteOpenVPNFiles("ours", serverSide(l).Veth4)
	if err != nil {
		t.Fatal(err)
	}
	return l, f
}

func sideA(l *lab.Lab) *lab.Side { return l.A }
func sideB(l *lab.Lab) *lab.Side { return l.B }

func remoteOf(s *lab.Side) netip.AddrPort { return netip.AddrPortFrom(s.Veth4, lab.OpenVPNPort) }

// startPeer takes what lab.StartOpenVPNServer/Client returned: it fails t
// on an error, else stops the process at cleanup and shows its log if t
// failed.
func startPeer(t *testing.T) func(*lab.OpenVPNProc, error) *lab.OpenVPNProc {
	return func(p *lab.OpenVPNProc, err error) *lab.OpenVPNProc {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			p.Stop()
			if t.Failed() {
				t.Logf("%s:\n%s", p.Log, p.LogTail())
			}
		})
		return p
	}
}

func startDaemon(t *testing.T, ctx context.Context, l *lab.Lab, side *lab.Side, yaml string) *lab.Daemon {
	t.Helper()
	d, err := l.StartDaemonYAML(ctx, side, yaml)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("daemon %s log:\n%s", side.Label, d.LogTail())
		}
	})
	return d
}

// rowInfo decodes the stats info of the instance vpn into v.
func rowInfo(t *testing.T, ctx context.Context, d *lab.Daemon, v any) {
	t.Helper()
	snap, err := d.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	row, ok := lab.FindActor(snap, "vpn")
	if !ok {
		t.Fatal("no stats row vpn")
	}
	b, _ := json.Marshal(row.Info)
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

func clientState(t *testing.T, ctx context.Context, d *lab.Daemon) clientInfo {
	var in clientInfo
	rowInfo(t, ctx, d, &in)
	return in
}

func serverState(t *testing.T, ctx context.Context, d *lab.Daemon) ServerInfo {
	var in ServerInfo
	rowInfo(t, ctx, d, &in)
	return in
}

func waitConnected(t *testing.T, ctx context.Context, d *lab.Daemon, within time.Duration) clientInfo {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		in := clientState(t, ctx, d)
		if in.State == "connected" {
			return in
		}
		if time.Now().After(deadline) {
			t.Fatalf("not connected after %v: %+v", within, in)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// pingBoth pings a→b and b→a through the tunnel.
func pingBoth(t *testing.T, ctx context.Context, l *lab.Lab) {
	t.Helper()
	if err := l.PingUntil(ctx, l.A, l.B.TUN4, 20*time.Second); err != nil {
		t.Fatalf("ping a→b: %v", err)
	}
	if err := l.PingUntil(ctx, l.B, l.A.TUN4, 10*time.Second); err != nil {
		t.Fatalf("ping b→a: %v", err)
	}
}

// transfer moves 100 MiB from one side to the other and checks its sha256.
func transfer(t *testing.T, ctx context.Context, l *lab.Lab, from, to *lab.Side) {
	t.Helper()
	tr, err := l.TCPTransfer(ctx, from, to, 5201, 100<<20, 0)
	if err != nil {
		t.Fatalf("transfer: %v", err)
	}
	if !tr.Match() {
		t.Fatalf("transfer mismatch: sent %+v received %+v", tr.Sent, tr.Received)
	}
	t.Logf("100 MiB %s→%s in %.1f s (%.2f Gbit/s, race-enabled daemon)", from.Label, to.Label, tr.Received.Seconds, tr.Gbps())
}

// TestOpenVPNServer: the Switchyard client (side a) ↔ an openvpn 2.6 server
// (side b): ping both ways, a 100 MiB sha256-checked TCP transfer that spans
// the server's renegotiation (reneg-sec 10), ping after it.
func TestOpenVPNServer(t *testing.T) {
	needLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	l, f := newLab(t, ctx, sideB)
	startPeer(t)(l.StartOpenVPNServer(l.B, l.A, f, "reneg-sec 10\nkeepalive 2 20"))
	d := startDaemon(t, ctx, l, l.A, lab.OpenVPNClientYAML(l.A, remoteOf(l.B), f, "info"))
	up := time.Now()
	in := waitConnected(t, ctx, d, 20*time.Second)
	if got, want := in.Address, l.A.TUN4.String()+"/24"; got != want {
		t.Errorf("pushed address %q, want %q", got, want)
	}
	pingBoth(t, ctx, l)
	// Start the transfer so that it spans the renegotiation at 10 s.
	if w := time.Until(up.Add(7 * time.Second)); w > 0 {
		time.Sleep(w)
	}
	transfer(t, ctx, l, l.A, l.B)
	if w := time.Until(up.Add(12 * time.Second)); w > 0 {
		time.Sleep(w)
	}
	in = clientState(t, ctx, d)
	if in.Renegotiations == 0 {
		t.Errorf("no renegotiation seen: %+v", in)
	}
	if in.Reconnects != 0 {
		t.Errorf("reconnected %d times (%s)", in.Reconnects, in.LastError)
	}
	pingBoth(t, ctx, l)
	t.Logf("client: %+v", in)
}

// TestOpenVPNWrongCA: a client certificate from another CA is refused by
// the openvpn server (it logs the verify error); the client never comes up.
func TestOpenVPNWrongCA(t *testing.T) {
	needLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l, f := newLab(t, ctx, sideB)
	srv := startPeer(t)(l.StartOpenVPNServer(l.B, l.A, f, ""))
	other, err := l.WriteOpenVPNFiles("other", netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	wrong := f
	wrong.ClientCert, wrong.ClientKey = other.ClientCert, other.ClientKey
	d := startDaemon(t, ctx, l, l.A, lab.OpenVPNClientYAML(l.A, remoteOf(l.B), wrong, "info"))
	time.Sleep(6 * time.Second)
	in := clientState(t, ctx, d)
	if in.State == "connected" {
		t.Fatalf("a client with a certificate from another CA came up: %+v", in)
	}
	b, _ := os.ReadFile(srv.Log)
	if !strings.Contains(string(b), "VERIFY ERROR") && !strings.Contains(string(b), "certificate verify failed") {
		t.Errorf("the server log shows no verification failure:\n%s", srv.LogTail())
	}
	t.Logf("client state %q, last error %q", in.State, in.LastError)
}

// TestOpenVPNClientToServer: an openvpn 2.6 client (side b) ↔ the
// Switchyard server (side a, reneg_sec 5): ping both ways, 100 MiB across
// the server's renegotiations, per-peer counters.
func TestOpenVPNClientToServer(t *testing.T) {
	needLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	l, f := newLab(t, ctx, sideA)
	d := startDaemon(t, ctx, l, l.A, lab.OpenVPNServerYAML(l.A, f, "info", "reneg_sec: 5"))
	startPeer(t)(l.StartOpenVPNClient(l.B, remoteOf(l.A), f, ""))
	pingBoth(t, ctx, l)
	transfer(t, ctx, l, l.B, l.A)
	in := serverState(t, ctx, d)
	if len(in.Peers) != 1 {
		t.Fatalf("peers %+v, want one", in.Peers)
	}
	p := in.Peers[0]
	if got, want := p.Address, l.B.TUN4.String(); got != want {
		t.Errorf("peer address %s, want %s", got, want)
	}
	if p.RxPackets == 0 || p.TxPackets == 0 || p.Renegotiations == 0 {
		t.Errorf("per-peer counters or renegotiations did not move: %+v", p)
	}
	t.Logf("server: %+v", in)
}

// TestSwitchyardToSwitchyard: the Switchyard client (side b) ↔ the
// Switchyard server (side a, reneg_sec 5).
func TestSwitchyardToSwitchyard(t *testing.T) {
	needLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	l, f := newLab(t, ctx, sideA)
	srv := startDaemon(t, ctx, l, l.A, lab.OpenVPNServerYAML(l.A, f, "info", "reneg_sec: 5"))
	d := startDaemon(t, ctx, l, l.B, lab.OpenVPNClientYAML(l.B, remoteOf(l.A), f, "info"))
	in := waitConnected(t, ctx, d, 20*time.Second)
	if got, want := in.Address, l.B.TUN4.String()+"/24"; got != want {
		t.Errorf("pushed address %q, want %q", got, want)
	}
	pingBoth(t, ctx, l)
	transfer(t, ctx, l, l.B, l.A)
	in = clientState(t, ctx, d)
	sv := serverState(t, ctx, srv)
	if len(sv.Peers) != 1 || sv.Peers[0].Renegotiations == 0 {
		t.Errorf("no renegotiation seen by the server: %+v", sv)
	}
	if in.Reconnects != 0 {
		t.Errorf("client reconnected %d times (%s)", in.Reconnects, in.LastError)
	}
	t.Logf("client %+v; server %+v", in, sv)
}

// TestOpenVPNChaCha: the Switchyard client offering only
// CHACHA20-POLY1305 ↔ the openvpn 2.6 server: the server picks it; ping
// both ways and a sha256-checked transfer.
func TestOpenVPNChaCha(t *testing.T) {
	needLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l, f := newLab(t, ctx, sideB)
	startPeer(t)(l.StartOpenVPNServer(l.B, l.A, f, ""))
	yaml := strings.Replace(lab.OpenVPNClientYAML(l.A, remoteOf(l.B), f, "info"),
		"data_ciphers: [AES-256-GCM, CHACHA20-POLY1305]", "data_ciphers: [CHACHA20-POLY1305]", 1)
	d := startDaemon(t, ctx, l, l.A, yaml)
	in := waitConnected(t, ctx, d, 20*time.Second)
	if in.Cipher != cipherChaCha {
		t.Fatalf("cipher %q, want %s", in.Cipher, cipherChaCha)
	}
	pingBoth(t, ctx, l)
	transfer(t, ctx, l, l.A, l.B)
}
