package udpbind

import (
	"net/netip"

	"golang.zx2c4.com/wireguard/conn"

	"switchyard/stats"
)

// Endpoint is a remote address and, when it was learnt from a received
// datagram, the local address and interface that datagram arrived on: Send
// then leaves from that address ("sticky" source, as conn.StdNetBind does
// on Linux).
//
// A receive function hands out the same *Endpoint for every datagram of
// one source while it stays in its cache; nothing in this package changes
// an endpoint after handing it out. ClearSrc (which wireguard-go calls only
// from conn.StdNetBind's route listener) must not run concurrently with a
// Send to the endpoint.
type Endpoint struct {
	dst     netip.AddrPort
	src     netip.Addr // invalid: the kernel chooses
	ifindex int32
}

var _ conn.Endpoint = (*Endpoint)(nil)

// NewEndpoint returns an endpoint for dst, without a source. An
// IPv4-mapped IPv6 address is taken as the IPv4 address.
func NewEndpoint(dst netip.AddrPort) *Endpoint {
	return &Endpoint{dst: netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())}
}

// AddrPort is the remote address.
func (e *Endpoint) AddrPort() netip.AddrPort { return e.dst }

// ClearSrc implements conn.Endpoint.
func (e *Endpoint) ClearSrc() { e.src, e.ifindex = netip.Addr{}, 0 }

// SrcToString implements conn.Endpoint.
func (e *Endpoint) SrcToString() string {
	if !e.src.IsValid() {
		return ""
	}
	return e.src.String()
}

// DstToString implements conn.Endpoint.
func (e *Endpoint) DstToString() string { return e.dst.String() }

// DstToBytes implements conn.Endpoint (wireguard-go's cookie MACs).
func (e *Endpoint) DstToBytes() []byte {
	b, _ := e.dst.MarshalBinary()
	return b
}

// DstIP implements conn.Endpoint.
func (e *Endpoint) DstIP() netip.Addr { return e.dst.Addr() }

// SrcIP implements conn.Endpoint.
func (e *Endpoint) SrcIP() netip.Addr { return e.src }

// Source returns the remote address of an endpoint a receive function
// returned: an *Endpoint, or on other systems a *conn.StdNetEndpoint.
func Source(ep conn.Endpoint) (netip.AddrPort, bool) {
	switch e := ep.(type) {
	case *Endpoint:
		return e.dst, true
	case *conn.StdNetEndpoint:
		return netip.AddrPortFrom(e.Addr().Unmap(), e.Port()), true
	}
	return netip.AddrPort{}, false
}

// Options configure a bind.
type Options struct {
	// Stats, when set, counts what the bind drops on receive, on the
	// protocol's FromNetwork row: each empty datagram as one in and one
	// dropped "empty", each truncated one as one in and one dropped
	// "malformed".
	Stats *stats.Counters
}
