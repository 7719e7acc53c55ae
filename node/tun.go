package node

import (
	"fmt"
	"net/netip"

	"golang.zx2c4.com/wireguard/tun"

	"switchyard/config"
)

// tunControl changes the addresses and kernel routes of a TUN the node
// created. Linux: netlink (tun_linux.go); macOS and FreeBSD: ifconfig and
// route (tun_bsd.go). Errors name the device, the address or route and the
// operation.
type tunControl interface {
	// device is the interface's name (on macOS the kernel's utunN).
	device() string
	up() error
	addAddress(p netip.Prefix) error
	delAddress(p netip.Prefix) error
	// addRoute installs the route to p into the TUN (a full tunnel with
	// policy routing, routes.go), tagged as the node's own. It never
	// replaces a route: one that exists is an error that names it. src, if
	// valid, is the route's preferred source (preferredSource).
	addRoute(p netip.Prefix, src netip.Addr) error
	// delRoute removes the route to p the node installed, and nothing else.
	delRoute(p netip.Prefix) error
	// close removes what the node installed that does not go away with the
	// device (the full tunnel's policy rules).
	close() error
}

// openTUN creates the TUN device, gives it its addresses, brings it up and
// installs the kernel routes of routes.go (prefixes). It returns the device,
// its control and the prefixes it installed. On error it removes what it
// made: the device, and with it its addresses and routes, and any rule.
func openTUN(tc config.TUN, prefixes []netip.Prefix, routes []config.Route) (tun.Device, tunControl, []netip.Prefix, error) {
	dev, name, err := createTUN(tc.Name, tc.MTU)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("create tun %q: %w", tc.Name, err)
	}
	ctl, err := newTunControl(name)
	if err != nil {
		dev.Close()
		return nil, nil, nil, err
	}
	installed, err := configureTUN(ctl, tc, prefixes, routes)
	if err != nil {
		dev.Close()
		_ = ctl.close()
		return nil, nil, nil, err
	}
	return dev, ctl, installed, nil
}

func configureTUN(ctl tunControl, tc config.TUN, prefixes []netip.Prefix, routes []config.Route) ([]netip.Prefix, error) {
	for _, p := range tc.Addresses {
		if err := ctl.addAddress(p); err != nil {
			return nil, err
		}
	}
	if err := ctl.up(); err != nil {
		return nil, err
	}
	installed := make([]netip.Prefix, 0, len(prefixes))
	for _, p := range prefixes {
		if err := ctl.addRoute(p, preferredSource(p, tc.Addresses)); err != nil {
			return nil, fmt.Errorf("%s: %w", routePos(routes, p), err)
		}
		installed = append(installed, p)
	}
	return installed, nil
}

// routePos is where the route to p is in the config, for error messages.
func routePos(routes []config.Route, p netip.Prefix) string {
	for i, r := range routes {
		if r.Prefix.Masked() == p && r.Pos.Line > 0 {
			return fmt.Sprintf("%s: routes[%d]", r.Pos, i)
		}
		if r.Prefix.Masked() == p {
			return fmt.Sprintf("routes[%d]", i)
		}
	}
	return "routes"
}

// preferredSource is the preferred source of a config route to p: the
// first IPv4 TUN address in p, if any.
func preferredSource(p netip.Prefix, addrs []netip.Prefix) netip.Addr {
	for _, a := range addrs {
		if a.Addr().Is4() && p.Addr().Is4() && p.Contains(a.Addr()) {
			return a.Addr()
		}
	}
	return netip.Addr{}
}
