package main

// Namespace tests of the kernel routes a daemon installs (issue 12, finding
// 2): a full tunnel carries traffic without a loop and leaves the original
// default routes in place; a daemon that fails to start leaves another
// daemon's routes alone; a route over the underlay subnet is refused
// instead of deleting the veth's connected route on exit.

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"switchyard/internal/lab"
)

// Addresses of the full-tunnel test.
var (
	// fullTunnelUnderlay is an underlay address of b that a reaches only
	// through its default route: without the firewall mark on a's protocol
	// socket, a's own datagrams to it would enter a's full tunnel.
	fullTunnelUnderlay = netip.MustParsePrefix("10.94.0.2/32")
	// fullTunnelFar4 and fullTunnelFar6 are extra addresses on b's TUN that
	// no route of a covers but the full tunnel.
	fullTunnelFar4 = netip.MustParsePrefix("10.95.0.1/32")
	fullTunnelFar6 = netip.MustParsePrefix("fd95::1/128")
	// fullTunnel are the full-tunnel routes.
	fullTunnel = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
	// secondTUN4 and secondTUN6 are the second daemon's TUN addresses.
	secondTUN4 = netip.MustParsePrefix("10.90.9.1/24")
	secondTUN6 = netip.MustParsePrefix("fd90:9::1/64")
	// extraRoute is a route of side a that is not a TUN subnet, so a kernel
	// route of the daemon's own.
	extraRoute = netip.MustParsePrefix("10.77.0.0/16")
)

// fullTunnelMaxCaptured (200 packets) bounds what a's capture may read
// during the full-tunnel test: a dozen pings and the kernel's own IPv6
// reports. A routing loop of the tunnel's own datagrams reads hundreds of
// thousands a second.
const fullTunnelMaxCaptured = 200

// refusalTimeout (10 s) is how long a daemon that must refuse its config
// gets to exit; one that is still running then has started.
const refusalTimeout = 10 * time.Second

// ipShow runs `ip args…` in side's namespace and returns its output.
func ipShow(t *testing.T, ctx context.Context, l *lab.Lab, side *lab.Side, args ...string) string {
	t.Helper()
	out, _, err := l.Exec(ctx, side, "ip", args...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// kernelState is what the route tests compare before and after a daemon:
// the main tables and the policy rules of both families.
func kernelState(t *testing.T, ctx context.Context, l *lab.Lab, side *lab.Side) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, args := range [][]string{
		{"-4", "route", "show", "table", "main"},
		{"-6", "route", "show", "table", "main"},
		{"-4", "rule", "show"},
		{"-6", "rule", "show"},
	} {
		out[strings.Join(args, " ")] = ipShow(t, ctx, l, side, args...)
	}
	return out
}

// compareState fails t for every part of the kernel state that differs.
func compareState(t *testing.T, when string, got, want map[string]string) {
	t.Helper()
	for k, w := range want {
		if g := got[k]; g != w {
			t.Errorf("ip %s %s:\n%s\nwant (before the daemon):\n%s", k, when, g, w)
		}
	}
}

// pingAll pings addr from side after a warm-up and reports whether every
// ping was answered.
func pingAll(ctx context.Context, l *lab.Lab, side *lab.Side, addr netip.Addr) (lab.PingResult, error) {
	if err := l.PingUntil(ctx, side, addr, e2eWarmup); err != nil {
		return lab.PingResult{}, err
	}
	return l.Ping(ctx, side, addr, e2ePings)
}

// TestFullTunnelRoute: side a routes 0.0.0.0/0 and ::/0 into its tunnel
// while its peer's underlay address is reached through a's own default
// route. Pings to addresses only the full tunnel covers are answered, a's
// capture reads no looping datagrams, and after SIGTERM a's default routes
// and rules are what they were before.
func TestFullTunnelRoute(t *testing.T) {
	l, ctx := newLab(t)
	// b: an underlay address a reaches through its default route, and b's
	// datagrams to a leave from it.
	ipShow(t, ctx, l, l.B, "addr", "add", fullTunnelUnderlay.String(), "dev", l.B.Veth)
	ipShow(t, ctx, l, l.B, "route", "add", l.A.Veth4.String()+"/32", "dev", l.B.Veth, "src", fullTunnelUnderlay.Addr().String())
	// a: default routes over the veth, as a host's uplink.
	ipShow(t, ctx, l, l.A, "-4", "route", "add", "default", "via", l.B.Veth4.String(), "dev", l.A.Veth)
	ipShow(t, ctx, l, l.A, "-6", "route", "add", "default", "via", l.B.Veth6.String(), "dev", l.A.Veth)
	before := kernelState(t, ctx, l, l.A)

	yamlB := l.YAML(l.B, l.DefaultConfig(l.B))
	yamlB = withAddress(withAddress(yamlB, fullTunnelFar4), fullTunnelFar6)
	if _, err := l.StartDaemonYAML(ctx, l.B, yamlB); err != nil {
		t.Fatal(err)
	}
	cfgA := lab.Config{Protocols: []lab.Protocol{{Name: "peer", Type: "udp", Routes: fullTunnel}}}
	yamlA := l.YAML(l.A, cfgA)
	oldPeer := "peer: " + netip.AddrPortFrom(l.B.Veth4, lab.DefaultUDPPort).String()
	newPeer := "peer: " + netip.AddrPortFrom(fullTunnelUnderlay.Addr(), lab.DefaultUDPPort).String()
	if !strings.Contains(yamlA, oldPeer) {
		t.Fatalf("side a's config lacks %q:\n%s", oldPeer, yamlA)
	}
	yamlA = strings.Replace(yamlA, oldPeer, newPeer, 1)
	da, err := l.StartDaemonYAML(ctx, l.A, yamlA)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("a's rules with the full tunnel:\n%s\n%s", ipShow(t, ctx, l, l.A, "-4", "rule"), ipShow(t, ctx, l, l.A, "-6", "rule"))

	for _, far := range []netip.Prefix{fullTunnelFar4, fullTunnelFar6} {
		r, err := pingAll(ctx, l, l.A, far.Addr())
		switch {
		case err != nil:
			t.Errorf("ping %s through the full tunnel: %v", far.Addr(), err)
		case r.Received != r.Transmitted:
			t.Errorf("ping %s through the full tunnel: %d/%d replies, want all:\n%s", far.Addr(), r.Received, r.Transmitted, r.Output)
		}
	}
	if capture := actor(t, snapshot(t, ctx, da), "capture"); capture.InPackets > fullTunnelMaxCaptured {
		t.Errorf("a's capture read %d packets, want at most %d: the tunnel's own datagrams loop into the TUN",
			capture.InPackets, fullTunnelMaxCaptured)
	}

	code, err := da.Stop()
	checkExit(t, da, code, err)
	compareState(t, "after SIGTERM", kernelState(t, ctx, l, l.A), before)
	if out := ipShow(t, ctx, l, l.A, "-4", "route", "show", "table", "all", "proto", "95"); out != "" {
		t.Errorf("routes of the daemon's protocol left after SIGTERM:\n%s", out)
	}
}

// TestFailedSecondDaemonLeavesRoutes: a second daemon in a's namespace,
// with its own TUN, the same routes and the first daemon's admin port,
// fails to start and leaves the first daemon's routes and tunnel intact.
func TestFailedSecondDaemonLeavesRoutes(t *testing.T) {
	l, ctx := newLab(t)
	cfgA := l.DefaultConfig(l.A)
	cfgA.Protocols[0].Routes = append(append([]netip.Prefix(nil), lab.TunnelPrefixes...), extraRoute)
	startDaemon(t, ctx, l, l.A, cfgA)
	startDaemon(t, ctx, l, l.B, l.DefaultConfig(l.B))
	mustPing(t, ctx, l, l.A, l.B.TUN4)
	before := kernelState(t, ctx, l, l.A)

	second := l.YAML(l.A, cfgA)
	for _, r := range [][2]string{
		{"name: " + lab.DefaultTUN, "name: sy1"},
		{l.A.TUN4.String() + "/24", secondTUN4.String()},
		{l.A.TUN6.String() + "/64", secondTUN6.String()},
		{"name: gw-a", "name: gw-a2"},
		{netip.AddrPortFrom(l.A.Veth4, lab.DefaultUDPPort).String(), netip.AddrPortFrom(l.A.Veth4, lab.DefaultUDPPort+1).String()},
	} {
		if !strings.Contains(second, r[0]) {
			t.Fatalf("side a's config lacks %q:\n%s", r[0], second)
		}
		second = strings.Replace(second, r[0], r[1], 1)
	}
	path := filepath.Join(l.Dir, "a-second.yaml")
	if err := os.WriteFile(path, []byte(second), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := l.Exec(ctx, l.A, e2eDaemon.get(t), "run", "-c", path)
	if err == nil {
		t.Fatalf("second daemon with the first one's admin port: started and exited 0, want a failure")
	}
	t.Logf("second daemon: %v", strings.TrimSpace(lastBytes(string(stderr), 400)))
	if !strings.Contains(string(stderr), lab.DefaultAdmin) {
		t.Errorf("second daemon's stderr does not name the admin address %s:\n%s", lab.DefaultAdmin, stderr)
	}
	compareState(t, "after the second daemon failed", kernelState(t, ctx, l, l.A), before)
	r, err := l.Ping(ctx, l.A, l.B.TUN4, e2ePings)
	if err != nil || r.Received != r.Transmitted {
		t.Errorf("the first daemon's tunnel after the second one failed: ping %s: %d/%d replies (%v)\n%s",
			l.B.TUN4, r.Received, r.Transmitted, err, r.Output)
	}
}

// TestRouteOverUnderlayRefused: a route equal to the veth's subnet, which
// holds the udp peer, would capture the tunnel's own datagrams. The daemon
// refuses to start, and the veth's connected route is still there.
func TestRouteOverUnderlayRefused(t *testing.T) {
	l, ctx := newLab(t)
	underlay := netip.PrefixFrom(l.A.Veth4, 24).Masked()
	cfgA := l.DefaultConfig(l.A)
	cfgA.Protocols[0].Routes = append(append([]netip.Prefix(nil), lab.TunnelPrefixes...), underlay)
	before := kernelState(t, ctx, l, l.A)
	path := filepath.Join(l.Dir, "a-underlay.yaml")
	if err := os.WriteFile(path, []byte(l.YAML(l.A, cfgA)), 0o644); err != nil {
		t.Fatal(err)
	}
	// A daemon that starts runs until the timeout kills it.
	rctx, cancel := context.WithTimeout(ctx, refusalTimeout)
	defer cancel()
	_, stderr, err := l.Exec(rctx, l.A, e2eDaemon.get(t), "run", "-c", path)
	switch {
	case rctx.Err() != nil:
		t.Errorf("daemon with a route over its peer's subnet %s: still running after %v, want refused", underlay, refusalTimeout)
	case err == nil || !strings.Contains(string(stderr), "captures"):
		t.Errorf("daemon with a route over its peer's subnet %s: %v\n%s\nwant an error that says the route captures the peer", underlay, err, stderr)
	default:
		t.Logf("refused: %s", strings.TrimSpace(string(stderr)))
	}
	compareState(t, "after the daemon", kernelState(t, ctx, l, l.A), before)
}
