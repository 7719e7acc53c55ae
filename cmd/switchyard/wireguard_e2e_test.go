package main

// WireGuard end-to-end tests in network namespaces: switchyard with the
// wireguard protocol against the wireguard-go binary (built from the module
// version in go.mod, configured with `wg`), and switchyard against
// switchyard. They need root, /dev/net/tun, `ip netns` and `wg`, and skip
// otherwise.

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"switchyard/internal/lab"
	"switchyard/node"
	"switchyard/protocols/wireguard"
)

const (
	// wgTransferBytes (100 MiB) is the TCP transfer through the tunnel; the
	// issue asks for at least 100 MB.
	wgTransferBytes = 100 << 20

	// wgNoHandshakeWait (3 s) is how long the wrong-key test keeps trying:
	// a handshake on a veth completes in milliseconds.
	wgNoHandshakeWait = 3 * time.Second

	// wgGarbage (50 datagrams) is how many garbage datagrams are sent to the
	// listen port.
	wgGarbage = 50
)

var wgGo struct {
	once sync.Once
	path string
	err  error
}

// wireguardGo builds wireguard-go once, or skips t when `wg` is missing.
func wireguardGo(t *testing.T) string {
	t.Helper()
	needTool(t, "wg") // configures the wireguard-go peer
	wgGo.once.Do(func() {
		start := time.Now()
		wgGo.path, wgGo.err = lab.BuildWireGuardGo(context.Background(), e2eDir)
		if wgGo.err == nil {
			t.Logf("built %s in %v", wgGo.path, time.Since(start).Round(time.Millisecond))
		}
	})
	if wgGo.err != nil {
		t.Fatal(wgGo.err)
	}
	return wgGo.path
}

// wgKeys makes a key pair per side and writes the private keys as 0600
// files.
func wgKeys(t *testing.T, l *lab.Lab) (ka, kb lab.WGKey, fa, fb string) {
	t.Helper()
	var err error
	if ka, err = lab.NewWGKey(); err != nil {
		t.Fatal(err)
	}
	if kb, err = lab.NewWGKey(); err != nil {
		t.Fatal(err)
	}
	if fa, err = l.WriteKeyFile("a.key", ka); err != nil {
		t.Fatal(err)
	}
	if fb, err = l.WriteKeyFile("b.key", kb); err != nil {
		t.Fatal(err)
	}
	return
}

func endpoint(s *lab.Side) netip.AddrPort { return netip.AddrPortFrom(s.Veth4, lab.WGPort) }

func startWGDaemon(t *testing.T, ctx context.Context, l *lab.Lab, side *lab.Side, keyFile string, peer lab.WGPeer) *lab.Daemon {
	t.Helper()
	d, err := l.StartDaemonYAML(ctx, side, l.WireGuardYAML(side, keyFile, peer, ""))
	if err != nil {
		t.Fatalf("start the wireguard daemon of side %s: %v", side.Label, err)
	}
	return d
}

func startWGGo(t *testing.T, ctx context.Context, l *lab.Lab, side *lab.Side, keyFile string, peer lab.WGPeer) *lab.WGGo {
	t.Helper()
	g, err := l.StartWireGuardGo(ctx, wireguardGo(t), side, keyFile, peer)
	if err != nil {
		t.Fatalf("start wireguard-go in %s: %v", side.NS, err)
	}
	t.Cleanup(g.Stop) // before the lab's cleanup (cleanups run last first)
	return g
}

// wgPeerInfo returns the one peer of the wireguard instance `wg` in d's
// stats.
func wgPeerInfo(t *testing.T, ctx context.Context, d *lab.Daemon) wireguard.PeerInfo {
	t.Helper()
	a := actor(t, snapshot(t, ctx, d), "wg")
	raw, err := json.Marshal(a.Info)
	if err != nil {
		t.Fatal(err)
	}
	var in wireguard.Info
	if err := json.Unmarshal(raw, &in); err != nil || len(in.Peers) != 1 {
		t.Fatalf("wg info = %s (%v), want one peer", raw, err)
	}
	return in.Peers[0]
}

func transfer(t *testing.T, ctx context.Context, l *lab.Lab, from, to *lab.Side) {
	t.Helper()
	tr, err := l.TCPTransfer(ctx, from, to, e2eTCPPort, wgTransferBytes, 0)
	if err != nil {
		t.Fatalf("TCP transfer %s→%s: %v", from.Label, to.Label, err)
	}
	if !tr.Match() {
		t.Fatalf("TCP transfer %s→%s: sent %d bytes (sha256 %s), received %d (sha256 %s)",
			from.Label, to.Label, tr.Sent.Bytes, tr.Sent.SHA256, tr.Received.Bytes, tr.Received.SHA256)
	}
	t.Logf("TCP %s→%s: %d bytes intact (sha256 %.16s…), %.2f Gbit/s", from.Label, to.Label,
		tr.Received.Bytes, tr.Received.SHA256, tr.Gbps())
}

// TestWireGuardInterop: switchyard (a) and wireguard-go (b) ping both ways
// over IPv4 and IPv6 and carry 100 MiB of TCP intact each way; garbage on
// the listen port is counted; the per-peer stats show the handshake.
func TestWireGuardInterop(t *testing.T) {
	l, ctx := newLab(t)
	ka, kb, fa, fb := wgKeys(t, l)
	d := startWGDaemon(t, ctx, l, l.A, fa, lab.WGPeer{PublicKey: kb.Public, Endpoint: endpoint(l.B)})
	g := startWGGo(t, ctx, l, l.B, fb, lab.WGPeer{PublicKey: ka.Public, Endpoint: endpoint(l.A)})

	for _, r := range routes(l) {
		t.Run("ping "+r.name, func(t *testing.T) { mustPing(t, ctx, l, r.from, r.addr) })
	}
	if t.Failed() {
		return
	}
	transfer(t, ctx, l, l.A, l.B)
	transfer(t, ctx, l, l.B, l.A)

	p := wgPeerInfo(t, ctx, d)
	if p.PublicKey != kb.Public || p.LastHandshake == nil || p.RxBytes < wgTransferBytes || p.TxBytes < wgTransferBytes {
		t.Errorf("switchyard's peer info = %+v, want b's key, a handshake and > 100 MiB each way", p)
	}
	if hs, err := g.Show(ctx, "latest-handshakes"); err != nil || !strings.Contains(hs, ka.Public) || strings.HasSuffix(hs, "\t0") {
		t.Errorf("wg show latest-handshakes = %q (%v), want a handshake with a", hs, err)
	}

	// Garbage datagrams to a's listen port: counted, nothing else happens.
	if _, err := l.UDPFlood(ctx, l.B, lab.Flood{To: endpoint(l.A), PPS: 1000, Count: wgGarbage, Payload: "garbage"}); err != nil {
		t.Fatal(err)
	}
	s, err := d.WaitStats(ctx, e2eStateTimeout, func(s node.Snapshot) bool {
		a, _ := lab.FindActor(s, "wg.recv")
		return a.Drops["malformed"] >= wgGarbage
	})
	if err != nil {
		t.Fatalf("garbage not counted: %v; wg.recv = %+v", err, actor(t, s, "wg.recv"))
	}
	if got := actor(t, s, "wg.recv").Drops["malformed"]; got != wgGarbage {
		t.Errorf("wg.recv malformed = %d, want %d", got, wgGarbage)
	}
	mustPing(t, ctx, l, l.A, l.B.TUN4) // still forwarding
	checkAccounting(t, ctx, d)
}

// TestWireGuardWrongKey: switchyard knows a wrong key for its peer: no
// handshake completes either way and nothing reaches either TUN.
func TestWireGuardWrongKey(t *testing.T) {
	l, ctx := newLab(t)
	ka, kb, fa, fb := wgKeys(t, l)
	wrong, err := lab.NewWGKey()
	if err != nil {
		t.Fatal(err)
	}
	d := startWGDaemon(t, ctx, l, l.A, fa, lab.WGPeer{PublicKey: wrong.Public, Endpoint: endpoint(l.B)})
	g := startWGGo(t, ctx, l, l.B, fb, lab.WGPeer{PublicKey: ka.Public, Endpoint: endpoint(l.A)})
	_ = kb

	for _, r := range []struct {
		from *lab.Side
		to   netip.Addr
	}{{l.A, l.B.TUN4}, {l.B, l.A.TUN4}, {l.A, l.B.TUN6}} {
		res, err := l.Ping(ctx, r.from, r.to, int(wgNoHandshakeWait/time.Second)*2)
		if err != nil {
			t.Fatal(err)
		}
		if res.Received != 0 {
			t.Errorf("ping %s from %s: %d replies through a tunnel with a wrong key", r.to, r.from.NS, res.Received)
		}
	}
	if p := wgPeerInfo(t, ctx, d); p.LastHandshake != nil || p.RxBytes != 0 {
		t.Errorf("switchyard's peer info = %+v, want no handshake and nothing received", p)
	}
	if hs, err := g.Show(ctx, "latest-handshakes"); err != nil || !strings.HasSuffix(hs, "\t0") {
		t.Errorf("wg show latest-handshakes = %q (%v), want none", hs, err)
	}
	s := snapshot(t, ctx, d)
	if inj := actor(t, s, "injector"); inj.InPackets != 0 {
		t.Errorf("switchyard's injector got %d packets, want 0", inj.InPackets)
	}
	if tr, err := g.Show(ctx, "transfer"); err != nil || !strings.Contains(tr, "\t0\t") {
		t.Errorf("wg show transfer = %q (%v), want nothing received", tr, err)
	}
	rx := ifaceRxPackets(t, ctx, l, l.B, g.Iface)
	if rx != 0 {
		t.Errorf("wireguard-go's interface received %d packets, want 0", rx)
	}
}

// ifaceRxPackets reads the packets the kernel received from iface (what
// the WireGuard implementation wrote into its TUN).
func ifaceRxPackets(t *testing.T, ctx context.Context, l *lab.Lab, side *lab.Side, iface string) uint64 {
	t.Helper()
	out, err := l.Run(ctx, side, "ip", "-s", "-j", "link", "show", "dev", iface)
	if err != nil {
		t.Fatal(err)
	}
	var links []struct {
		Stats struct {
			RX struct {
				Packets uint64 `json:"packets"`
			} `json:"rx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		t.Fatalf("ip -s -j link show %s: %v: %s", iface, err, out)
	}
	return links[0].Stats.RX.Packets
}

// TestWireGuardSwitchyardPair: two switchyard daemons with the wireguard
// protocol: pings both ways over both families and 100 MiB of TCP intact.
func TestWireGuardSwitchyardPair(t *testing.T) {
	l, ctx := newLab(t)
	ka, kb, fa, fb := wgKeys(t, l)
	da := startWGDaemon(t, ctx, l, l.A, fa, lab.WGPeer{PublicKey: kb.Public, Endpoint: endpoint(l.B)})
	// b is a responder: it learns a's endpoint from the handshake.
	db := startWGDaemon(t, ctx, l, l.B, fb, lab.WGPeer{PublicKey: ka.Public})
	for _, r := range routes(l) {
		t.Run("ping "+r.name, func(t *testing.T) { mustPing(t, ctx, l, r.from, r.addr) })
	}
	if t.Failed() {
		return
	}
	transfer(t, ctx, l, l.A, l.B)
	for _, d := range []*lab.Daemon{da, db} {
		checkAccounting(t, ctx, d)
	}
}

// TestWireGuardKeyFileRefused: `switchyard check` refuses a key file others
// can read, with the path and the fix.
func TestWireGuardKeyFileRefused(t *testing.T) {
	dir := t.TempDir()
	k, err := lab.NewWGKey()
	if err != nil {
		t.Fatal(err)
	}
	peer, err := lab.NewWGKey()
	if err != nil {
		t.Fatal(err)
	}
	keyFile := dir + "/office.key"
	if err := os.WriteFile(keyFile, []byte(k.Private+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(keyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := dir + "/switchyard.yaml"
	yaml := "node:\n  name: x\ntun:\n  name: sy0\n  addresses: [10.90.0.1/24]\nroutes:\n  - prefix: 10.90.0.0/24\n    to: office\n" +
		"protocols:\n  - name: office\n    type: wireguard\n    settings:\n      private_key_file: " + keyFile +
		"\n      listen_port: 51820\n      peers:\n        - public_key: " + peer.Public +
		"\n          allowed_ips: [10.90.0.0/24]\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(e2eCLI.get(t), "check", "-c", cfg).CombinedOutput()
	want := "protocols[0].settings.private_key_file: " + keyFile + " is readable by others (mode 0644); chmod 600 it"
	if err == nil || !strings.Contains(string(out), want) || !strings.Contains(string(out), cfg+":") {
		t.Fatalf("switchyard check: %v\n%s\nwant exit 1 and %q with file:line:col", err, out, want)
	}
	if err := os.Chmod(keyFile, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(e2eCLI.get(t), "check", "-c", cfg).CombinedOutput(); err != nil || strings.SplitN(string(out), "\n", 2)[0] != "ok" {
		t.Fatalf("switchyard check after chmod 600: %v\n%s", err, out)
	}
}

// TestWireGuardBench is the end-to-end row, run on demand
// (SWITCHYARD_WG_BENCH=1; it takes about a minute and a half): iperf3
// through a wireguard-go pair and a switchyard pair, median of 3 × 10 s.
// SWITCHYARD_WG_PROFILE=FILE also saves a CPU profile of one daemon.
func TestWireGuardBench(t *testing.T) {
	if os.Getenv("SWITCHYARD_WG_BENCH") == "" {
		t.Skip("set SWITCHYARD_WG_BENCH=1 to run the WireGuard end-to-end benchmark")
	}
	if e2eSkip != "" {
		t.Skip(e2eSkip)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	r, err := lab.WireGuardBench(ctx, lab.WGBenchOptions{
		Binary:      e2eCLI.get(t),
		Tools:       e2eTools.get(t),
		WireGuardGo: wireguardGo(t),
		Profile:     os.Getenv("SWITCHYARD_WG_PROFILE"),
		Log:         t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(r)
}
