// Package udp is the baseline protocol: each raw IP packet is the payload of
// one UDP datagram exchanged with a single configured peer, with no header of
// its own, no encryption and no handshake.
//
//	protocols:
//	  - name: peer-b
//	    type: udp
//	    settings:
//	      listen: 10.91.0.1:7000   # ip:port, required
//	      peer: 10.91.0.2:7000     # ip:port, required
//	      allowed_sources: [10.90.0.0/24, "fd90::/64"]  # optional; absent: any
//
// The transport is protocols/udpbind, which batches with recvmmsg/sendmmsg
// and UDP GSO/GRO on Linux. See README.md for the counters, drop reasons and
// limits.
package udp

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/asynkron/protoactor-go/actor"

	"switchyard/config"
	"switchyard/protocols"
)

func init() {
	protocols.Register(protocols.Info{Name: "udp", Parse: parse, New: newActor})
}

// Settings is a parsed and validated udp settings block: what Parse returns
// and what the actor is created with.
type Settings struct {
	// Listen is the local address. Only its port is bound, on every local
	// address of both families (a limit of conn.Bind; see README.md).
	Listen netip.AddrPort
	// Peer is the only remote address packets are sent to and accepted from.
	Peer netip.AddrPort
	// AllowedSources are the prefixes (masked, in file order) an inner
	// packet's source address must be in to be accepted from the peer; nil
	// accepts any source.
	AllowedSources []netip.Prefix
}

// Ports implements config.PortBinder: the listen port, bound on every
// address of both families.
func (s Settings) Ports() []config.Port {
	return []config.Port{{Network: "udp", Port: s.Listen.Port(), Field: "listen"}}
}

// Endpoints implements protocols.Underlay: the peer.
func (s Settings) Endpoints() []netip.AddrPort { return []netip.AddrPort{s.Peer} }

// ListenPorts implements protocols.Underlay: listen's port.
func (s Settings) ListenPorts() []uint16 { return []uint16{s.Listen.Port()} }

// rawSettings is the settings block as written in the config.
type rawSettings struct {
	// Listen is the local ip:port, e.g. "10.91.0.1:7000" or "[fd00::1]:7000".
	Listen string `yaml:"listen"`
	// Peer is the remote ip:port; datagrams from any other address are dropped.
	Peer string `yaml:"peer"`
	// AllowedSources lists the prefixes inner packets from the peer may come
	// from, e.g. [10.90.0.0/24, "fd90::/64"]; absent: any source.
	AllowedSources *[]string `yaml:"allowed_sources"`
}

// parse decodes a settings block strictly and validates it. It is pure: it
// opens nothing. Errors are config.Errors carrying the field's path and
// position.
func parse(s config.Settings) (any, error) {
	var raw rawSettings
	if err := s.Decode(&raw); err != nil {
		return nil, err
	}
	var errs config.Errors
	listen, lerr := parseAddrPort(raw.Listen)
	if lerr != "" {
		errs = append(errs, s.Errorf("listen", "%s", lerr))
	} else if listen.Addr().IsMulticast() {
		errs = append(errs, s.Errorf("listen", "must be a unicast or unspecified address, got %q", raw.Listen))
	}
	peer, perr := parseAddrPort(raw.Peer)
	switch {
	case perr != "":
		errs = append(errs, s.Errorf("peer", "%s", perr))
	case peer.Addr().IsUnspecified() || peer.Addr().IsMulticast():
		errs = append(errs, s.Errorf("peer", "must be a unicast address, got %q", raw.Peer))
	case lerr == "" && listen.Addr().Is4() != peer.Addr().Is4():
		errs = append(errs, s.Errorf("peer", "must be the same address family as listen (%s), got %q",
			family(listen.Addr()), raw.Peer))
	}
	sources, serrs := parseSources(s, raw.AllowedSources)
	errs = append(errs, serrs...)
	if len(errs) > 0 {
		return nil, errs
	}
	return Settings{Listen: listen, Peer: peer, AllowedSources: sources}, nil
}

// parseSources validates allowed_sources: absent is nil (any source); a
// list needs at least one prefix, each a valid, zone-free, unmapped prefix
// (or a single address), not repeated.
func parseSources(s config.Settings, raw *[]string) ([]netip.Prefix, config.Errors) {
	if raw == nil {
		return nil, nil
	}
	var errs config.Errors
	if len(*raw) == 0 {
		return nil, config.Errors{s.Errorf("allowed_sources",
			"must list at least one prefix (leave the key out to accept any source)")}
	}
	sources := make([]netip.Prefix, 0, len(*raw))
	for i, text := range *raw {
		field := fmt.Sprintf("allowed_sources[%d]", i)
		pfx, err := parsePrefix(strings.TrimSpace(text))
		switch {
		case err != nil || pfx.Addr().Zone() != "":
			errs = append(errs, s.Errorf(field, "must be a prefix such as 10.90.0.0/24 or fd90::/64, or an address, got %q", text))
		case pfx.Addr().Is4In6():
			errs = append(errs, s.Errorf(field, "write IPv4 prefixes in IPv4 form, got %q", text))
		case slices.Contains(sources, pfx.Masked()):
			errs = append(errs, s.Errorf(field, "duplicate prefix %s", pfx.Masked()))
		default:
			sources = append(sources, pfx.Masked())
		}
	}
	return sources, errs
}

// parsePrefix parses a prefix, or an address as the prefix of that address
// alone.
func parsePrefix(text string) (netip.Prefix, error) {
	if !strings.Contains(text, "/") {
		a, err := netip.ParseAddr(text)
		if err != nil {
			return netip.Prefix{}, err
		}
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q has a zone", text)
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	return netip.ParsePrefix(text)
}

// parseAddrPort parses an ip:port; it returns the reason as a message when the
// text is not one. IPv4-mapped IPv6 addresses are unmapped, so that the
// family is the one packets actually use.
func parseAddrPort(text string) (netip.AddrPort, string) {
	if text == "" {
		return netip.AddrPort{}, "is required (ip:port)"
	}
	ap, err := netip.ParseAddrPort(text)
	if err != nil {
		// Say which part is wrong when the port is the problem.
		if i := strings.LastIndexByte(text, ':'); i >= 0 {
			if p, perr := strconv.Atoi(text[i+1:]); perr == nil && (p < 1 || p > 65535) {
				return netip.AddrPort{}, fmt.Sprintf("port must be 1-65535, got %d", p)
			}
		}
		return netip.AddrPort{}, fmt.Sprintf("must be ip:port, got %q", text)
	}
	if ap.Port() == 0 {
		return netip.AddrPort{}, "port must be 1-65535, got 0"
	}
	if ap.Addr().Zone() != "" {
		return netip.AddrPort{}, fmt.Sprintf("IPv6 zones are not supported, got %q", text)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), ""
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// newActor returns the actor of one instance. It opens nothing: the socket is
// bound on *actor.Started.
func newActor(inst protocols.Instance) actor.Actor {
	set, ok := inst.Settings.(Settings)
	if !ok {
		panic(fmt.Sprintf("udp %s: settings of type %T, want udp.Settings", inst.Name, inst.Settings))
	}
	return newUDPActor(inst.Name, set, inst.Env)
}
