package ipsec

// Virtual IPs through the configuration payload (RFC 7296 §3.15), IPv4:
// an initiator with `vips` asks for an address (CFG_REQUEST with
// INTERNAL_IP4_ADDRESS) and offers 0.0.0.0/0 as its selector; the responder
// with a `pool` answers with the pool's first host address (one peer per
// instance) and narrows the initiator's selector to it. The initiator
// reports the address through Env.Session (Addrs) for the node's TUN.

import (
	"net/netip"

	"switchyard/protocols/ipsec/ike"
)

// cpRequest is the initiator's configuration request, if it wants a VIP.
func (c *controller) cpRequest() []ike.Payload {
	if len(c.set.Vips) == 0 {
		return nil
	}
	var attrs []ike.CPAttr
	for _, v := range c.set.Vips {
		var val []byte
		if !v.IsUnspecified() {
			val = v.AsSlice()
		}
		attrs = append(attrs, ike.CPAttr{Type: ike.AttrInternalIP4Address, Value: val})
	}
	return []ike.Payload{{Type: ike.PayloadCP, Body: ike.AppendCP(nil, ike.CFGRequest, attrs)}}
}

// initiatorTSi is the initiator's own selector: local_ts, or any IPv4
// address when it asks for a VIP (the responder narrows it to the VIP).
func (c *controller) initiatorTSi() []netip.Prefix {
	if len(c.set.Vips) > 0 {
		return []netip.Prefix{netip.PrefixFrom(netip.IPv4Unspecified(), 0)}
	}
	return c.set.LocalTS
}

// cpReplyAddr is the INTERNAL_IP4_ADDRESS of a CFG_REPLY in ps.
func cpReplyAddr(ps []ike.Payload) (netip.Addr, bool) {
	p, ok := ike.Find(ps, ike.PayloadCP)
	if !ok {
		return netip.Addr{}, false
	}
	typ, attrs, err := ike.ParseCP(p.Body)
	if err != nil || typ != ike.CFGReply {
		return netip.Addr{}, false
	}
	for _, a := range attrs {
		if a.Type == ike.AttrInternalIP4Address && len(a.Value) >= 4 {
			addr := netip.AddrFrom4([4]byte(a.Value[:4]))
			if !addr.IsUnspecified() {
				return addr, true
			}
		}
	}
	return netip.Addr{}, false
}

// assignVIP answers a CFG_REQUEST for an IPv4 address in ps with the pool's
// first host address.
func (c *controller) assignVIP(ps []ike.Payload) (netip.Addr, bool) {
	p, ok := ike.Find(ps, ike.PayloadCP)
	if !ok {
		return netip.Addr{}, false
	}
	typ, attrs, err := ike.ParseCP(p.Body)
	if err != nil || typ != ike.CFGRequest {
		return netip.Addr{}, false
	}
	for _, a := range attrs {
		if a.Type == ike.AttrInternalIP4Address {
			return c.set.Pool.Masked().Addr().Next(), true
		}
	}
	return netip.Addr{}, false
}

// certReqs is the responder's CERTREQ in IKE_SA_INIT (auth: pubkey).
func (c *controller) certReqs() []ike.Payload {
	if c.set.Pubkey == nil {
		return nil
	}
	return []ike.Payload{c.set.Pubkey.certReq()}
}
