package packet

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// IP protocol numbers used by the data path.
const (
	ProtoICMP   = 1
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoICMPv6 = 58
)

// Errors from Check. They describe why a packet is malformed; callers count
// the drop and go on with the next packet.
var (
	ErrTooShort    = errors.New("packet shorter than its IP header")
	ErrBadVersion  = errors.New("IP version is neither 4 nor 6")
	ErrBadIHL      = errors.New("IPv4 header length below 20 bytes or beyond the packet")
	ErrBadTotalLen = errors.New("IP length field disagrees with the packet size")
)

// Version returns the IP version nibble of pkt (4 or 6), or 0 if pkt is empty.
func Version(pkt []byte) int {
	if len(pkt) == 0 {
		return 0
	}
	return int(pkt[0] >> 4)
}

// Check validates the IP header of pkt: version, header length, and that the
// length field matches len(pkt). It borrows pkt and does not allocate.
func Check(pkt []byte) error {
	switch Version(pkt) {
	case 4:
		if len(pkt) < IPv4HeaderBytes {
			return ErrTooShort
		}
		ihl := int(pkt[0]&0x0f) * 4
		if ihl < IPv4HeaderBytes || ihl > len(pkt) {
			return ErrBadIHL
		}
		if int(binary.BigEndian.Uint16(pkt[2:4])) != len(pkt) {
			return ErrBadTotalLen
		}
		return nil
	case 6:
		if len(pkt) < IPv6HeaderBytes {
			return ErrTooShort
		}
		if int(binary.BigEndian.Uint16(pkt[4:6]))+IPv6HeaderBytes != len(pkt) {
			return ErrBadTotalLen
		}
		return nil
	case 0:
		return ErrTooShort
	default:
		return ErrBadVersion
	}
}

// Destination returns the destination address of an IPv4 or IPv6 packet. It
// reports false for a packet too short to hold one. It borrows pkt and does
// not allocate.
func Destination(pkt []byte) (netip.Addr, bool) {
	switch Version(pkt) {
	case 4:
		if len(pkt) < IPv4HeaderBytes {
			return netip.Addr{}, false
		}
		return netip.AddrFrom4([4]byte(pkt[16:20])), true
	case 6:
		if len(pkt) < IPv6HeaderBytes {
			return netip.Addr{}, false
		}
		return netip.AddrFrom16([16]byte(pkt[24:40])), true
	}
	return netip.Addr{}, false
}

// Source returns the source address of an IPv4 or IPv6 packet.
func Source(pkt []byte) (netip.Addr, bool) {
	switch Version(pkt) {
	case 4:
		if len(pkt) < IPv4HeaderBytes {
			return netip.Addr{}, false
		}
		return netip.AddrFrom4([4]byte(pkt[12:16])), true
	case 6:
		if len(pkt) < IPv6HeaderBytes {
			return netip.Addr{}, false
		}
		return netip.AddrFrom16([16]byte(pkt[8:24])), true
	}
	return netip.Addr{}, false
}

// IPv4 is a view of an IPv4 header. It borrows the packet.
type IPv4 []byte

// IHL returns the header length in bytes.
func (h IPv4) IHL() int { return int(h[0]&0x0f) * 4 }

// Protocol returns the next-header protocol number.
func (h IPv4) Protocol() uint8 { return h[9] }

// TTL returns the time-to-live field.
func (h IPv4) TTL() uint8 { return h[8] }

// IPv6 is a view of an IPv6 header. It borrows the packet.
type IPv6 []byte

// NextHeader returns the next-header field.
func (h IPv6) NextHeader() uint8 { return h[6] }

// HopLimit returns the hop-limit field.
func (h IPv6) HopLimit() uint8 { return h[7] }

// Checksum returns the Internet checksum (RFC 1071) of b folded with the
// partial sum initial (for pseudo-headers).
func Checksum(b []byte, initial uint32) uint16 {
	sum := initial
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = (sum >> 16) + (sum & 0xffff)
	}
	return ^uint16(sum)
}

// PseudoHeaderSum returns the partial checksum of the IPv4 or IPv6
// pseudo-header for an upper-layer packet of length n and protocol proto.
func PseudoHeaderSum(src, dst netip.Addr, proto uint8, n int) uint32 {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
	}
	if src.Is4() {
		s, d := src.As4(), dst.As4()
		add(s[:])
		add(d[:])
	} else {
		s, d := src.As16(), dst.As16()
		add(s[:])
		add(d[:])
	}
	sum += uint32(proto)
	sum += uint32(n>>16) + uint32(n&0xffff)
	return sum
}
