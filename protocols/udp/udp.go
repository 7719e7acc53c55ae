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
//
// The transport is golang.zx2c4.com/wireguard/conn.StdNetBind, which batches
// with recvmmsg/sendmmsg and UDP GSO/GRO on Linux. See README.md for the
// counters, drop reasons and limits.
package udp

import (
	"fmt"
	"net/netip"
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
	// address of both families (a limit of conn.StdNetBind; see README.md).
	Listen netip.AddrPort
	// Peer is the only remote address packets are sent to and accepted from.
	Peer netip.AddrPort
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
	if len(errs) > 0 {
		return nil, errs
	}
	return Settings{Listen: listen, Peer: peer}, nil
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
