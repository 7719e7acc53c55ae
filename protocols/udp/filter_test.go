package udp

import (
	"bytes"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"switchyard/packet"
	"switchyard/protocols/udpbind"
	"switchyard/stats"
)

// withSource returns p (an IPv4 packet from ipv4Packet) with source src.
func withSource(p []byte, src netip.Addr) []byte {
	a := src.As4()
	copy(p[12:16], a[:])
	return p
}

// TestEmptiesMixedIntoFlow (issue 12, finding 3): a stranger's empty
// datagrams interleaved with the peer's GSO runs (the socket has UDP GRO
// on) cost no real packet, and every empty is counted "empty" on the
// receive row. On conn.StdNetBind the empties were never counted and the
// runs read behind one were lost without a trace.
func TestEmptiesMixedIntoFlow(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	// The peer sends with GSO (runs of same-sized packets as one
	// super-datagram), as a switchyard peer does.
	peer := udpbind.New(udpbind.Options{})
	peerPort := freePort(t)
	if _, _, err := peer.Open(peerPort); err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	stranger := listenLoopback(t)

	listen := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), freePort(t))
	h := newHarness(t, Settings{Listen: listen, Peer: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), peerPort)})
	h.spawn()
	to := udpbind.NewEndpoint(listen)

	// 640 packets: the collector keeps them, and the pool (1024) also
	// holds the readers' 2 × 128 buffers.
	const rounds, run = 80, 8
	var sent [][]byte
	for r := 0; r < rounds; r++ {
		if _, err := stranger.WriteToUDPAddrPort(nil, listen); err != nil {
			t.Fatal(err)
		}
		batch := make([][]byte, run)
		for i := range batch {
			p := ipv4Packet(len(sent), 1000)
			sent = append(sent, p)
			batch[i] = append(make([]byte, 0, packet.BufferBytes), p...)
		}
		if err := peer.Send(batch, to); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) &&
		(h.recvStats.Snapshot().InPackets < uint64(len(sent)+rounds) || len(h.coll.Packets()) < len(sent)) {
		time.Sleep(5 * time.Millisecond)
	}
	got := h.coll.Packets()
	if len(got) != len(sent) || h.recvStats.Dropped(udpbind.Empty) != rounds {
		t.Fatalf("injector got %d packets, want %d; %d empties counted, want %d (recv row %+v)",
			len(got), len(sent), h.recvStats.Dropped(udpbind.Empty), rounds, h.recvStats.Snapshot())
	}
	for i := range sent {
		if !bytes.Equal(got[i], sent[i]) {
			t.Fatalf("packet %d differs", i)
		}
	}
	s := h.recvStats.Snapshot()
	if e := h.recvStats.Dropped(udpbind.Empty); e != rounds || s.DroppedTotal() != rounds {
		t.Errorf("recv drops %v, want %d empty and nothing else", s.Drops, rounds)
	}
	h.checkBalance()
	h.stop()
	h.coll.Release()
	if err := h.pool.CheckLeaks(); err != nil {
		t.Error(err)
	}
	h.system.Shutdown()
}

// TestAllowedSources: with allowed_sources set, packets from the peer whose
// inner source is outside are dropped and counted source_not_allowed; the
// rest arrive. Without it, every source is accepted.
func TestAllowedSources(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	in := netip.MustParseAddr("10.91.0.2")
	edge := netip.MustParseAddr("10.91.0.255")
	out := netip.MustParseAddr("192.0.2.66")
	tests := []struct {
		name    string
		allowed []netip.Prefix
		srcs    []netip.Addr
		want    []netip.Addr // the sources delivered, in order
	}{
		{"unset accepts any", nil, []netip.Addr{in, out, edge}, []netip.Addr{in, out, edge}},
		{"one prefix", []netip.Prefix{netip.MustParsePrefix("10.91.0.0/24")},
			[]netip.Addr{in, out, edge, out}, []netip.Addr{in, edge}},
		{"a single address", []netip.Prefix{netip.MustParsePrefix("10.91.0.2/32")},
			[]netip.Addr{edge, in, out}, []netip.Addr{in}},
		{"only IPv6 allowed", []netip.Prefix{netip.MustParsePrefix("fd90::/64")},
			[]netip.Addr{in, out}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			peerConn := listenLoopback(t)
			listen := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), freePort(t))
			h := newHarness(t, Settings{Listen: listen, Peer: addrPort(peerConn), AllowedSources: tt.allowed})
			h.spawn()
			to := net.UDPAddrFromAddrPort(listen)
			for i, src := range tt.srcs {
				if _, err := peerConn.WriteToUDP(withSource(ipv4Packet(i, 60), src), to); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, "every datagram counted, the accepted ones at the injector", func() bool {
				return h.recvStats.Snapshot().InPackets == uint64(len(tt.srcs)) && len(h.coll.Packets()) == len(tt.want)
			})
			var got []netip.Addr
			for _, p := range h.coll.Packets() {
				src, _ := packet.Source(p)
				got = append(got, src)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("delivered sources %v, want %v", got, tt.want)
			}
			if d, want := h.recvStats.Dropped(SourceNotAllowed), uint64(len(tt.srcs)-len(tt.want)); d != want {
				t.Errorf("source_not_allowed %d, want %d", d, want)
			}
			if m := h.recvStats.Dropped(stats.Malformed); m != 0 {
				t.Errorf("malformed %d, want 0", m)
			}
			h.checkBalance()
			h.stop()
			h.coll.Release()
			if err := h.pool.CheckLeaks(); err != nil {
				t.Error(err)
			}
			h.system.Shutdown()
		})
	}
}
