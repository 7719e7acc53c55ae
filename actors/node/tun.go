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
// if asked, installs a kernel route into it for every route prefix. Closing
// the device removes the interface and with it addresses and routes.
func openTUN(tc config.TUN, routes []config.Route) (tun.Device, error) {
	dev, err := tun.CreateTUN(tc.Name, tc.MTU)
	if err != nil {
		return nil, fmt.Errorf("create tun %q: %w", tc.Name, err)
	}
	if err := configureTUN(tc, routes); err != nil {
		dev.Close()
		return nil, err
	}
	return dev, nil
}

func configureTUN(tc config.TUN, routes []config.Route) error {
	link, err := netlink.LinkByName(tc.Name)
	if err != nil {
		return fmt.Errorf("find tun %q: %w", tc.Name, err)
	}
	for _, p := range tc.Addresses {
		addr := &netlink.Addr{IPNet: ipNet(p)}
		if p.Addr().Is6() {
			addr.Flags = unix.IFA_F_NODAD // usable at once, no duplicate address detection on a point-to-point device
		}
		if err := netlink.AddrReplace(link, addr); err != nil {
			return fmt.Errorf("add address %s to %q: %w", p, tc.Name, err)
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("bring up %q: %w", tc.Name, err)
	}
	if !tc.InstallRoutes {
		return nil
	}
	for _, r := range routes {
		route := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: ipNet(r.Prefix.Masked())}
		if err := netlink.RouteReplace(route); err != nil {
			return fmt.Errorf("%s: install route %s via %q: %w", r.Pos, r.Prefix, tc.Name, err)
		}
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
