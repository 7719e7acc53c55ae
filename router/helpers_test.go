package router

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"switchyard/packet"
)

var (
	mustAddr   = netip.MustParseAddr
	mustPrefix = netip.MustParsePrefix
)

// ip4 builds an IPv4 packet from src to dst with protocol proto and payload.
func ip4(src, dst string, proto byte, payload []byte) []byte {
	p := make([]byte, 20+len(payload))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:4], uint16(len(p)))
	binary.BigEndian.PutUint16(p[4:6], 0x1234)
	p[8] = 64
	p[9] = proto
	s, d := mustAddr(src).As4(), mustAddr(dst).As4()
	copy(p[12:16], s[:])
	copy(p[16:20], d[:])
	binary.BigEndian.PutUint16(p[10:12], packet.Checksum(p[:20], 0))
	copy(p[20:], payload)
	return p
}

// ip6 builds an IPv6 packet from src to dst with next header next and payload.
func ip6(src, dst string, next byte, payload []byte) []byte {
	p := make([]byte, 40+len(payload))
	p[0] = 0x60
	binary.BigEndian.PutUint16(p[4:6], uint16(len(payload)))
	p[6] = next
	p[7] = 64
	s, d := mustAddr(src).As16(), mustAddr(dst).As16()
	copy(p[8:24], s[:])
	copy(p[24:40], d[:])
	copy(p[40:], payload)
	return p
}

// seq returns n bytes 0, 1, 2, … (mod 256).
func seq(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

// udp returns a UDP header and payload of n payload bytes (checksum 0).
func udp(n int) []byte {
	b := make([]byte, 8+n)
	binary.BigEndian.PutUint16(b[0:2], 40000)
	binary.BigEndian.PutUint16(b[2:4], 53)
	binary.BigEndian.PutUint16(b[4:6], uint16(8+n))
	copy(b[8:], seq(n))
	return b
}

// batchOf returns a batch of pool holding copies of pkts.
func batchOf(t testing.TB, pool *packet.Pool, pkts ...[]byte) *packet.Batch {
	t.Helper()
	b := pool.GetBatch()
	bufs := make([][]byte, len(pkts))
	if !pool.GetBufs(bufs) {
		t.Fatalf("pool exhausted")
	}
	for i, p := range pkts {
		copy(bufs[i][packet.Headroom:], p)
		b.Append(bufs[i], len(p))
	}
	return b
}

// mustTable builds a table or fails the test.
func mustTable(t testing.TB, routes ...Route) *Table {
	t.Helper()
	tab, err := NewTable(routes)
	if err != nil {
		t.Fatalf("NewTable: %v", err)
	}
	return tab
}
