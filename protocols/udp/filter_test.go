package udp

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/goleak"

	"switchyard/packet"
	"switchyard/protocols/udpbind"
)

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
