//go:build darwin || freebsd

package node

// The TUN's addresses and routes on macOS and FreeBSD, through ifconfig(8)
// and route(8) as wireguard-go's wg-quick does there. Built, not run: the
// project's machines are Linux (README, Security).

import (
	"bytes"
	"fmt"
	"net/netip"
	"os/exec"
	"regexp"
	"runtime"
	"strings"

	"golang.zx2c4.com/wireguard/tun"
)

// macOS and FreeBSD: no firewall mark on sockets and no policy routing here,
// so no full tunnel; a point-to-point TUN gets no route to its subnet.
const (
	marksSockets     = false
	connectedSubnets = false
)

// lookupRoute is nil: the capture check at start needs tun_linux.go's
// kernel lookup; here only check's (host routes to an endpoint) applies.
var lookupRoute lookupFunc

// utunName is what macOS accepts as a utun device name.
var utunName = regexp.MustCompile(`^utun[0-9]*$`)

func createTUN(name string, mtu int) (tun.Device, string, error) {
	if runtime.GOOS == "darwin" && !utunName.MatchString(name) {
		name = "utun" // macOS names its utun devices itself; the log says which
	}
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

// ifconfigTUN is a TUN the node created, changed with ifconfig and route.
type ifconfigTUN struct{ name string }

func newTunControl(name string) (tunControl, error) { return &ifconfigTUN{name: name}, nil }

func (t *ifconfigTUN) device() string { return t.name }

func (t *ifconfigTUN) up() error { return run(ifconfigPath, t.name, "up") }

func (t *ifconfigTUN) addAddress(p netip.Prefix) error {
	if err := run(ifconfigPath, ifconfigAddressArgs(t.name, p, true)...); err != nil {
		return fmt.Errorf("add address %s to %q: %w", p, t.name, err)
	}
	return nil
}

func (t *ifconfigTUN) delAddress(p netip.Prefix) error {
	if err := run(ifconfigPath, ifconfigAddressArgs(t.name, p, false)...); err != nil {
		return fmt.Errorf("remove address %s from %q: %w", p, t.name, err)
	}
	return nil
}

func (t *ifconfigTUN) addRoute(p netip.Prefix, _ netip.Addr) error {
	if isFullTunnel(p) {
		return fmt.Errorf("install route %s via %q: a full tunnel needs policy routing and a firewall mark on the protocol sockets, "+
			"which switchyard has on Linux only; on %s, route narrower prefixes and keep the peer's endpoint out of them", p, t.name, runtime.GOOS)
	}
	err := run(routePath, routeArgs(t.name, p, true)...)
	if err != nil && strings.Contains(err.Error(), "File exists") {
		return fmt.Errorf("install route %s via %q: a route to %s exists already; switchyard never replaces a route it did not create: "+
			"remove it, or leave %s out of the routes (or set tun.install_routes: false)", p, t.name, p, p)
	}
	if err != nil {
		return fmt.Errorf("install route %s via %q: %w", p, t.name, err)
	}
	return nil
}

func (t *ifconfigTUN) delRoute(p netip.Prefix) error {
	if err := run(routePath, routeArgs(t.name, p, false)...); err != nil {
		return fmt.Errorf("delete route %s via %q: %w", p, t.name, err)
	}
	return nil
}

// close: the routes go with the device; there are no rules.
func (t *ifconfigTUN) close() error { return nil }

// run runs a tool and returns its output in the error.
func run(path string, args ...string) error {
	var out bytes.Buffer
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(out.String())
		if msg == "" {
			return fmt.Errorf("%s %s: %w", path, strings.Join(args, " "), err)
		}
		return fmt.Errorf("%s %s: %w: %s", path, strings.Join(args, " "), err, msg)
	}
	return nil
}
