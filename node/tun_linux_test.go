package node

import (
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"switchyard/config"
)

// inNewNetns moves the test's goroutine onto an OS thread of its own in a
// fresh network namespace, with a veth uplink 10.91.0.1/24 and a default
// route through 10.91.0.2. The thread is never unlocked: it ends with the
// test, and the namespace with it.
func inNewNetns(t *testing.T) netlink.Link {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace and a TUN device")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("no /dev/net/tun: %v", err)
	}
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		t.Fatalf("unshare the network namespace: %v", err)
	}
	up := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "uplink"}, PeerName: "uplink-peer"}
	if err := netlink.LinkAdd(up); err != nil {
		t.Fatalf("add a veth pair: %v", err)
	}
	link, err := netlink.LinkByName("uplink")
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []func() error{
		func() error { return netlink.LinkSetUp(link) },
		func() error {
			return netlink.AddrAdd(link, &netlink.Addr{IPNet: ipNet(netip.MustParsePrefix("10.91.0.1/24"))})
		},
		func() error {
			return netlink.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: net.ParseIP("10.91.0.2")})
		},
	} {
		if err := step(); err != nil {
			t.Fatalf("set up the uplink: %v", err)
		}
	}
	return link
}

// routesIn lists the routes of family in table, as `ip route` prints them.
func routesIn(t *testing.T, family, table int) []string {
	t.Helper()
	rs, err := netlink.RouteListFiltered(family, &netlink.Route{Table: table}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rs {
		out = append(out, describeRoute(r))
	}
	return out
}

// ourRules counts the policy rules tagged with RouteProtocol.
func ourRules(t *testing.T, family int) int {
	t.Helper()
	rs, err := netlink.RuleListFiltered(family, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range rs {
		if r.Protocol == RouteProtocol {
			n++
		}
	}
	return n
}

func has(list []string, sub string) bool {
	for _, s := range list {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

var testTUN = config.TUN{Name: "sytest1", MTU: 1420, Addresses: prefixes("10.90.0.1/24", "fd90::1/64"), InstallRoutes: true}

// TestTUNRoutesOwnership: in a namespace of its own, the node installs its
// routes tagged, the full tunnel in its own table with two rules a family,
// leaves the default route and routes it did not create alone (also when
// asked to delete one with the same prefix), refuses to replace one, and
// leaves nothing behind once closed.
func TestTUNRoutesOwnership(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	uplink := inNewNetns(t)
	operator := netip.MustParsePrefix("10.88.0.0/16")
	if err := netlink.RouteAdd(&netlink.Route{LinkIndex: uplink.Attrs().Index, Dst: ipNet(operator)}); err != nil {
		t.Fatal(err)
	}
	mainBefore := routesIn(t, unix.AF_INET, unix.RT_TABLE_MAIN)

	install := prefixes("10.66.0.0/16", "0.0.0.0/0", "::/0")
	dev, ctl, installed, err := openTUN(testTUN, install, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(installed) != len(install) {
		t.Errorf("installed %v, want %v", installed, install)
	}
	main4 := routesIn(t, unix.AF_INET, unix.RT_TABLE_MAIN)
	for _, want := range []string{"10.66.0.0/16 dev sytest1 proto 95", "default via 10.91.0.2 dev uplink", "10.88.0.0/16 dev uplink"} {
		if !has(main4, want) {
			t.Errorf("main table %q lacks %q", main4, want)
		}
	}
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		if got := routesIn(t, fam, FullTunnelTable); len(got) != 1 || !has(got, "default dev sytest1 table 21337 proto 95") {
			t.Errorf("table %d (family %d): %q, want the one full-tunnel route", FullTunnelTable, fam, got)
		}
		if got := ourRules(t, fam); got != 2 {
			t.Errorf("family %d: %d rules of ours, want 2", fam, got)
		}
	}

	// A marked lookup still sees the main table's default route.
	m, err := lookupUnderlay(netip.MustParseAddr("192.0.2.1"))
	if err != nil || m.prefix != netip.MustParsePrefix("0.0.0.0/0") || !strings.Contains(m.desc, "uplink") {
		t.Errorf("lookup of 192.0.2.1 with the full tunnel up: %+v, %v; want the default route via uplink", m, err)
	}
	if m, err := lookupUnderlay(netip.MustParseAddr("10.91.0.2")); err != nil || m.prefix != netip.MustParsePrefix("10.91.0.0/24") {
		t.Errorf("lookup of 10.91.0.2: %+v, %v; want 10.91.0.0/24", m, err)
	}
	if m, err := lookupUnderlay(netip.MustParseAddr("10.91.0.1")); err != nil || !m.local {
		t.Errorf("lookup of 10.91.0.1: %+v, %v; want local", m, err)
	}

	// Never replace, never delete what is not ours.
	err = ctl.addRoute(operator, preferredSource(operator, testTUN.Addresses))
	if err == nil || !strings.Contains(err.Error(), "exists already (10.88.0.0/16 dev uplink proto boot)") {
		t.Errorf("addRoute over the operator's %s: %v, want an error naming it", operator, err)
	}
	if err := ctl.delRoute(operator); err != nil {
		t.Errorf("delRoute of a route that is not ours: %v, want nil (nothing of ours to delete)", err)
	}
	if !has(routesIn(t, unix.AF_INET, unix.RT_TABLE_MAIN), "10.88.0.0/16 dev uplink") {
		t.Errorf("the operator's route %s is gone", operator)
	}
	// Removing the IPv4 full tunnel removes its rules, not IPv6's.
	if err := ctl.delRoute(netip.MustParsePrefix("0.0.0.0/0")); err != nil {
		t.Fatal(err)
	}
	if got, got6 := ourRules(t, unix.AF_INET), ourRules(t, unix.AF_INET6); got != 0 || got6 != 2 {
		t.Errorf("after removing 0.0.0.0/0: %d IPv4 and %d IPv6 rules of ours, want 0 and 2", got, got6)
	}

	dev.Close()
	if err := ctl.close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if got := routesIn(t, unix.AF_INET, unix.RT_TABLE_MAIN); strings.Join(got, "\n") != strings.Join(mainBefore, "\n") {
		t.Errorf("main table after close:\n%s\nwant as before:\n%s", strings.Join(got, "\n"), strings.Join(mainBefore, "\n"))
	}
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		if got := ourRules(t, fam); got != 0 {
			t.Errorf("family %d: %d rules of ours after close, want 0", fam, got)
		}
		if got := routesIn(t, fam, FullTunnelTable); len(got) != 0 {
			t.Errorf("table %d after close: %q", FullTunnelTable, got)
		}
	}
}

// TestTUNFullTunnelStaleAndBusy: rules a killed daemon left are replaced,
// and a table another daemon's full tunnel holds is refused without
// touching it.
func TestTUNFullTunnelStaleAndBusy(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	uplink := inNewNetns(t)
	for _, r := range fullTunnelRules(unix.AF_INET) { // a killed daemon's
		if err := netlink.RuleAdd(r); err != nil {
			t.Fatal(err)
		}
	}
	dev, ctl, _, err := openTUN(testTUN, prefixes("0.0.0.0/0"), nil)
	if err != nil {
		t.Fatalf("open over stale rules: %v", err)
	}
	if got := ourRules(t, unix.AF_INET); got != 2 {
		t.Errorf("%d rules of ours over stale ones, want 2", got)
	}
	dev.Close()
	if err := ctl.close(); err != nil {
		t.Error(err)
	}
	if got := ourRules(t, unix.AF_INET); got != 0 {
		t.Errorf("%d rules of ours after close, want 0", got)
	}

	// Another daemon's full tunnel (here on the uplink) holds the table.
	other := &netlink.Route{LinkIndex: uplink.Attrs().Index, Table: FullTunnelTable, Dst: ipNet(netip.MustParsePrefix("0.0.0.0/0")), Protocol: RouteProtocol}
	if err := netlink.RouteAdd(other); err != nil {
		t.Fatal(err)
	}
	_, _, _, err = openTUN(testTUN, prefixes("10.66.0.0/16", "0.0.0.0/0"), []config.Route{
		{Prefix: netip.MustParsePrefix("10.66.0.0/16")}, {Prefix: netip.MustParsePrefix("0.0.0.0/0")}})
	if err == nil || !strings.Contains(err.Error(), "routes[1]: install route 0.0.0.0/0 dev sytest1 table 21337 proto 95: the full tunnel's table 21337 holds default dev uplink") {
		t.Errorf("open with the table held: %v", err)
	}
	if got := routesIn(t, unix.AF_INET, FullTunnelTable); len(got) != 1 || !has(got, "dev uplink") {
		t.Errorf("the other daemon's table after the refusal: %q", got)
	}
	if has(routesIn(t, unix.AF_INET, unix.RT_TABLE_MAIN), "10.66.0.0/16") {
		t.Errorf("the refused start left its route 10.66.0.0/16")
	}
	if got := ourRules(t, unix.AF_INET); got != 0 {
		t.Errorf("%d rules of ours after the refusal, want 0", got)
	}
}
