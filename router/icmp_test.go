package router

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"

	"switchyard/packet"
)

// check4 parses an ICMPv4 error written by Unreachable (pkt excludes the
// headroom) and verifies it independently: IP header checksum, fields,
// ICMP checksum (re-marshalled by x/net/icmp), type/code and the quote.
func check4(t *testing.T, pkt, orig []byte, wantSrc netip.Addr, wantQuote int) {
	t.Helper()
	if got := packet.Checksum(pkt[:20], 0); got != 0 {
		t.Errorf("IPv4 header checksum does not verify (folds to %#04x)", got)
	}
	h, err := ipv4.ParseHeader(pkt)
	if err != nil {
		t.Fatalf("ipv4.ParseHeader: %v", err)
	}
	origSrc := net.IP(orig[12:16])
	if h.Version != 4 || h.Len != 20 || h.TotalLen != len(pkt) || h.TTL != ICMPErrorHopLimit ||
		h.Protocol != 1 || h.FragOff != 0 || h.Flags != ipv4.DontFragment {
		t.Errorf("IPv4 header = %+v", h)
	}
	if !h.Src.Equal(net.IP(wantSrc.AsSlice())) || !h.Dst.Equal(origSrc) {
		t.Errorf("addresses %v -> %v, want %v -> %v", h.Src, h.Dst, wantSrc, origSrc)
	}
	if len(pkt) > MaxICMPv4ErrorBytes {
		t.Errorf("length %d > %d", len(pkt), MaxICMPv4ErrorBytes)
	}
	body := pkt[20:]
	if got := packet.Checksum(body, 0); got != 0 {
		t.Errorf("ICMP checksum does not verify (folds to %#04x)", got)
	}
	m, err := icmp.ParseMessage(1, body)
	if err != nil {
		t.Fatalf("icmp.ParseMessage: %v", err)
	}
	if m.Type != ipv4.ICMPTypeDestinationUnreachable || m.Code != 13 {
		t.Errorf("type/code = %v/%d, want destination unreachable/13", m.Type, m.Code)
	}
	du, ok := m.Body.(*icmp.DstUnreach)
	if !ok {
		t.Fatalf("body is %T, want *icmp.DstUnreach", m.Body)
	}
	if !bytes.Equal(du.Data, orig[:wantQuote]) {
		t.Errorf("quote: %d bytes, want the first %d bytes of orig", len(du.Data), wantQuote)
	}
	again, err := m.Marshal(nil) // computes the ICMP checksum itself
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	if !bytes.Equal(again, body) {
		t.Errorf("x/net/icmp re-marshals a different message (checksum %x, ours %x)", again[2:4], body[2:4])
	}
}

// check6 is check4 for ICMPv6; the checksum includes the pseudo-header.
func check6(t *testing.T, pkt, orig []byte, wantSrc netip.Addr, wantQuote int) {
	t.Helper()
	if pkt[0]>>4 != 6 || int(binary.BigEndian.Uint16(pkt[4:6])) != len(pkt)-40 || pkt[6] != 58 || pkt[7] != ICMPErrorHopLimit {
		t.Errorf("IPv6 header % x", pkt[:8])
	}
	src := netip.AddrFrom16([16]byte(pkt[8:24]))
	dst := netip.AddrFrom16([16]byte(pkt[24:40]))
	origSrc := netip.AddrFrom16([16]byte(orig[8:24]))
	if src != wantSrc || dst != origSrc {
		t.Errorf("addresses %v -> %v, want %v -> %v", src, dst, wantSrc, origSrc)
	}
	if len(pkt) > MaxICMPv6ErrorBytes {
		t.Errorf("length %d > %d", len(pkt), MaxICMPv6ErrorBytes)
	}
	body := pkt[40:]
	if got := packet.Checksum(body, packet.PseudoHeaderSum(src, dst, 58, len(body))); got != 0 {
		t.Errorf("ICMPv6 checksum does not verify (folds to %#04x)", got)
	}
	m, err := icmp.ParseMessage(58, body)
	if err != nil {
		t.Fatalf("icmp.ParseMessage: %v", err)
	}
	if m.Type.Protocol() != 58 || int(body[0]) != 1 || m.Code != 1 {
		t.Errorf("type/code = %v/%d, want destination unreachable/1", m.Type, m.Code)
	}
	du, ok := m.Body.(*icmp.DstUnreach)
	if !ok {
		t.Fatalf("body is %T, want *icmp.DstUnreach", m.Body)
	}
	if !bytes.Equal(du.Data, orig[:wantQuote]) {
		t.Errorf("quote: %d bytes, want the first %d bytes of orig", len(du.Data), wantQuote)
	}
	again, err := m.Marshal(icmp.IPv6PseudoHeader(net.IP(src.AsSlice()), net.IP(dst.AsSlice())))
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	if !bytes.Equal(again, body) {
		t.Errorf("x/net/icmp re-marshals a different message (checksum %x, ours %x)", again[2:4], body[2:4])
	}
}

func icmp4(typ, code byte) []byte {
	b := make([]byte, 16)
	b[0], b[1] = typ, code
	binary.BigEndian.PutUint16(b[2:4], packet.Checksum(b, 0))
	return b
}

func withFrag(p []byte, off uint16) []byte {
	q := append([]byte(nil), p...)
	binary.BigEndian.PutUint16(q[6:8], off)
	q[10], q[11] = 0, 0
	binary.BigEndian.PutUint16(q[10:12], packet.Checksum(q[:20], 0))
	return q
}

func TestUnreachable4(t *testing.T) {
	tun := mustAddr("10.99.0.1")
	small := ip4("10.0.0.2", "172.31.0.5", 17, udp(100))
	big := ip4("10.0.0.2", "172.31.0.5", 6, seq(1400))
	echo := ip4("10.0.0.2", "172.31.0.5", 1, icmp4(8, 0))
	withOpts := func() []byte { // IHL 6: a 4-byte option
		p := make([]byte, 24+20)
		p[0] = 0x46
		binary.BigEndian.PutUint16(p[2:4], uint16(len(p)))
		p[8], p[9] = 64, 17
		copy(p[12:16], []byte{10, 0, 0, 2})
		copy(p[16:20], []byte{172, 31, 0, 5})
		copy(p[24:], udp(12))
		return p
	}()

	tests := []struct {
		name      string
		orig      []byte
		src       netip.Addr
		dstLen    int // 0: packet.BufferBytes
		wantSrc   netip.Addr
		wantQuote int // 0: no answer
	}{
		{"udp whole packet quoted", small, tun, 0, tun, len(small)},
		{"large packet quoted to 576", big, tun, 0, tun, MaxICMPv4ErrorBytes - 28},
		{"header with options", withOpts, tun, 0, tun, len(withOpts)},
		{"echo request answered", echo, tun, 0, tun, len(echo)},
		{"invalid src: orig destination", small, netip.Addr{}, 0, mustAddr("172.31.0.5"), len(small)},
		{"IPv6 src: orig destination", small, mustAddr("fd00::1"), 0, mustAddr("172.31.0.5"), len(small)},
		{"v4-mapped src unmapped", small, mustAddr("::ffff:10.99.0.1"), 0, tun, len(small)},
		{"first fragment answered", withFrag(big, 0x2000), tun, 0, tun, MaxICMPv4ErrorBytes - 28},
		{"small dst: header + 8 bytes", big, tun, packet.Headroom + 28 + 28, tun, 28},
		{"dst too small", big, tun, packet.Headroom + 28 + 27, tun, 0},
		{"dst shorter than headroom", big, tun, 3, tun, 0},
		{"non-first fragment", withFrag(big, 0x2001), tun, 0, tun, 0},
		{"dest unreachable not answered", ip4("10.0.0.2", "172.31.0.5", 1, icmp4(3, 1)), tun, 0, tun, 0},
		{"time exceeded not answered", ip4("10.0.0.2", "172.31.0.5", 1, icmp4(11, 0)), tun, 0, tun, 0},
		{"unknown ICMP type not answered", ip4("10.0.0.2", "172.31.0.5", 1, icmp4(99, 0)), tun, 0, tun, 0},
		{"truncated ICMP not answered", ip4("10.0.0.2", "172.31.0.5", 1, nil), tun, 0, tun, 0},
		{"multicast destination", ip4("10.0.0.2", "224.0.0.251", 17, udp(4)), tun, 0, tun, 0},
		{"broadcast destination", ip4("10.0.0.2", "255.255.255.255", 17, udp(4)), tun, 0, tun, 0},
		{"unspecified source", ip4("0.0.0.0", "172.31.0.5", 17, udp(4)), tun, 0, tun, 0},
		{"multicast source", ip4("239.1.1.1", "172.31.0.5", 17, udp(4)), tun, 0, tun, 0},
		{"multicast src argument", small, mustAddr("224.0.0.1"), 0, tun, 0},
		{"malformed orig", small[:30], tun, 0, tun, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dstLen := tt.dstLen
			if dstLen == 0 {
				dstLen = packet.BufferBytes
			}
			dst := make([]byte, dstLen)
			n := Unreachable(dst, tt.orig, tt.src)
			if tt.wantQuote == 0 {
				if n != 0 {
					t.Fatalf("Unreachable = %d, want 0 (no answer)", n)
				}
				return
			}
			if want := 28 + tt.wantQuote; n != want {
				t.Fatalf("Unreachable = %d, want %d", n, want)
			}
			check4(t, dst[packet.Headroom:packet.Headroom+n], tt.orig, tt.wantSrc, tt.wantQuote)
		})
	}
}

// ext6 builds an extension header of 8 bytes with next header next.
func ext6(next byte, rest ...byte) []byte {
	b := make([]byte, 8)
	b[0] = next
	copy(b[2:], rest)
	return b
}

func icmp6(typ byte) []byte { return []byte{typ, 0, 0, 0, 0, 0, 0, 0} }

func TestUnreachable6(t *testing.T) {
	tun := mustAddr("fd00:99::1")
	small := ip6("2001:db8::2", "fd00:31::5", 17, udp(100))
	big := ip6("2001:db8::2", "fd00:31::5", 6, seq(1400))
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

	tests := []struct {
		name      string
		orig      []byte
		src       netip.Addr
		dstLen    int
		wantSrc   netip.Addr
		wantQuote int
	}{
		{"udp whole packet quoted", small, tun, 0, tun, len(small)},
		{"large packet quoted to 1280", big, tun, 0, tun, MaxICMPv6ErrorBytes - 48},
		{"invalid src: orig destination", small, netip.Addr{}, 0, mustAddr("fd00:31::5"), len(small)},
		{"IPv4 src: orig destination", small, mustAddr("10.0.0.1"), 0, mustAddr("fd00:31::5"), len(small)},
		{"src zone dropped", small, mustAddr("fd00:99::1%tun0"), 0, tun, len(small)},
		{"echo request answered", ip6("2001:db8::2", "fd00:31::5", 58, icmp6(128)), tun, 0, tun, 48},
		{"hop-by-hop then udp", ip6("2001:db8::2", "fd00:31::5", 0, cat(ext6(17), udp(4))), tun, 0, tun, 60},
		{"non-first fragment of udp", ip6("2001:db8::2", "fd00:31::5", 44, cat(ext6(17, 0, 0x08), seq(8))), tun, 0, tun, 56},
		{"small dst: header + 8 bytes", big, tun, packet.Headroom + 48 + 48, tun, 48},
		{"dst too small", big, tun, packet.Headroom + 48 + 47, tun, 0},
		{"ICMPv6 error not answered", ip6("2001:db8::2", "fd00:31::5", 58, icmp6(1)), tun, 0, tun, 0},
		{"packet too big not answered", ip6("2001:db8::2", "fd00:31::5", 58, icmp6(2)), tun, 0, tun, 0},
		{"redirect not answered", ip6("2001:db8::2", "fd00:31::5", 58, icmp6(137)), tun, 0, tun, 0},
		{"error behind ext headers", ip6("2001:db8::2", "fd00:31::5", 0, cat(ext6(60), ext6(44), ext6(58), icmp6(3))), tun, 0, tun, 0},
		{"non-first fragment of ICMPv6", ip6("2001:db8::2", "fd00:31::5", 44, cat(ext6(58, 0, 0x08), seq(8))), tun, 0, tun, 0},
		{"truncated ext header chain", ip6("2001:db8::2", "fd00:31::5", 0, []byte{58}), tun, 0, tun, 0},
		{"truncated ICMPv6", ip6("2001:db8::2", "fd00:31::5", 58, nil), tun, 0, tun, 0},
		{"multicast destination", ip6("2001:db8::2", "ff02::1", 17, udp(4)), tun, 0, tun, 0},
		{"unspecified source", ip6("::", "fd00:31::5", 17, udp(4)), tun, 0, tun, 0},
		{"multicast source", ip6("ff05::2", "fd00:31::5", 17, udp(4)), tun, 0, tun, 0},
		{"malformed orig", small[:41], tun, 0, tun, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dstLen := tt.dstLen
			if dstLen == 0 {
				dstLen = packet.BufferBytes
			}
			dst := make([]byte, dstLen)
			n := Unreachable(dst, tt.orig, tt.src)
			if tt.wantQuote == 0 {
				if n != 0 {
					t.Fatalf("Unreachable = %d, want 0 (no answer)", n)
				}
				return
			}
			if want := 48 + tt.wantQuote; n != want {
				t.Fatalf("Unreachable = %d, want %d", n, want)
			}
			check6(t, dst[packet.Headroom:packet.Headroom+n], tt.orig, tt.wantSrc, tt.wantQuote)
		})
	}
}

// TestUnreachableRoutes feeds the error back through Classify: it must be a
// well-formed packet routed towards the original sender.
func TestUnreachableRoutes(t *testing.T) {
	tab := mustTable(t, Route{Prefix: mustPrefix("10.0.0.0/8"), Target: 5})
	dst := make([]byte, packet.BufferBytes)
	n := Unreachable(dst, ip4("10.0.0.2", "172.31.0.5", 17, udp(10)), mustAddr("10.99.0.1"))
	if got, want := tab.Classify(dst[packet.Headroom:packet.Headroom+n]), (Verdict{Forward, 5, None}); got != want {
		t.Errorf("Classify(error) = %+v, want %+v", got, want)
	}
}

func TestUnreachableAllocs(t *testing.T) {
	dst := make([]byte, packet.BufferBytes)
	o4 := ip4("10.0.0.2", "172.31.0.5", 17, udp(100))
	o6 := ip6("2001:db8::2", "fd00:31::5", 17, udp(100))
	s4, s6 := mustAddr("10.99.0.1"), mustAddr("fd00:99::1")
	got := testing.AllocsPerRun(100, func() {
		Unreachable(dst, o4, s4)
		Unreachable(dst, o6, s6)
	})
	if got != 0 {
		t.Errorf("Unreachable allocates %v times per run, want 0", got)
	}
}
