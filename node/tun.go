package node

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"

	"switchyard/config"
)

// openTUN creates the TUN device, gives it its addresses, brings it up and,
// if asked, installs a kernel route into it for every route prefix. It
// returns the prefixes it installed routes for. Closing the device removes
// the interface and with it addresses and routes.
func openTUN(tc config.TUN, routes []config.Route) (tun.Device, []netip.Prefix, error) {
	dev, err := tun.CreateTUN(tc.Name, tc.MTU)
	if err != nil {
		return nil, nil, fmt.Errorf("create tun %q: %w", tc.Name, err)
	}
	installed, err := configureTUN(tc, routes)
	if err != nil {
		dev.Close()
		return nil, nil, err
	}
	return dev, installed, nil
}

func configureTUN(tc config.TUN, routes []config.Route) ([]netip.Prefix, error) {
	link, err := netlink.LinkByName(tc.Name)
	if err != nil {
		return nil, fmt.Errorf("find tun %q: %w", tc.Name, err)
	}
	for _, p := range tc.Addresses {
		if err := addAddress(link, p); err != nil {
			return nil, fmt.Errorf("add address %s to %q: %w", p, tc.Name, err)
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("bring up %q: %w", tc.Name, err)
	}
	if !tc.InstallRoutes {
		return nil, nil
	}
	installed := make([]netip.Prefix, 0, len(routes))
	for _, r := range routes {
		if err := addKernelRoute(link, r.Prefix, tc.Addresses); err != nil {
			return nil, fmt.Errorf("%s: install route %s via %q: %w", r.Pos, r.Prefix, tc.Name, err)
		}
		installed = append(installed, r.Prefix.Masked())
	}
	return installed, nil
}

func addAddress(link netlink.Link, p netip.Prefix) error {
	addr := &netlink.Addr{IPNet: ipNet(p)}
	if p.Addr().Is6() {
		addr.Flags = unix.IFA_F_NODAD // usable at once, no duplicate address detection on a point-to-point device
	}
	return netlink.AddrReplace(link, addr)
}

func delAddress(link netlink.Link, p netip.Prefix) error {
	return netlink.AddrDel(link, &netlink.Addr{IPNet: ipNet(p)})
}

// addKernelRoute installs (or replaces) the route to p into the TUN. When
// one of the TUN's addresses lies in p, it becomes the route's preferred
// source, as on the connected route the kernel made for that address and
// this route may replace: without it, traffic to p would leave from the
// TUN's first address instead.
func addKernelRoute(link netlink.Link, p netip.Prefix, addrs []netip.Prefix) error {
	r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: ipNet(p.Masked())}
	for _, a := range addrs {
		if a.Addr().Is4() && p.Addr().Is4() && p.Contains(a.Addr()) {
			r.Src = a.Addr().AsSlice()
			break
		}
	}
	return netlink.RouteReplace(r)
}

func delKernelRoute(link netlink.Link, p netip.Prefix) error {
	return netlink.RouteDel(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: ipNet(p.Masked())})
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
