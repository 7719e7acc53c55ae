// ICMP errors for reject routes.
//
// A rejected packet meets this file in this order (called from Split's
// onReject, which borrows the packet):
//  1. RateLimiter.Allow (ratelimit.go) decides whether an error may be sent now.
//  2. Unreachable checks that the packet may be answered (RFC 1122 §3.2.2,
//     RFC 4443 §2.4(e)): not itself an ICMP error, not from or to a
//     multicast or unspecified address, not a non-first IPv4 fragment.
//  3. It writes, after the headroom of a pool buffer, an IP header from our
//     address to the packet's source, the ICMP header (type 3 code 13, or
//     ICMPv6 type 1 code 1) and as much of the packet as the minimum MTU
//     allows, then both checksums.
//  4. The caller appends the buffer to a batch for the injector.
package router

import (
	"encoding/binary"
	"net/netip"

	"switchyard/packet"
)

// ICMP types and codes written by Unreachable.
const (
	icmpv4DestUnreach      = 3
	icmpv4CodeAdminProhib  = 13
	icmpv6DestUnreach      = 1
	icmpv6CodeAdminProhib  = 1
	icmpHeaderBytes        = 8
	icmpv6Redirect         = 137
	icmpv6FirstInfoType    = 128
	ipv6NextHopByHop       = 0
	ipv6NextRouting        = 43
	ipv6NextFragment       = 44
	ipv6NextDestOpts       = 60
	ipv6NextAH             = 51
	ipv4FlagsFragOffMask   = 0x1fff
	ipv4FlagDontFragment   = 0x4000
	ipv4TOSInternetControl = 0xc0
)

// Unreachable writes into dst an ICMP error answering orig, and returns the
// error's length in bytes (it starts at dst[packet.Headroom]), or 0 when orig
// must not be answered.
//
// dst is a pool buffer (normally len(dst) == packet.BufferBytes); nothing is
// written outside dst[packet.Headroom:len(dst)], and if that room is too small
// for a useful error the result is 0. orig is borrowed and must not overlap
// dst.
//
// For IPv4 the error is "destination unreachable, communication
// administratively prohibited" (type 3, code 13) quoting orig's header and as
// much of its payload as fits in MaxICMPv4ErrorBytes (at least the 8 bytes
// RFC 792 asks for). For IPv6 it is "destination unreachable, administratively
// prohibited" (type 1, code 1) quoting as much of orig as fits in
// MaxICMPv6ErrorBytes (RFC 4443 §3.1). The error comes from src (our own
// address on the TUN; if src is invalid or of the other family, orig's
// destination is used) and goes to orig's source, with TTL/hop limit
// ICMPErrorHopLimit.
//
// orig is not answered (0) when it fails packet.Check, is itself an ICMP
// error (or an ICMPv6 redirect), has a multicast, broadcast or unspecified
// source or destination, is a non-first IPv4 fragment, or when the source
// address to use is multicast or unspecified.
func Unreachable(dst []byte, orig []byte, src netip.Addr) int {
	if packet.Check(orig) != nil || len(dst) < packet.Headroom {
		return 0
	}
	switch packet.Version(orig) {
	case 4:
		return unreachable4(dst[packet.Headroom:], orig, src.Unmap())
	case 6:
		return unreachable6(dst[packet.Headroom:], orig, src)
	}
	return 0
}

// unreachable4 answers an IPv4 packet that passed packet.Check; out is the
// room after the headroom.
func unreachable4(out, orig []byte, src netip.Addr) int {
	h := packet.IPv4(orig)
	ihl := h.IHL()
	origSrc := netip.AddrFrom4([4]byte(orig[12:16]))
	origDst := netip.AddrFrom4([4]byte(orig[16:20]))
	if !answerable4(origSrc) || !answerable4(origDst) {
		return 0
	}
	if binary.BigEndian.Uint16(orig[6:8])&ipv4FlagsFragOffMask != 0 {
		return 0 // non-first fragment: RFC 1122 §3.2.2
	}
	if h.Protocol() == packet.ProtoICMP {
		// Answer only ICMP queries (echo etc.); a truncated ICMP header is
		// not known to be a query.
		if len(orig) < ihl+1 || isICMPv4Error(orig[ihl]) {
			return 0
		}
	}
	if !src.Is4() {
		src = origDst
	}
	if !answerable4(src) {
		return 0
	}

	const hdrs = packet.IPv4HeaderBytes + icmpHeaderBytes
	quote := min(len(orig), MaxICMPv4ErrorBytes-hdrs, len(out)-hdrs)
	if quote < min(len(orig), ihl+8) {
		return 0 // not even the header and 8 bytes fit
	}
	n := hdrs + quote
	p := out[:n]

	// IPv4 header.
	p[0] = 0x45
	p[1] = ipv4TOSInternetControl
	binary.BigEndian.PutUint16(p[2:4], uint16(n))
	binary.BigEndian.PutUint16(p[4:6], 0) // ID: the packet is atomic (DF, RFC 6864)
	binary.BigEndian.PutUint16(p[6:8], ipv4FlagDontFragment)
	p[8] = ICMPErrorHopLimit
	p[9] = packet.ProtoICMP
	p[10], p[11] = 0, 0
	s4, d4 := src.As4(), origSrc.As4()
	copy(p[12:16], s4[:])
	copy(p[16:20], d4[:])
	binary.BigEndian.PutUint16(p[10:12], packet.Checksum(p[:packet.IPv4HeaderBytes], 0))

	// ICMP header and quote.
	m := p[packet.IPv4HeaderBytes:]
	m[0] = icmpv4DestUnreach
	m[1] = icmpv4CodeAdminProhib
	clear(m[2:8]) // checksum, then 4 unused bytes
	copy(m[icmpHeaderBytes:], orig[:quote])
	binary.BigEndian.PutUint16(m[2:4], packet.Checksum(m, 0))
	return n
}

// answerable4 reports whether a is an IPv4 address an error may come from or
// go to: not unspecified, multicast or the limited broadcast.
func answerable4(a netip.Addr) bool {
	return a.IsValid() && !a.IsUnspecified() && !a.IsMulticast() && a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// isICMPv4Error reports whether an ICMP type is an error message (RFC 1122
// §3.2.2): anything not a known query or reply is treated as an error, so
// that an unknown type is never answered.
func isICMPv4Error(typ byte) bool {
	switch typ {
	case 0, 8, // echo reply, echo request
		13, 14, // timestamp, timestamp reply
		15, 16, // information request/reply
		17, 18, // address mask request/reply
		9, 10, // router advertisement, solicitation
		42, 43: // extended echo request/reply (RFC 8335)
		return false
	}
	return true
}

// unreachable6 answers an IPv6 packet that passed packet.Check; out is the
// room after the headroom.
func unreachable6(out, orig []byte, src netip.Addr) int {
	origSrc := netip.AddrFrom16([16]byte(orig[8:24]))
	origDst := netip.AddrFrom16([16]byte(orig[24:40]))
	if !answerable6(origSrc) || !answerable6(origDst) {
		return 0
	}
	if !icmpv6Answerable(orig) {
		return 0
	}
	if !src.Is6() || src.Is4In6() {
		src = origDst
	}
	src = src.WithZone("")
	if !answerable6(src) {
		return 0
	}

	const hdrs = packet.IPv6HeaderBytes + icmpHeaderBytes
	quote := min(len(orig), MaxICMPv6ErrorBytes-hdrs, len(out)-hdrs)
	if quote < min(len(orig), packet.IPv6HeaderBytes+8) {
		return 0 // not even the header and 8 bytes fit
	}
	n := hdrs + quote
	p := out[:n]

	// IPv6 header.
	binary.BigEndian.PutUint32(p[0:4], 6<<28) // traffic class 0, flow label 0
	binary.BigEndian.PutUint16(p[4:6], uint16(n-packet.IPv6HeaderBytes))
	p[6] = packet.ProtoICMPv6
	p[7] = ICMPErrorHopLimit
	s16, d16 := src.As16(), origSrc.As16()
	copy(p[8:24], s16[:])
	copy(p[24:40], d16[:])

	// ICMPv6 header and quote; the checksum covers the pseudo-header.
	m := p[packet.IPv6HeaderBytes:]
	m[0] = icmpv6DestUnreach
	m[1] = icmpv6CodeAdminProhib
	clear(m[2:8])
	copy(m[icmpHeaderBytes:], orig[:quote])
	sum := packet.PseudoHeaderSum(src, origSrc, packet.ProtoICMPv6, len(m))
	binary.BigEndian.PutUint16(m[2:4], packet.Checksum(m, sum))
	return n
}

// answerable6 reports whether a is an IPv6 address an error may come from or
// go to: not unspecified or multicast (RFC 4443 §2.4(e)).
func answerable6(a netip.Addr) bool {
	return a.IsValid() && !a.IsUnspecified() && !a.IsMulticast()
}

// icmpv6Answerable walks orig's extension headers to its upper-layer header
// and reports false when that is an ICMPv6 error or redirect (RFC 4443
// §2.4(e)) or when the chain cannot be followed (truncated, too long, or
// the upper layer is in a later fragment and we cannot tell).
func icmpv6Answerable(orig []byte) bool {
	next := orig[6]
	off := packet.IPv6HeaderBytes
	for range MaxIPv6ExtHeaders {
		switch next {
		case ipv6NextHopByHop, ipv6NextRouting, ipv6NextDestOpts:
			if len(orig) < off+2 {
				return false
			}
			next, off = orig[off], off+(int(orig[off+1])+1)*8
		case ipv6NextAH:
			if len(orig) < off+2 {
				return false
			}
			next, off = orig[off], off+(int(orig[off+1])+2)*4
		case ipv6NextFragment:
			if len(orig) < off+8 {
				return false
			}
			if binary.BigEndian.Uint16(orig[off+2:off+4])&0xfff8 != 0 {
				// Non-first fragment: its payload is not the upper-layer
				// header. RFC 4443 allows an answer unless the fragmented
				// packet is ICMPv6, which may be an error.
				return orig[off] != packet.ProtoICMPv6
			}
			next, off = orig[off], off+8
		case packet.ProtoICMPv6:
			if len(orig) < off+1 {
				return false
			}
			typ := orig[off]
			return typ >= icmpv6FirstInfoType && typ != icmpv6Redirect
		default:
			return true // an upper layer (TCP, UDP, …) or no next header
		}
	}
	return false
}
