package router

import (
	"bytes"
	"net/netip"
	"testing"

	"switchyard/packet"
)

func fuzzSeeds() [][]byte {
	return [][]byte{
		ip4("10.0.0.2", "172.31.0.5", 17, udp(100)),
		ip4("10.0.0.2", "172.31.0.5", 6, seq(600)),
		ip4("10.0.0.2", "172.31.0.5", 1, icmp4(8, 0)),
		ip4("10.0.0.2", "172.31.0.5", 1, icmp4(3, 1)),
		ip6("2001:db8::2", "fd00:31::5", 17, udp(100)),
		ip6("2001:db8::2", "fd00:31::5", 6, seq(600)),
		ip6("2001:db8::2", "fd00:31::5", 0, append(ext6(44), ext6(58)...)),
		ip6("2001:db8::2", "fd00:31::5", 58, icmp6(128)),
		{0x45},
		{},
	}
}

func FuzzClassify(f *testing.F) {
	for _, p := range fuzzSeeds() {
		f.Add(p)
	}
	tab := mustTable(f, testRoutes()...)
	f.Fuzz(func(t *testing.T, pkt []byte) {
		v := tab.Classify(pkt)
		if (packet.Check(pkt) != nil) != (v.Reason == Malformed) {
			t.Errorf("Classify = %+v, Check = %v", v, packet.Check(pkt))
		}
		if (v.Action == Forward) != (v.Reason == None) || (v.Action == Forward) != (v.Target >= 0) {
			t.Errorf("inconsistent verdict %+v", v)
		}
	})
}

func FuzzUnreachable(f *testing.F) {
	for i, p := range fuzzSeeds() {
		f.Add(p, uint16(65535), uint8(i))
		f.Add(p, uint16(packet.Headroom+len(p)/2), uint8(i))
	}
	const guard = 64
	src4, src6 := netip.MustParseAddr("10.99.0.1"), netip.MustParseAddr("fd00:99::1")
	tab := mustTable(f, Route{Prefix: mustPrefix("0.0.0.0/0")}, Route{Prefix: mustPrefix("::/0")})
	// One buffer for all runs (a fuzz target runs one input at a time per
	// process): dst is a prefix of it, followed by guard bytes that writing
	// past len(dst) through its capacity would change.
	mem := make([]byte, packet.BufferBytes+guard)
	f.Fuzz(func(t *testing.T, orig []byte, dstLen uint16, which uint8) {
		n0 := int(dstLen)
		dst := mem[:n0]
		for i := range guard {
			mem[n0+i] = 0xa5
		}
		src := [...]netip.Addr{{}, src4, src6}[int(which)%3]
		n := Unreachable(dst, orig, src)
		for i, b := range mem[n0 : n0+guard] {
			if b != 0xa5 {
				t.Fatalf("wrote byte %d past len(dst) = %d", i, n0)
			}
		}
		if n == 0 {
			return
		}
		if n < 0 || packet.Headroom+n > n0 {
			t.Fatalf("Unreachable = %d with len(dst) = %d", n, n0)
		}
		out := dst[packet.Headroom : packet.Headroom+n]
		if err := packet.Check(out); err != nil {
			t.Fatalf("generated packet malformed: %v", err)
		}
		if v := tab.Classify(out); v.Action != Forward {
			t.Errorf("generated packet classified %+v", v)
		}
		var ihl int
		var sum uint32
		switch packet.Version(out) {
		case 4:
			ihl = packet.IPv4HeaderBytes
			if packet.Checksum(out[:ihl], 0) != 0 {
				t.Errorf("IPv4 header checksum does not verify")
			}
		case 6:
			ihl = packet.IPv6HeaderBytes
			s, _ := packet.Source(out)
			d, _ := packet.Destination(out)
			sum = packet.PseudoHeaderSum(s, d, packet.ProtoICMPv6, n-ihl)
		}
		if packet.Checksum(out[ihl:], sum) != 0 {
			t.Errorf("ICMP checksum does not verify")
		}
		if q := out[ihl+8:]; !bytes.HasPrefix(orig, q) {
			t.Errorf("quote is not a prefix of orig")
		}
	})
}
