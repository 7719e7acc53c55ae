package udp

import (
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"switchyard/packet"
	"switchyard/packet/packettest"
	"switchyard/protocols"
	"switchyard/stats"
)

// sendRig is a started udp actor (driven directly, without a mailbox) whose
// peer is a loopback socket drained by a goroutine.
type sendRig struct {
	a    *udpActor
	pool *packet.Pool
	peer *net.UDPConn
	done chan struct{}
}

func newSendRig(tb testing.TB) *sendRig {
	tb.Helper()
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	_ = peer.SetReadBuffer(8 << 20)
	r := &sendRig{pool: packet.NewPool(1024), peer: peer, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		buf := make([]byte, 65536)
		for {
			if _, err := peer.Read(buf); err != nil {
				return
			}
		}
	}()
	system := quietSystem()
	tb.Cleanup(system.Shutdown)
	r.a = newUDPActor("bench", Settings{
		Listen: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), packettest.FreeUDPPort(tb)),
		Peer:   netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(peer.LocalAddr().(*net.UDPAddr).Port)),
	}, protocols.Env{System: system, Pool: r.pool, ToNetwork: &stats.Counters{}, FromNetwork: &stats.Counters{}})
	r.a.start()
	return r
}

// batch returns a batch of n IPv4 packets of size bytes each.
func (r *sendRig) batch(tb testing.TB, n, size int, bufs [][]byte) *packet.Batch {
	bufs = bufs[:n]
	if !r.pool.GetBufs(bufs) {
		tb.Fatal("pool exhausted")
	}
	b := r.pool.GetBatch()
	for i := range bufs {
		p := bufs[i][packet.Headroom:]
		p[0] = 0x45
		p[2], p[3] = byte(size>>8), byte(size)
		b.Append(bufs[i], size)
		bufs[i] = nil
	}
	return b
}

func (r *sendRig) close(tb testing.TB) {
	r.a.stop()
	r.peer.Close()
	<-r.done
	if err := r.pool.CheckLeaks(); err != nil {
		tb.Error(err)
	}
}

// BenchmarkSendBatch measures the outbound path: one batch of 1400-byte
// packets to a loopback peer per op (sendmmsg, with UDP GSO where the kernel
// offers it).
func BenchmarkSendBatch(b *testing.B) {
	for _, n := range []int{128, 1} {
		b.Run("batch="+strconv.Itoa(n), func(b *testing.B) {
			r := newSendRig(b)
			bufs := make([][]byte, packet.MaxBatch)
			b.ReportAllocs()
			b.SetBytes(int64(n * 1400))
			start := time.Now()
			for b.Loop() {
				r.a.send(r.batch(b, n, 1400, bufs))
			}
			elapsed := time.Since(start)
			b.ReportMetric(float64(elapsed.Nanoseconds())/float64(b.N*n), "ns/pkt")
			if d := r.a.env.ToNetwork.Dropped(stats.SendError); d > 0 {
				b.Errorf("%d send errors", d)
			}
			r.close(b)
		})
	}
}

// TestSendAllocs: the send path allocates nothing per packet; the bind's
// allocations, if any, are per batch.
func TestSendAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	r := newSendRig(t)
	defer r.close(t)
	bufs := make([][]byte, packet.MaxBatch)
	allocs := map[int]float64{}
	for _, n := range []int{packet.MaxBatch, 1, packet.MaxBatch, 1} {
		allocs[n] = testing.AllocsPerRun(200, func() { r.a.send(r.batch(t, n, 1400, bufs)) })
	}
	t.Logf("allocs per send: 1 packet %.1f, 128 packets %.1f", allocs[1], allocs[packet.MaxBatch])
	if allocs[packet.MaxBatch] > allocs[1]+0.5 {
		t.Errorf("send allocates per packet: %v for 1, %v for 128", allocs[1], allocs[packet.MaxBatch])
	}
	if got := r.a.env.ToNetwork.Snapshot().OutPackets; got == 0 {
		t.Error("nothing counted out")
	}
}
