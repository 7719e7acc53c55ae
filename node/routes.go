package node

// Kernel routes into the TUN, the way wg-quick installs them:
//
//  1. Which prefixes: every route prefix when tun.install_routes is true,
//     except, on Linux, the subnets of the TUN's own addresses — the kernel
//     already routes those into the TUN (its connected routes), and the
//     node never replaces a route it did not create. (A point-to-point utun
//     or tun on macOS and FreeBSD gets no such route: there they are
//     installed too.)
//  2. Capture check, before the TUN exists: a route must not capture the
//     traffic to a protocol's own peer endpoint (udp `peer`, wireguard
//     `endpoint`), or the protocol's datagrams would enter the tunnel they
//     carry. A host route to an endpoint is refused by check (checkCaptures
//     in Check); the rest depends on the kernel's table and is refused at
//     start and on reload (kernelCaptures).
//  3. Install: each route is added, never replaced, tagged with
//     RouteProtocol. A route that exists already is an error that names it.
//  4. A full tunnel (0.0.0.0/0, ::/0) goes into its own table,
//     FullTunnelTable, with two policy rules per family: the main table
//     without its default routes first, then every packet that does not
//     carry FullTunnelMark to FullTunnelTable. The daemon's protocol sockets
//     carry the mark, so their datagrams follow the main table — and the
//     original default route, which is never touched.
//  5. Removal: only what the node added — routes by RouteProtocol and
//     device, rules by their attributes. Routes go with the TUN when it
//     closes; rules are deleted on Stop, also after a failed start.

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"switchyard/config"
	"switchyard/protocols"
)

// Kernel route and rule identifiers of the node's own.
const (
	// RouteProtocol (95, 0x5f) is the route protocol (rtm_protocol, `proto
	// 95` in `ip route`) of every route and rule the node installs; it is
	// unused by iproute2's rt_protos and by the routing daemons it lists.
	RouteProtocol = 0x5f
	// FullTunnelTable (21337, 0x5359) is the policy-routing table of
	// full-tunnel routes.
	FullTunnelTable = 0x5359
	// FullTunnelMark (0x5359) is the firewall mark (SO_MARK) on the
	// daemon's protocol sockets; the full tunnel's rule sends every packet
	// without it to FullTunnelTable.
	FullTunnelMark = 0x5359
	// SuppressRulePriority (32764) is the priority of the rule `lookup main
	// suppress_prefixlength 0`: the main table without its default routes,
	// so more specific routes (the LAN, the underlay) win over the tunnel.
	SuppressRulePriority = 32764
	// TunnelRulePriority (32765) is the priority of the rule `not fwmark
	// FullTunnelMark lookup FullTunnelTable`; both come before the main
	// table's own rule (32766), as wg-quick's do.
	TunnelRulePriority = 32765
)

// isFullTunnel reports whether p is a default route (0.0.0.0/0 or ::/0).
func isFullTunnel(p netip.Prefix) bool { return p.Bits() == 0 }

// kernelRoutePrefixes returns the prefixes the node installs kernel routes
// for: every route prefix (masked, once) if install_routes is set, less —
// on Linux (connectedSubnets) — the subnets of the TUN's own addresses,
// which the kernel's connected routes already send into the TUN.
func kernelRoutePrefixes(tc config.TUN, routes []config.Route) []netip.Prefix {
	if !tc.InstallRoutes {
		return nil
	}
	var out []netip.Prefix
	for _, r := range routes {
		p := r.Prefix.Masked()
		if (connectedSubnets && isAddressSubnet(p, tc.Addresses)) || slices.Contains(out, p) {
			continue
		}
		out = append(out, p)
	}
	return out
}

// isAddressSubnet reports whether p is the subnet of one of addrs.
func isAddressSubnet(p netip.Prefix, addrs []netip.Prefix) bool {
	for _, a := range addrs {
		if a.Masked() == p.Masked() {
			return true
		}
	}
	return false
}

// endpoint is a remote address a protocol instance's transport sends to.
type endpoint struct {
	addr     netip.AddrPort
	protocol string // the instance's name
	// marked: the instance's sockets carry FullTunnelMark (it runs in the
	// daemon, which marks them), so a full tunnel does not capture it.
	marked bool
}

func (e endpoint) String() string {
	return fmt.Sprintf("protocol %q's endpoint %s", e.protocol, e.addr)
}

// endpointsOf lists the endpoints of every protocol instance whose settings
// implement protocols.Underlay and whose datagrams leave this machine's
// routing: instances in the daemon, marked when mark is set, and instances
// on a protocol host that runs here (spawned, or listening on loopback),
// never marked. A host elsewhere follows its own machine's routes.
func endpointsOf(cfg *config.Config, ps []parsedProtocol, mark uint32) []endpoint {
	here := map[string]bool{}
	for _, h := range cfg.Hosts {
		here[h.Name] = h.Spawn || h.Listen.Addr().Unmap().IsLoopback()
	}
	var out []endpoint
	for _, p := range ps {
		u, ok := p.settings.(protocols.Underlay)
		if !ok || (p.cfg.Host != "" && !here[p.cfg.Host]) {
			continue
		}
		for _, a := range u.Endpoints() {
			out = append(out, endpoint{addr: a, protocol: p.cfg.Name, marked: mark != 0 && p.cfg.Host == ""})
		}
	}
	return out
}

// checkCaptures refuses, with the route's position, a kernel route that
// certainly captures a protocol's endpoint whatever the kernel's table
// holds: a host route to it (nothing can be more specific). The other cases
// depend on the kernel's routes and are refused at start (kernelCaptures).
func checkCaptures(cfg *config.Config, ps []parsedProtocol) config.Errors {
	if !cfg.TUN.InstallRoutes {
		return nil
	}
	eps := endpointsOf(cfg, ps, 0)
	var errs config.Errors
	for i, r := range cfg.Routes {
		for _, e := range eps {
			if r.Prefix.Bits() == e.addr.Addr().BitLen() && r.Prefix.Contains(e.addr.Addr()) {
				errs = append(errs, cfg.Errorf(r.Pos, fmt.Sprintf("routes[%d].prefix", i),
					"%s captures %s: its datagrams would enter the tunnel they carry (a routing loop); "+
						"leave the endpoint out of the tunnel's routes", r.Prefix, e))
			}
		}
	}
	return errs
}

// underlayMatch is what the kernel's lookup of an endpoint found before the
// node installs anything: the prefix of the route its datagrams follow.
type underlayMatch struct {
	prefix netip.Prefix // invalid: no route
	local  bool         // the endpoint is a local address
	desc   string       // the route, for error messages ("10.91.0.0/24 dev eth0")
}

// lookupFunc asks the kernel which route an address follows, as a socket
// carrying FullTunnelMark would.
type lookupFunc func(netip.Addr) (underlayMatch, error)

// kernelCaptures refuses the routes of install that would capture an
// endpoint, given the route each endpoint follows now:
//   - a route in the main table captures e when it contains e and is at
//     least as specific as e's route (or e has none);
//   - a full tunnel captures e only when e's sockets are not marked (a
//     protocol host) and e's route is a default route (or e has none),
//     which the suppress rule skips.
func kernelCaptures(install []netip.Prefix, eps []endpoint, lookup lookupFunc) error {
	var errs []error
	for _, e := range eps {
		ip := e.addr.Addr()
		var covering []netip.Prefix
		for _, p := range install {
			if p.Contains(ip) {
				covering = append(covering, p)
			}
		}
		if len(covering) == 0 {
			continue
		}
		m, err := lookup(ip)
		if err != nil {
			return fmt.Errorf("look up the route to %s: %w", e, err)
		}
		if m.local {
			continue // local addresses are looked up before any route
		}
		now := "no route"
		if m.prefix.IsValid() {
			now = "the route " + m.desc
		}
		for _, p := range covering {
			captured := false
			switch {
			case isFullTunnel(p):
				captured = !e.marked && (!m.prefix.IsValid() || m.prefix.Bits() == 0)
			default:
				captured = !m.prefix.IsValid() || m.prefix.Bits() <= p.Bits()
			}
			if !captured {
				continue
			}
			why := fmt.Sprintf("route %s captures %s (which follows %s now): its datagrams would enter the tunnel they carry (a routing loop)", p, e, now)
			if isFullTunnel(p) {
				why += "; the protocol runs on a protocol host, whose sockets do not carry the full tunnel's firewall mark: run it in the daemon or give its endpoint a more specific route"
			} else {
				why += "; leave the endpoint out of the tunnel's routes, or route the whole default (0.0.0.0/0, ::/0), which the node installs with policy routing"
			}
			errs = append(errs, fmt.Errorf("%s", why))
		}
	}
	return errors.Join(errs...)
}
