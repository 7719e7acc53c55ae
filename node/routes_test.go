package node

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"switchyard/config"
)

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// tunSubnets is what kernelRoutePrefixes keeps of the TUN's own subnets:
// nothing where the kernel routes them (Linux), all of them elsewhere.
func tunSubnets(ss ...string) []netip.Prefix {
	if connectedSubnets {
		return nil
	}
	return prefixes(ss...)
}

func TestKernelRoutePrefixes(t *testing.T) {
	addrs := prefixes("10.90.0.1/24", "fd90::1/64")
	routes := func(ps ...string) []config.Route {
		var out []config.Route
		for _, p := range prefixes(ps...) {
			out = append(out, config.Route{Prefix: p})
		}
		return out
	}
	tests := []struct {
		name    string
		install bool
		routes  []config.Route
		want    []netip.Prefix
	}{
		{"off", false, routes("10.66.0.0/16"), nil},
		{"TUN subnets are the kernel's (Linux)", true, routes("10.90.0.0/24", "fd90::/64"), tunSubnets("10.90.0.0/24", "fd90::/64")},
		{"others installed once, masked", true, routes("10.90.0.0/24", "10.66.0.0/16", "::/0", "10.66.1.2/16"),
			append(tunSubnets("10.90.0.0/24"), prefixes("10.66.0.0/16", "::/0")...)},
		{"a wider prefix than the TUN subnet is installed", true, routes("10.90.0.0/16"), prefixes("10.90.0.0/16")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := kernelRoutePrefixes(config.TUN{Addresses: addrs, InstallRoutes: tt.install}, tt.routes)
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// captureConfig is a config with a udp protocol whose peer is peer, a
// wireguard-less route list, and install_routes as given.
func captureConfig(t *testing.T, peer string, install bool, routes ...string) *config.Config {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "node: {name: c}\ntun: {name: sy0, addresses: [10.90.0.1/24], install_routes: %t}\nroutes:\n", install)
	for _, r := range routes {
		fmt.Fprintf(&b, "  - {prefix: %q, to: peer}\n", r)
	}
	listen := "0.0.0.0:7000"
	if strings.HasPrefix(peer, "[") {
		listen = "[::]:7000"
	}
	fmt.Fprintf(&b, "protocols:\n  - name: peer\n    type: udp\n    settings: {listen: %q, peer: %q}\n", listen, peer)
	cfg, err := config.Parse("gw.yaml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestCheckRefusesCertainCaptures: check refuses a host route to a
// protocol's endpoint, with the route's position; it cannot know the rest.
func TestCheckRefusesCertainCaptures(t *testing.T) {
	tests := []struct {
		name    string
		peer    string
		install bool
		routes  []string
		wantErr string // "" means ok
	}{
		{"host route to the peer", "10.91.0.2:7000", true, []string{"10.90.0.0/24", "10.91.0.2/32"},
			`gw.yaml:5:6: routes[1].prefix: 10.91.0.2/32 captures protocol "peer"'s endpoint 10.91.0.2:7000`},
		{"IPv6 host route to the peer", "[fd91::2]:7000", true, []string{"fd91::2/128"},
			`routes[0].prefix: fd91::2/128 captures protocol "peer"'s endpoint [fd91::2]:7000`},
		{"without install_routes the kernel is the operator's", "10.91.0.2:7000", false, []string{"10.91.0.2/32"}, ""},
		{"a subnet depends on the kernel's table", "10.91.0.2:7000", true, []string{"10.91.0.0/24"}, ""},
		{"a full tunnel is policy-routed", "10.91.0.2:7000", true, []string{"0.0.0.0/0"}, ""},
		{"another host", "10.91.0.2:7000", true, []string{"10.91.0.3/32"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Check(captureConfig(t, tt.peer, tt.install, tt.routes...))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Check: %v, want ok", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Check: %v\nwant an error containing %q", err, tt.wantErr)
			}
		})
	}
}

// fakeLookup answers kernel lookups from a table of address → route.
func fakeLookup(table map[string]string) lookupFunc {
	return func(ip netip.Addr) (underlayMatch, error) {
		r, ok := table[ip.String()]
		switch {
		case !ok:
			return underlayMatch{}, fmt.Errorf("unexpected lookup of %s", ip)
		case r == "none":
			return underlayMatch{}, nil
		case r == "local":
			return underlayMatch{local: true}, nil
		}
		return underlayMatch{prefix: netip.MustParsePrefix(r), desc: r + " dev eth0"}, nil
	}
}

func TestKernelCaptures(t *testing.T) {
	ep := func(addr string, marked bool) endpoint {
		return endpoint{addr: netip.MustParseAddrPort(addr), protocol: "peer", marked: marked}
	}
	kernel := fakeLookup(map[string]string{
		"10.91.0.2":   "10.91.0.0/24", // on the LAN
		"192.0.2.7":   "0.0.0.0/0",    // through the default route
		"10.50.0.9":   "none",
		"10.91.0.1":   "local",
		"2001:db8::7": "::/0",
	})
	tests := []struct {
		name    string
		install []netip.Prefix
		eps     []endpoint
		wantErr string // "" means no capture
	}{
		{"a wider route leaves the LAN's more specific route", prefixes("10.0.0.0/8"), []endpoint{ep("10.91.0.2:7000", true)}, ""},
		{"the LAN's subnet itself", prefixes("10.91.0.0/24"), []endpoint{ep("10.91.0.2:7000", true)},
			"route 10.91.0.0/24 captures protocol \"peer\"'s endpoint 10.91.0.2:7000 (which follows the route 10.91.0.0/24 dev eth0 now)"},
		{"a narrower route", prefixes("10.91.0.0/25"), []endpoint{ep("10.91.0.2:7000", true)}, "route 10.91.0.0/25 captures"},
		{"half the default", prefixes("128.0.0.0/1"), []endpoint{ep("192.0.2.7:7000", true)}, "route 128.0.0.0/1 captures"},
		{"full tunnel, marked socket", prefixes("0.0.0.0/0", "::/0"), []endpoint{ep("192.0.2.7:7000", true), ep("[2001:db8::7]:7000", true)}, ""},
		{"full tunnel, unmarked socket via the default", prefixes("0.0.0.0/0"), []endpoint{ep("192.0.2.7:7000", false)},
			"route 0.0.0.0/0 captures protocol \"peer\"'s endpoint 192.0.2.7:7000 (which follows the route 0.0.0.0/0 dev eth0 now)"},
		{"full tunnel, unmarked socket on the LAN", prefixes("0.0.0.0/0"), []endpoint{ep("10.91.0.2:7000", false)}, ""},
		{"no route to the endpoint", prefixes("10.0.0.0/8"), []endpoint{ep("10.50.0.9:7000", true)}, "(which follows no route now)"},
		{"a local endpoint", prefixes("10.91.0.0/24"), []endpoint{ep("10.91.0.1:7000", false)}, ""},
		{"no route covers the endpoint (no lookup)", prefixes("10.66.0.0/16"), []endpoint{ep("10.99.0.1:7000", false)}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := kernelCaptures(tt.install, tt.eps, kernel)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("got %v, want no capture", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("got %v\nwant an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestEndpointsOf(t *testing.T) {
	cfg := captureConfig(t, "10.91.0.2:7000", true, "10.66.0.0/16")
	ps, err := parse(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Hosts = []config.Host{
		{Name: "spawned", Listen: netip.MustParseAddrPort("10.0.0.5:7100"), Spawn: true},
		{Name: "loopback", Listen: netip.MustParseAddrPort("127.0.0.1:7101")},
		{Name: "elsewhere", Listen: netip.MustParseAddrPort("10.0.0.6:7100")},
	}
	for _, h := range cfg.Hosts {
		p := ps[0]
		p.cfg.Name, p.cfg.Host = "on-"+h.Name, h.Name
		ps = append(ps, p)
	}
	ep := netip.MustParseAddrPort("10.91.0.2:7000")
	got := endpointsOf(cfg, ps, FullTunnelMark)
	want := []endpoint{
		{addr: ep, protocol: "peer", marked: true},
		{addr: ep, protocol: "on-spawned", marked: false},
		{addr: ep, protocol: "on-loopback", marked: false},
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %+v, want %+v (a host elsewhere follows its own routes)", got, want)
	}
	if got := endpointsOf(cfg, ps[:1], 0); got[0].marked {
		t.Errorf("without a mark: %+v is marked", got[0])
	}
}

// TestHostCapabilities: a protocol below port 1024 on a spawned host that
// was started without CAP_NET_BIND_SERVICE is refused on reload, with its
// position; the same on a host that has it, or above 1024, is not.
func TestHostCapabilities(t *testing.T) {
	cfgWith := func(port int) *config.Config {
		src := fmt.Sprintf(`node: {name: c}
tun: {name: sy0, addresses: [10.90.0.1/24]}
hosts:
  - {name: h, listen: "127.0.0.1:7100", spawn: true}
routes:
  - {prefix: 10.90.0.0/24, to: peer}
protocols:
  - name: peer
    type: udp
    host: h
    settings: {listen: "0.0.0.0:%d", peer: "10.91.0.2:%d"}
`, port, port)
		cfg, err := config.Parse("gw.yaml", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	tests := []struct {
		name     string
		bindsLow bool
		port     int
		wantErr  string
	}{
		{"low port, host without the capability", false, 500,
			`gw.yaml:11:16: protocols[0].settings: listens below 1024 on host "h", which was started without CAP_NET_BIND_SERVICE`},
		{"low port, host with it", true, 500, ""},
		{"high port", false, 7000, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := cfgWith(tt.port)
			ps, err := parse(cfg)
			if err != nil {
				t.Fatal(err)
			}
			n := &Node{hostBindsLow: map[string]bool{"h": tt.bindsLow}}
			errs := n.hostCapabilities(cfg, ps)
			switch {
			case tt.wantErr == "" && len(errs) > 0:
				t.Errorf("got %v, want none", errs)
			case tt.wantErr != "" && (len(errs) != 1 || !strings.Contains(errs[0].Error(), tt.wantErr)):
				t.Errorf("got %v, want one error containing %q", errs, tt.wantErr)
			}
		})
	}
}
