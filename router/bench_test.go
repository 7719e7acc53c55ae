package router

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"switchyard/packet"
)

// benchRoutes returns n distinct random prefixes of one family (v6 false:
// IPv4 /8../32, mostly /24; v6 true: IPv6 /16../64, mostly /48) plus the
// default route, from a fixed seed. Targets cycle over 0..15.
func benchRoutes(n int, v6 bool, seed uint64) []Route {
	r := rand.New(rand.NewPCG(seed, 0x5717c4))
	routes := make([]Route, 0, n+1)
	seen := make(map[netip.Prefix]bool, n+1)
	add := func(p netip.Prefix) {
		if !seen[p] {
			seen[p] = true
			routes = append(routes, Route{Prefix: p, Target: len(routes) % 16})
		}
	}
	if v6 {
		add(netip.MustParsePrefix("::/0"))
	} else {
		add(netip.MustParsePrefix("0.0.0.0/0"))
	}
	for len(routes) < n+1 {
		var bits int
		var a netip.Addr
		if v6 {
			bits = 48
			if r.IntN(2) == 0 {
				bits = 16 + r.IntN(49)
			}
			var b [16]byte
			b[0] = 0x20 // global unicast, as real tables are
			for i := 1; i < 16; i++ {
				b[i] = byte(r.Uint32())
			}
			a = netip.AddrFrom16(b)
		} else {
			bits = 24
			if r.IntN(5) < 2 {
				bits = 8 + r.IntN(25)
			}
			a = netip.AddrFrom4([4]byte{byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())})
		}
		add(netip.PrefixFrom(a, bits).Masked())
	}
	return routes
}

// benchAddrs returns n addresses: half inside a random route's prefix
// (random host bits), half uniformly random (mostly the default route).
func benchAddrs(routes []Route, n int, v6 bool, seed uint64) []netip.Addr {
	r := rand.New(rand.NewPCG(seed, 0xadd5))
	out := make([]netip.Addr, n)
	for i := range out {
		var b [16]byte
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		if i%2 == 0 {
			p := routes[r.IntN(len(routes))].Prefix
			pb := p.Addr().AsSlice()
			for j := range pb {
				keep := min(max(p.Bits()-8*j, 0), 8)
				mask := byte(0xff << (8 - keep))
				b[j] = pb[j]&mask | b[j]&^mask
			}
		}
		if v6 {
			out[i] = netip.AddrFrom16(b)
		} else {
			out[i] = netip.AddrFrom4([4]byte(b[:4]))
		}
	}
	return out
}

var sink int

// BenchmarkLookup is Table.Lookup, which returns the whole Route (the
// control path's call).
func BenchmarkLookup(b *testing.B) {
	benchLookup(b, func(t *Table, a netip.Addr) int { r, _ := t.Lookup(a); return r.Target })
}

// BenchmarkLookupVerdict is the data path's lookup: destination address to
// verdict (what Classify calls after the header check).
func BenchmarkLookupVerdict(b *testing.B) {
	benchLookup(b, func(t *Table, a netip.Addr) int { return t.LookupVerdict(a).Target })
}

// benchLookup runs lookup over random destinations of tables of 10, 1 000
// and 10 000 routes, IPv4 and IPv6; one op is one lookup.
func benchLookup(b *testing.B, lookup func(*Table, netip.Addr) int) {
	for _, n := range []int{10, 1000, 10000} {
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) {
			for _, fam := range []struct {
				name string
				v6   bool
			}{{"v4", false}, {"v6", true}} {
				b.Run(fam.name, func(b *testing.B) {
					routes := benchRoutes(n, fam.v6, uint64(n))
					tab := mustTable(b, routes...)
					addrs := benchAddrs(routes, 1<<12, fam.v6, uint64(n))
					mask := len(addrs) - 1
					b.ReportAllocs()
					b.ResetTimer()
					sum := 0
					for i := 0; b.Loop(); i++ {
						sum += lookup(tab, addrs[i&mask])
					}
					sink = sum
				})
			}
		})
	}
}

// BenchmarkClassify is BenchmarkLookup for the data path's call: header
// check, destination, lookup, verdict.
func BenchmarkClassify(b *testing.B) {
	for _, n := range []int{10, 10000} {
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) {
			for _, fam := range []struct {
				name string
				v6   bool
			}{{"v4", false}, {"v6", true}} {
				b.Run(fam.name, func(b *testing.B) {
					routes := benchRoutes(n, fam.v6, uint64(n))
					tab := mustTable(b, routes...)
					addrs := benchAddrs(routes, 1<<12, fam.v6, uint64(n))
					pkts := make([][]byte, len(addrs))
					for i, a := range addrs {
						if fam.v6 {
							pkts[i] = ip6("2001:db8::1", a.String(), 17, udp(8))
						} else {
							pkts[i] = ip4("192.0.2.1", a.String(), 17, udp(8))
						}
					}
					mask := len(pkts) - 1
					b.ReportAllocs()
					b.ResetTimer()
					sum := 0
					for i := 0; b.Loop(); i++ {
						sum += tab.Classify(pkts[i&mask]).Target
					}
					sink = sum
				})
			}
		})
	}
}

// BenchmarkSplit splits a full batch of small IPv4 packets that alternate
// over four targets. Each iteration also gathers the output back into one
// batch in the original order (moving 128 buffer pointers), so the figure
// is an upper bound for Split alone.
func BenchmarkSplit(b *testing.B) {
	b.Run(fmt.Sprintf("batch=%d", packet.MaxBatch), func(b *testing.B) {
		benchSplit(b, 4)
	})
}

// BenchmarkSplitOneTarget is BenchmarkSplit with every packet bound for one
// target (the batch passes through in place).
func BenchmarkSplitOneTarget(b *testing.B) {
	b.Run(fmt.Sprintf("batch=%d", packet.MaxBatch), func(b *testing.B) {
		benchSplit(b, 1)
	})
}

func benchSplit(b *testing.B, targets int) {
	routes := benchRoutes(1000, false, 1)
	for i := range 4 {
		routes = append(routes, Route{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i), 0, 0}), 16), Target: 100 + i})
	}
	tab := mustTable(b, routes...)
	pool := packet.NewPool(4 * packet.MaxBatch)
	s := NewSplitter(pool)
	pkts := make([][]byte, packet.MaxBatch)
	for i := range pkts {
		pkts[i] = tagged(fmt.Sprintf("10.%d.0.%d", i%targets, i+1), uint16(i))
	}
	in := batchOf(b, pool, pkts...)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		res := s.Split(tab, in, nil)
		if len(res.Out) != targets {
			b.Fatalf("%d targets, want %d", len(res.Out), targets)
		}
		// Gather back round-robin, restoring the interleaved order.
		in = res.Out[0].Batch
		if targets > 1 {
			in = pool.GetBatch()
			for i := range packet.MaxBatch {
				in.Bufs = append(in.Bufs, res.Out[i%targets].Batch.Bufs[i/targets])
			}
			for _, tb := range res.Out {
				tb.Batch.Reset()
				tb.Batch.Release()
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*packet.MaxBatch), "ns/pkt")
	in.Release()
}
