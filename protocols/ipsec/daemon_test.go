package ipsec

import (
	"context"
	"errors"
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

// The binaries the daemon tests run: a race-enabled daemon, the plain CLI
// and the lab tools, built once per test binary.
type labBuild struct {
	name, pkg string
	flags     []string
	once      sync.Once
	path      string
	err       error
}

var (
	labBinDir    string
	labBinDirErr error
	labBinOnce   sync.Once
	daemonBin    = &labBuild{name: "switchyard-race", pkg: "switchyard/cmd/switchyard", flags: []string{"-race"}}
	cliBin       = &labBuild{name: "switchyard", pkg: "switchyard/cmd/switchyard"}
	toolsBin     = &labBuild{name: "switchyard-lab", pkg: "switchyard/cmd/switchyard-lab"}
)

// buildTimeout (5 min) bounds one go build of a binary on a busy machine.
const buildTimeout = 5 * time.Minute

func (b *labBuild) get(t *testing.T) string {
	t.Helper()
	labBinOnce.Do(func() { labBinDir, labBinDirErr = os.MkdirTemp("", "ipsec-bins-") })
	if labBinDirErr != nil {
		t.Fatal(labBinDirErr)
	}
	b.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
		defer cancel()
		path := filepath.Join(labBinDir, b.name)
		args := append(append([]string{"build"}, b.flags...), "-o", path, b.pkg)
		if out, err := exec.CommandContext(ctx, "go", args...).CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
			return
		}
		b.path = path
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if labBinDir != "" {
		os.RemoveAll(labBinDir)
	}
	os.Exit(code)
}

// newDaemonLab builds the two-namespace lab (a: our daemon, b: charon).
func newDaemonLab(t *testing.T) (*lab.Lab, context.Context) {
	t.Helper()
	needCharon(t)
	if err := lab.Preflight(); err != nil {
		var m *lab.Missing
		if errors.As(err, &m) {
			t.Skip(m.SkipMessage())
		}
		t.Skip(err.Error())
	}
	opts := lab.Options{Binary: daemonBin.get(t), CLI: cliBin.get(t), Tools: toolsBin.get(t), Dir: t.TempDir()}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	l, err := lab.New(ctx, opts)
	if err != nil {
		cancel()
		t.Fatalf("build the namespaces: %v", err)
	}
	t.Cleanup(func() {
		defer cancel()
		if t.Failed() {
			for _, d := range l.Daemons() {
				t.Logf("log of the daemon in %s:\n%s", d.Side.NS, d.LogTail())
			}
		}
		if err := l.Close(); err != nil {
			t.Errorf("close the lab: %v", err)
		}
	})
	return l, ctx
}

// daemonYAML is side's daemon config with one ipsec instance `site` whose
// settings are lines, and a route for each remote prefix.
func daemonYAML(side *lab.Side, routes []string, settings string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "node:\n  name: gw-%s\nadmin:\n  listen: %s\n", side.Label, side.Admin)
	fmt.Fprintf(&b, "tun:\n  name: %s\n  mtu: 1420\n  addresses: [%s/24]\n  install_routes: true\n", side.TUNDev, side.TUN4)
	b.WriteString("batch:\n  max_packets: 128\nroutes:\n")
	for _, r := range routes {
		fmt.Fprintf(&b, "  - prefix: %q\n    to: site\n", r)
	}
	b.WriteString("protocols:\n  - name: site\n    type: ipsec\n    settings:\n")
	for _, line := range strings.Split(strings.TrimSpace(settings), "\n") {
		b.WriteString("      " + line + "\n")
	}
	return b.String()
}

// transferBytes (100 MiB) is the sha256-checked TCP transfer of the daemon
// tests.
const transferBytes = 100 << 20

// checkTunnel pings both ways between a's and b's tunnel addresses and
// sends transferBytes over TCP each way, sha256-checked.
func checkTunnel(t *testing.T, ctx context.Context, l *lab.Lab, diag func() string) {
	t.Helper()
	a, b := l.A, l.B
	if err := l.PingUntil(ctx, a, b.TUN4, 20*time.Second); err != nil {
		t.Fatalf("ping through the tunnel: %v\n%s", err, diag())
	}
	for _, tc := range []struct {
		from *lab.Side
		to   netip.Addr
	}{{a, b.TUN4}, {b, a.TUN4}} {
		res, err := l.Ping(ctx, tc.from, tc.to, 3)
		if err != nil || res.Received != 3 {
			t.Errorf("ping %s from %s: %+v, %v", tc.to, tc.from.NS, res, err)
		}
	}
	for _, dir := range []struct{ from, to *lab.Side }{{a, b}, {b, a}} {
		tr, err := l.TCPTransfer(ctx, dir.from, dir.to, 5201, transferBytes, 0)
		if err != nil {
			t.Fatalf("transfer %s → %s: %v\n%s", dir.from.Label, dir.to.Label, err, diag())
		}
		if !tr.Match() || tr.Received.Bytes != transferBytes {
			t.Fatalf("transfer %s → %s: sent %+v, received %+v", dir.from.Label, dir.to.Label, tr.Sent, tr.Received)
		}
		t.Logf("transfer %s → %s: %d bytes, sha256 match, %.2f Gbit/s (race-enabled daemon)", dir.from.Label, dir.to.Label,
			tr.Received.Bytes, tr.Gbps())
	}
}

// charonSide starts charon in b (its tunnel address on lo) for a peer in a.
func charonSide(t *testing.T, ctx context.Context, l *lab.Lab, extra string) *charon {
	t.Helper()
	a, b := l.A, l.B
	// b's tunnel address lives on its lo: charon's libipsec routes to a's
	// through its own TUN (table 220).
	if _, _, err := l.Exec(ctx, b, "ip", "addr", "add", b.TUN4.String()+"/32", "dev", "lo"); err != nil {
		t.Fatal(err)
	}
	charonDir := filepath.Join(l.Dir, "charon")
	if err := os.Mkdir(charonDir, 0o700); err != nil {
		t.Fatal(err)
	}
	return startCharon(t, b.NS, charonDir, charonConn{
		Local: b.Veth4, Remote: a.Veth4, LocalID: "b.example", RemoteID: "a.example", PSK: testPSK,
		Proposals: "aes256gcm16-prfsha256-x25519", ESP: "aes256gcm16",
		LocalTS: b.TUN4.String() + "/32", RemoteTS: a.TUN4.String() + "/32", Extra: extra,
	})
}

// siteSettings are the settings of side's ipsec instance towards peer.
func siteSettings(l *lab.Lab, side, peer *lab.Side, mode, localID, remoteID string) string {
	return fmt.Sprintf(`mode: %s
local_addrs: %s
remote_addrs: %s
local_id: %s
remote_id: %s
psk_file: %s
proposals: [aes256gcm16-prfsha256-x25519]
esp_proposals: [aes256gcm16]
local_ts: [%s/32]
remote_ts: [%s/32]`, mode, side.Veth4, peer.Veth4, localID, remoteID, filepath.Join(l.Dir, "site.psk"), side.TUN4, peer.TUN4)
}

// TestDaemonInitiatorCharon: a Switchyard daemon (race-enabled) in a
// initiates to strongSwan 5.9.8 (kernel-libipsec) in b with a PSK: pings
// both ways, a 100 MiB sha256-checked TCP transfer each way, and a clean
// delete at charon when the daemon stops.
func TestDaemonInitiatorCharon(t *testing.T) {
	l, ctx := newDaemonLab(t)
	ch := charonSide(t, ctx, l, "")
	pskFile(t, l.Dir, "site.psk", testPSK)
	d, err := l.StartDaemonYAML(ctx, l.A, daemonYAML(l.A, []string{l.B.TUN4.String() + "/32"},
		siteSettings(l, l.A, l.B, "initiator", "a.example", "b.example")))
	if err != nil {
		t.Fatal(err)
	}
	checkTunnel(t, ctx, l, func() string { out, _ := ch.swanctl("--list-sas"); return "charon SAs:\n" + out })
	if code, err := d.Stop(); err != nil || code != 0 {
		t.Errorf("daemon stop: code %d, %v", code, err)
	}
	waitFor(t, "charon to drop the IKE SA", 5*time.Second, func() bool {
		out, _ := ch.swanctl("--list-sas")
		return !strings.Contains(out, "ESTABLISHED")
	})
	if !strings.Contains(ch.log(), "received DELETE for IKE_SA") {
		t.Error("charon did not get our Delete")
	}
}

// TestDaemonResponderCharon: strongSwan initiates to a Switchyard daemon in
// responder mode: pings both ways and 100 MiB each way; a charon with the
// wrong PSK is refused.
func TestDaemonResponderCharon(t *testing.T) {
	l, ctx := newDaemonLab(t)
	ch := charonSide(t, ctx, l, "")
	pskFile(t, l.Dir, "site.psk", testPSK)
	_, err := l.StartDaemonYAML(ctx, l.A, daemonYAML(l.A, []string{l.B.TUN4.String() + "/32"},
		siteSettings(l, l.A, l.B, "responder", "a.example", "b.example")))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := ch.swanctl("--initiate", "--child", "net", "--timeout", "20"); err != nil {
		t.Fatalf("swanctl --initiate: %v\n%s", err, out)
	}
	checkTunnel(t, ctx, l, func() string { out, _ := ch.swanctl("--list-sas"); return "charon SAs:\n" + out })
	// charon, now with another PSK, is refused.
	if out, err := ch.swanctl("--terminate", "--ike", "t", "--timeout", "5"); err != nil {
		t.Fatalf("swanctl --terminate: %v\n%s", err, out)
	}
	ch.reloadPSK(t, "not the psk")
	out, err := ch.swanctl("--initiate", "--child", "net", "--timeout", "10")
	if err == nil {
		t.Fatalf("charon with the wrong PSK got in:\n%s", out)
	}
	if !strings.Contains(ch.log(), "received AUTHENTICATION_FAILED notify error") {
		t.Errorf("charon was not told AUTHENTICATION_FAILED:\n%s", out)
	}
}

// TestDaemonPair: Switchyard ↔ Switchyard, two daemons (a initiates, b
// responds): pings both ways and 100 MiB each way.
func TestDaemonPair(t *testing.T) {
	l, ctx := newDaemonLab(t)
	pskFile(t, l.Dir, "site.psk", testPSK)
	if _, err := l.StartDaemonYAML(ctx, l.B, daemonYAML(l.B, []string{l.A.TUN4.String() + "/32"},
		siteSettings(l, l.B, l.A, "responder", "b.example", "a.example"))); err != nil {
		t.Fatal(err)
	}
	if _, err := l.StartDaemonYAML(ctx, l.A, daemonYAML(l.A, []string{l.B.TUN4.String() + "/32"},
		siteSettings(l, l.A, l.B, "initiator", "a.example", "b.example"))); err != nil {
		t.Fatal(err)
	}
	checkTunnel(t, ctx, l, func() string { return "" })
}

// TestDaemonRekeyCharon: the daemon initiator rekeys the CHILD SA every 2 s
// and the IKE SA every 3 s while 100 MiB cross each way to strongSwan: the
// transfers arrive whole.
func TestDaemonRekeyCharon(t *testing.T) {
	l, ctx := newDaemonLab(t)
	ch := charonSide(t, ctx, l, "")
	pskFile(t, l.Dir, "site.psk", testPSK)
	d, err := l.StartDaemonYAML(ctx, l.A, daemonYAML(l.A, []string{l.B.TUN4.String() + "/32"},
		siteSettings(l, l.A, l.B, "initiator", "a.example", "b.example")+"\nchild_rekey_time: 2s\nrekey_time: 3s"))
	if err != nil {
		t.Fatal(err)
	}
	checkTunnel(t, ctx, l, func() string { out, _ := ch.swanctl("--list-sas"); return "charon SAs:\n" + out })
	log := d.Log()
	if n := strings.Count(log, "IKE SA rekeyed"); n < 2 {
		t.Errorf("%d IKE SA rekeys in the daemon's log, want at least 2", n)
	}
	if n := strings.Count(log, "CHILD SA established"); n < 4 {
		t.Errorf("%d CHILD SAs in the daemon's log, want at least 4", n)
	}
	if strings.Contains(log, "IKE SA failed") {
		t.Errorf("an IKE SA failed during the rekeys")
	}
}
