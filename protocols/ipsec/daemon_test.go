package ipsec

import (
	"context"
	"errors"
	"fmt"
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

// TestDaemonInitiatorCharon: a Switchyard daemon (race-enabled) in a
// initiates to strongSwan 5.9.8 (kernel-libipsec) in b with a PSK: pings
// both ways, a 100 MiB sha256-checked TCP transfer each way, and a clean
// delete at charon when the daemon stops.
func TestDaemonInitiatorCharon(t *testing.T) {
	l, ctx := newDaemonLab(t)
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
	ch := startCharon(t, b.NS, charonDir, charonConn{
		Local: b.Veth4, Remote: a.Veth4, LocalID: "b.example", RemoteID: "a.example", PSK: testPSK,
		Proposals: "aes256gcm16-prfsha256-x25519", ESP: "aes256gcm16",
		LocalTS: b.TUN4.String() + "/32", RemoteTS: a.TUN4.String() + "/32",
	})
	psk := pskFile(t, l.Dir, "site.psk", testPSK)
	settings := fmt.Sprintf(`local_addrs: %s
remote_addrs: %s
local_id: a.example
remote_id: b.example
psk_file: %s
proposals: [aes256gcm16-prfsha256-x25519]
esp_proposals: [aes256gcm16]
local_ts: [%s/32]
remote_ts: [%s/32]`, a.Veth4, b.Veth4, psk, a.TUN4, b.TUN4)
	d, err := l.StartDaemonYAML(ctx, a, daemonYAML(a, []string{b.TUN4.String() + "/32"}, settings))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.PingUntil(ctx, a, b.TUN4, 20*time.Second); err != nil {
		out, _ := ch.swanctl("--list-sas")
		t.Fatalf("ping through the tunnel: %v\ncharon SAs:\n%s", err, out)
	}
	for _, tc := range []struct {
		from *lab.Side
		to   string
	}{{a, b.TUN4.String()}, {b, a.TUN4.String()}} {
		res, err := l.Ping(ctx, tc.from, mustAddr(tc.to), 3)
		if err != nil || res.Received != 3 {
			t.Errorf("ping %s from %s: %+v, %v", tc.to, tc.from.NS, res, err)
		}
	}
	for _, dir := range []struct{ from, to *lab.Side }{{a, b}, {b, a}} {
		tr, err := l.TCPTransfer(ctx, dir.from, dir.to, 5201, transferBytes, 0)
		if err != nil {
			t.Fatalf("transfer %s → %s: %v", dir.from.Label, dir.to.Label, err)
		}
		if !tr.Match() || tr.Received.Bytes != transferBytes {
			t.Fatalf("transfer %s → %s: sent %+v, received %+v", dir.from.Label, dir.to.Label, tr.Sent, tr.Received)
		}
		t.Logf("transfer %s → %s: %d bytes, sha256 match, %.2f Gbit/s (race-enabled daemon)", dir.from.Label, dir.to.Label,
			tr.Received.Bytes, tr.Gbps())
	}
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
