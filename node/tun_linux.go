package node

// The TUN's addresses, routes and the full tunnel's policy rules through
// netlink (see routes.go for the rules the node follows).

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"
)

// Linux: the daemon marks its protocols' sockets (FullTunnelMark) and
// installs full tunnels with policy routing; the kernel routes the subnet of
// a TUN address into the TUN by itself.
const (
	marksSockets     = true
	connectedSubnets = true
)

func createTUN(name string, mtu int) (tun.Device, string, error) {
	dev, err := tun.CreateTUN(name, mtu)
	if err != nil {
		return nil, "", err
	}
	real, err := dev.Name()
	if err != nil {
		dev.Close()
		return nil, "", err
	}
	return dev, real, nil
}

// netlinkTUN is a TUN the node created, changed through netlink.
type netlinkTUN struct {
	link netlink.Link
	// rules are the policy rules this node added, by address family; a
	// family has them while it has a full-tunnel route.
	rules map[int][]*netlink.Rule
}

func newTunControl(name string) (tunControl, error) {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("find tun %q: %w", name, err)
	}
	return &netlinkTUN{link: link, rules: map[int][]*netlink.Rule{}}, nil
}

func (t *netlinkTUN) device() string { return t.link.Attrs().Name }

func (t *netlinkTUN) up() error {
	if err := netlink.LinkSetUp(t.link); err != nil {
		return fmt.Errorf("bring up %q: %w", t.device(), err)
	}
	return nil
}

func (t *netlinkTUN) addAddress(p netip.Prefix) error {
	addr := &netlink.Addr{IPNet: ipNet(p)}
	if p.Addr().Is6() {
		addr.Flags = unix.IFA_F_NODAD // usable at once, no duplicate address detection on a point-to-point device
	}
	if err := netlink.AddrReplace(t.link, addr); err != nil {
		return fmt.Errorf("add address %s to %q: %w", p, t.device(), err)
	}
	return nil
}

func (t *netlinkTUN) delAddress(p netip.Prefix) error {
	if err := netlink.AddrDel(t.link, &netlink.Addr{IPNet: ipNet(p)}); err != nil {
		return fmt.Errorf("remove address %s from %q: %w", p, t.device(), err)
	}
	return nil
}

// route returns the node's route to p: in the main table, or a full tunnel
// in FullTunnelTable.
func (t *netlinkTUN) route(p netip.Prefix) *netlink.Route {
	r := &netlink.Route{
		LinkIndex: t.link.Attrs().Index,
		Dst:       ipNet(p.Masked()),
		Protocol:  RouteProtocol,
		Table:     unix.RT_TABLE_MAIN,
	}
	if isFullTunnel(p) {
		r.Table = FullTunnelTable
	}
	return r
}

func (t *netlinkTUN) addRoute(p netip.Prefix, src netip.Addr) error {
	r := t.route(p)
	if src.IsValid() && src.Is4() == p.Addr().Is4() {
		r.Src = src.AsSlice()
	}
	where := fmt.Sprintf("route %s dev %s %s proto %d", p, t.device(), tableName(r.Table), RouteProtocol)
	if isFullTunnel(p) {
		if err := t.checkTable(family(p)); err != nil {
			return fmt.Errorf("install %s: %w", where, err)
		}
	}
	err := netlink.RouteAdd(r) // NLM_F_EXCL: never replaces
	switch {
	case errors.Is(err, unix.EEXIST):
		return fmt.Errorf("install %s: a route to %s exists already (%s); switchyard never replaces a route it did not create: "+
			"remove it, or leave %s out of the routes (or set tun.install_routes: false)", where, p, existingRoute(p, r.Table), p)
	case err != nil:
		return fmt.Errorf("install %s: %w", where, err)
	}
	if isFullTunnel(p) {
		if err := t.addRules(family(p)); err != nil {
			_ = netlink.RouteDel(r)
			return fmt.Errorf("install %s: %w", where, err)
		}
	}
	return nil
}

func (t *netlinkTUN) delRoute(p netip.Prefix) error {
	r := t.route(p)
	if err := netlink.RouteDel(r); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("delete route %s dev %s %s proto %d: %w", p, t.device(), tableName(r.Table), RouteProtocol, err)
	}
	if isFullTunnel(p) {
		return t.delRules(family(p))
	}
	return nil
}

func (t *netlinkTUN) close() error {
	var errs []error
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		if err := t.delRules(fam); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// fullTunnelRules returns the two rules of a full tunnel in family, as
// wg-quick adds them: `lookup main suppress_prefixlength 0`, then `not
// fwmark FullTunnelMark lookup FullTunnelTable`.
func fullTunnelRules(family int) []*netlink.Rule {
	suppress := netlink.NewRule()
	suppress.Family = family
	suppress.Priority = SuppressRulePriority
	suppress.Table = unix.RT_TABLE_MAIN
	suppress.SuppressPrefixlen = 0
	suppress.Protocol = RouteProtocol

	mask := uint32(0xffffffff)
	tunnel := netlink.NewRule()
	tunnel.Family = family
	tunnel.Priority = TunnelRulePriority
	tunnel.Table = FullTunnelTable
	tunnel.Mark = FullTunnelMark
	tunnel.Mask = &mask
	tunnel.Invert = true
	tunnel.Protocol = RouteProtocol
	return []*netlink.Rule{suppress, tunnel}
}

// checkTable refuses a full tunnel when FullTunnelTable holds a route of
// family on another device: another daemon's full tunnel runs.
func (t *netlinkTUN) checkTable(family int) error {
	held, err := netlink.RouteListFiltered(family, &netlink.Route{Table: FullTunnelTable}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("list table %d: %w", FullTunnelTable, err)
	}
	for _, r := range held {
		if r.LinkIndex != t.link.Attrs().Index {
			return fmt.Errorf("the full tunnel's table %d holds %s already (another daemon's full tunnel)", FullTunnelTable, describeRoute(r))
		}
	}
	return nil
}

// addRules adds the full tunnel's rules of family unless this node has.
// Rules of ours that a daemon left when it did not stop cleanly (its routes
// went with its TUN; checkTable found no other) are replaced.
func (t *netlinkTUN) addRules(family int) error {
	if len(t.rules[family]) > 0 {
		return nil
	}
	if err := delStaleRules(family); err != nil {
		return err
	}
	var added []*netlink.Rule
	for _, r := range fullTunnelRules(family) {
		if err := netlink.RuleAdd(r); err != nil {
			for _, a := range added {
				_ = netlink.RuleDel(a)
			}
			return fmt.Errorf("add policy rule %s: %w", describeRule(r), err)
		}
		added = append(added, r)
	}
	t.rules[family] = added
	return nil
}

// delStaleRules deletes the full-tunnel rules of family tagged with
// RouteProtocol (left by a daemon that did not stop cleanly).
func delStaleRules(family int) error {
	rules, err := netlink.RuleListFiltered(family, nil, 0)
	if err != nil {
		return fmt.Errorf("list policy rules: %w", err)
	}
	for _, want := range fullTunnelRules(family) {
		for _, r := range rules {
			if r.Protocol == RouteProtocol && r.Priority == want.Priority && r.Table == want.Table {
				if err := netlink.RuleDel(want); err != nil && !errors.Is(err, unix.ENOENT) {
					return fmt.Errorf("delete stale policy rule %s: %w", describeRule(want), err)
				}
			}
		}
	}
	return nil
}

func (t *netlinkTUN) delRules(family int) error {
	var errs []error
	for _, r := range t.rules[family] {
		if err := netlink.RuleDel(r); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("delete policy rule %s: %w", describeRule(r), err))
		}
	}
	delete(t.rules, family)
	return errors.Join(errs...)
}

// lookupUnderlay asks the kernel, with RTM_F_FIB_MATCH, which route a
// datagram to ip carrying FullTunnelMark follows: the route as configured
// (its prefix), not the resolved next hop.
func lookupUnderlay(ip netip.Addr) (underlayMatch, error) {
	rs, err := netlink.RouteGetWithOptions(ip.AsSlice(), &netlink.RouteGetOptions{FIBMatch: true, Mark: FullTunnelMark})
	switch {
	case errors.Is(err, unix.ENETUNREACH) || errors.Is(err, unix.EHOSTUNREACH) || (err == nil && len(rs) == 0):
		return underlayMatch{}, nil
	case err != nil:
		return underlayMatch{}, err
	}
	r := rs[0]
	if r.Type == unix.RTN_LOCAL || r.Table == unix.RT_TABLE_LOCAL {
		return underlayMatch{local: true}, nil
	}
	p := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	if ip.Is6() {
		p = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
	}
	if r.Dst != nil {
		if a, ok := netip.AddrFromSlice(r.Dst.IP); ok {
			bits, _ := r.Dst.Mask.Size()
			p = netip.PrefixFrom(a.Unmap(), bits)
		}
	}
	return underlayMatch{prefix: p, desc: describeRoute(r)}, nil
}

// existingRoute describes the route to p in table that is in the way.
func existingRoute(p netip.Prefix, table int) string {
	rs, err := netlink.RouteListFiltered(family(p), &netlink.Route{Dst: ipNet(p), Table: table},
		netlink.RT_FILTER_DST|netlink.RT_FILTER_TABLE)
	if err != nil || len(rs) == 0 {
		return "see ip route show " + p.String() + " " + tableName(table)
	}
	return describeRoute(rs[0])
}

// describeRoute renders r roughly as `ip route` does.
func describeRoute(r netlink.Route) string {
	var b strings.Builder
	if r.Dst == nil || net.IP(r.Dst.Mask).IsUnspecified() {
		b.WriteString("default")
	} else {
		b.WriteString(r.Dst.String())
	}
	if r.Gw != nil {
		b.WriteString(" via " + r.Gw.String())
	}
	if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil {
		b.WriteString(" dev " + l.Attrs().Name)
	}
	if r.Table != 0 && r.Table != unix.RT_TABLE_MAIN {
		fmt.Fprintf(&b, " table %d", r.Table)
	}
	fmt.Fprintf(&b, " proto %s", r.Protocol)
	return b.String()
}

func describeRule(r *netlink.Rule) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d:", r.Priority)
	if r.Invert {
		b.WriteString(" not")
	}
	if r.Mark != 0 {
		fmt.Fprintf(&b, " fwmark %#x", r.Mark)
	} else {
		b.WriteString(" from all")
	}
	fmt.Fprintf(&b, " lookup %s", tableName(r.Table))
	if r.SuppressPrefixlen >= 0 {
		fmt.Fprintf(&b, " suppress_prefixlength %d", r.SuppressPrefixlen)
	}
	if r.Family == unix.AF_INET6 {
		b.WriteString(" (IPv6)")
	}
	return b.String()
}

func tableName(table int) string {
	if table == unix.RT_TABLE_MAIN || table == 0 {
		return "table main"
	}
	return fmt.Sprintf("table %d", table)
}

func family(p netip.Prefix) int {
	if p.Addr().Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// lookupRoute is the kernel lookup of the capture check (routes.go).
var lookupRoute lookupFunc = lookupUnderlay
