package node

// The ifconfig(8) and route(8) command lines of macOS and FreeBSD
// (tun_bsd.go), as wireguard-go's wg-quick writes them there. They live in
// a file without build tags so that their tests run on Linux too.

import "net/netip"

// BSD tools, by absolute path: both systems keep them in /sbin.
const (
	ifconfigPath = "/sbin/ifconfig"
	routePath    = "/sbin/route"
)

// ifconfigAddressArgs adds (or deletes) address p on the point-to-point
// device dev: `dev inet 10.90.0.1/24 10.90.0.1 alias` (the destination is
// the address itself), `dev inet6 fd90::1/64 alias`; deletion names the
// address alone with -alias.
func ifconfigAddressArgs(dev string, p netip.Prefix, add bool) []string {
	fam := "inet"
	if p.Addr().Is6() {
		fam = "inet6"
	}
	if !add {
		return []string{dev, fam, p.Addr().String(), "-alias"}
	}
	if p.Addr().Is4() {
		return []string{dev, fam, p.String(), p.Addr().String(), "alias"}
	}
	return []string{dev, fam, p.String(), "alias"}
}

// routeArgs adds (or deletes) the route to p through the device dev: `-q -n
// add -inet 10.66.0.0/16 -interface utun5`. route(8) never replaces an
// existing route: it fails with "File exists".
func routeArgs(dev string, p netip.Prefix, add bool) []string {
	op := "delete"
	if add {
		op = "add"
	}
	fam := "-inet"
	if p.Addr().Is6() {
		fam = "-inet6"
	}
	return []string{"-q", "-n", op, fam, p.Masked().String(), "-interface", dev}
}
