package wireguard

import (
	"bytes"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"

	"switchyard/packet"
	"switchyard/packet/packettest"
	"switchyard/protocols"
	"switchyard/stats"
)

var (
	ipA = [4]byte{10, 90, 0, 1}
	ipB = [4]byte{10, 90, 0, 2}
)

func newTestTUN(t *testing.T, injector *actor.PID, system *actor.ActorSystem, pool *packet.Pool, maxBatch int) (*feedTUN, *protocols.Env) {
	env := &protocols.Env{System: system, Injector: injector, Pool: pool,
		ToNetwork: &stats.Counters{Name: "wg"}, FromNetwork: &stats.Counters{Name: "wg.recv"}, Log: zap.NewNop()}
	return newFeedTUN("wg-test", env, maxBatch), env
}

// deviceBufs returns n buffers shaped like the device's message buffers.
func deviceBufs(n int) [][]byte {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, device.MaxMessageSize)
	}
	return bufs
}

// TestTUNRead: Read hands out the packets of queued batches in order, up to
// len(bufs) per call across batch boundaries, at offset; batches are
// released once consumed; Out counts what was handed out.
func TestTUNRead(t *testing.T) {
	pool := packet.NewPool(256)
	ft, env := newTestTUN(t, nil, nil, pool, packet.MaxBatch)
	var want [][]byte
	for bi, n := range []int{3, 2} {
		var pkts [][]byte
		for i := range n {
			pkts = append(pkts, ipv4Packet(ipA, ipB, bi*10+i, 40+bi*10+i))
		}
		want = append(want, pkts...)
		if !ft.push(batchOf(t, pool, pkts)) {
			t.Fatal("push refused")
		}
	}
	const offset = device.MessageTransportHeaderSize
	bufs, sizes := deviceBufs(4), make([]int, 4)
	n, err := ft.Read(bufs, sizes, offset)
	if err != nil || n != 4 {
		t.Fatalf("Read = %d, %v; want 4, nil", n, err)
	}
	var got [][]byte
	for i := range n {
		got = append(got, bytes.Clone(bufs[i][offset:offset+sizes[i]]))
	}
	if pool.Outstanding() != 2 {
		t.Errorf("after the first read: %d buffers outstanding, want 2 (the second batch, released once consumed)", pool.Outstanding())
	}
	n, err = ft.Read(bufs, sizes, offset)
	if err != nil || n != 1 {
		t.Fatalf("second Read = %d, %v; want 1, nil (it must not wait for more)", n, err)
	}
	got = append(got, bytes.Clone(bufs[0][offset:offset+sizes[0]]))
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("packet %d differs", i)
		}
	}
	if s := env.ToNetwork.Snapshot(); s.OutPackets != 5 || s.OutBatches != 2 {
		t.Errorf("stats out = %d packets in %d reads, want 5 in 2", s.OutPackets, s.OutBatches)
	}
	if err := pool.CheckLeaks(); err != nil {
		t.Error(err)
	}

	// An empty feed blocks Read until Close, which makes it return os.ErrClosed.
	done := make(chan error, 1)
	go func() { _, err := ft.Read(bufs, sizes, offset); done <- err }()
	select {
	case err := <-done:
		t.Fatalf("Read on an empty feed returned %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	ft.Close()
	if err := <-done; !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Read after Close = %v, want os.ErrClosed", err)
	}
	// Closed: push releases and counts.
	if ft.push(batchOf(t, pool, [][]byte{ipv4Packet(ipA, ipB, 0, 40)})) {
		t.Error("push after Close accepted the batch")
	}
	if got := env.ToNetwork.Dropped(stats.Stopped); got != 1 {
		t.Errorf("stopped drops = %d, want 1", got)
	}
	if err := pool.CheckLeaks(); err != nil {
		t.Error(err)
	}
	ft.Close() // twice is harmless
}

// TestTUNPushBlocksUntilClose: a full feed blocks push (the backpressure
// into the mailbox) and Close releases it; drain counts what was left,
// including the rest of a batch Read had started.
func TestTUNPushBlocksUntilClose(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	pool := packet.NewPool(256)
	ft, env := newTestTUN(t, nil, nil, pool, packet.MaxBatch)
	three := func() [][]byte {
		return [][]byte{ipv4Packet(ipA, ipB, 1, 40), ipv4Packet(ipA, ipB, 2, 40), ipv4Packet(ipA, ipB, 3, 40)}
	}
	for range feedDepth + 1 {
		if !ft.push(batchOf(t, pool, three())) {
			t.Fatal("push refused")
		}
		if len(ft.feed) == feedDepth {
			break
		}
	}
	// Read one packet of the first batch.
	bufs, sizes := deviceBufs(1), make([]int, 1)
	if n, err := ft.Read(bufs, sizes, 16); n != 1 || err != nil {
		t.Fatalf("Read = %d, %v", n, err)
	}
	for len(ft.feed) < feedDepth {
		ft.push(batchOf(t, pool, three()))
	}
	blocked := make(chan bool)
	go func() { blocked <- ft.push(batchOf(t, pool, three())) }()
	select {
	case <-blocked:
		t.Fatal("push on a full feed returned")
	case <-time.After(50 * time.Millisecond):
	}
	ft.Close()
	if <-blocked {
		t.Error("push unblocked by Close reported success")
	}
	ft.drain()
	// In the feed: feedDepth batches of 3; in hand: 2; refused: 3.
	if got, want := env.ToNetwork.Dropped(stats.Stopped), uint64(feedDepth*3+2+3); got != want {
		t.Errorf("stopped drops = %d, want %d", got, want)
	}
	if err := pool.CheckLeaks(); err != nil {
		t.Error(err)
	}
}

// TestTUNWrite: concurrent Writes (as the per-peer receivers make them)
// become pooled batches at the injector with the exact packets; the
// device's buffers may be reused as soon as Write returns.
func TestTUNWrite(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	system := quietSystem()
	defer system.Shutdown()
	pool := packet.NewPool(2048)
	coll := &packettest.Collector{}
	inj := system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return coll }))
	ft, env := newTestTUN(t, inj, system, pool, 8)

	const writers, calls, per = 4, 20, 20 // per > maxBatch: Write splits
	const offset = device.MessageTransportOffsetContent
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bufs := deviceBufs(per)
			for c := range calls {
				args := make([][]byte, per)
				for i := range per {
					p := ipv4Packet(ipB, ipA, w<<16|c<<8|i, 28+i)
					n := copy(bufs[i][offset:], p)
					args[i] = bufs[i][:offset+n]
				}
				if n, err := ft.Write(args, offset); n != per || err != nil {
					t.Errorf("Write = %d, %v", n, err)
				}
				for i := range bufs { // the device reuses its buffers at once
					clear(bufs[i][:128])
				}
			}
		}()
	}
	wg.Wait()
	total := writers * calls * per
	waitFor(t, 5*time.Second, "all packets at the injector", func() bool { return coll.Count() == total })
	seen := map[int]bool{}
	for _, p := range coll.Packets() {
		seq := int(p[20])<<24 | int(p[21])<<16 | int(p[22])<<8 | int(p[23])
		w, c, i := seq>>16, seq>>8&0xff, seq&0xff
		if !bytes.Equal(p, ipv4Packet(ipB, ipA, seq, 28+i)) || w >= writers || c >= calls {
			t.Fatalf("packet %x corrupted", seq)
		}
		seen[seq] = true
	}
	if len(seen) != total {
		t.Errorf("%d distinct packets, want %d", len(seen), total)
	}
	for _, n := range coll.BatchSizes() {
		if n > 8 {
			t.Errorf("batch of %d packets, want ≤ maxBatch 8", n)
		}
	}
	s := env.FromNetwork.Snapshot()
	if s.InPackets != uint64(total) || s.OutPackets != uint64(total) || s.DroppedTotal() != 0 {
		t.Errorf("recv stats: in %d out %d drops %v, want %d, %d, none", s.InPackets, s.OutPackets, s.Drops, total, total)
	}
	coll.Release()

	// An exhausted pool drops and counts; Write still reports every packet.
	hold := make([][]byte, pool.Limit())
	if !pool.GetBufs(hold) {
		t.Fatal("GetBufs")
	}
	bufs := deviceBufs(3)
	for i := range bufs {
		bufs[i] = bufs[i][:offset+40]
	}
	if n, err := ft.Write(bufs, offset); n != 3 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if got := env.FromNetwork.Dropped(stats.NoBuffers); got != 3 {
		t.Errorf("no_buffers = %d, want 3", got)
	}
	pool.PutBufs(hold)

	// Closed: Write refuses, counting the packets as stopped.
	ft.Close()
	if _, err := ft.Write(bufs, offset); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Write after Close = %v, want os.ErrClosed", err)
	}
	s = env.FromNetwork.Snapshot()
	if s.InPackets != s.OutPackets+s.DroppedTotal() {
		t.Errorf("recv stats: in %d != out %d + drops %v", s.InPackets, s.OutPackets, s.Drops)
	}
	if err := pool.CheckLeaks(); err != nil {
		t.Error(err)
	}
}

// TestTUNEvents: EventUp once after up; Close closes the channel.
func TestTUNEvents(t *testing.T) {
	ft, _ := newTestTUN(t, nil, nil, packet.NewPool(128), packet.MaxBatch)
	ft.up()
	ft.up()
	if ev := <-ft.Events(); ev != tun.EventUp {
		t.Errorf("event = %v, want EventUp", ev)
	}
	ft.Close()
	if _, ok := <-ft.Events(); ok {
		t.Error("a second event, or the channel is still open after Close")
	}
	ft.up() // after Close: harmless
	if mtu, _ := ft.MTU(); mtu != tunMTU {
		t.Errorf("MTU = %d", mtu)
	}
	if ft.BatchSize() != packet.MaxBatch || ft.File() != nil {
		t.Error("BatchSize or File")
	}
}

// releaser is an injector that releases every batch at once.
type releaser struct{}

func (releaser) Receive(ctx actor.Context) {
	if b, ok := ctx.Message().(*packet.Batch); ok {
		b.Release()
	}
}

// TestWriteAllocs: Write's allocations do not grow with the packet count.
func TestWriteAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	system := quietSystem()
	defer system.Shutdown()
	pool := packet.NewPool(4096)
	inj := system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return releaser{} }))
	ft, _ := newTestTUN(t, inj, system, pool, packet.MaxBatch)
	bufs := deviceBufs(packet.MaxBatch)
	for i := range bufs {
		n := copy(bufs[i][16:], ipv4Packet(ipB, ipA, i, 1400))
		bufs[i] = bufs[i][:16+n]
	}
	allocs := map[int]float64{}
	for _, n := range []int{packet.MaxBatch, 1, packet.MaxBatch, 1} {
		allocs[n] = testing.AllocsPerRun(200, func() { _, _ = ft.Write(bufs[:n], 16) })
	}
	t.Logf("allocs per Write: 1 packet %.1f, 128 packets %.1f", allocs[1], allocs[packet.MaxBatch])
	if allocs[packet.MaxBatch] > allocs[1]+0.5 {
		t.Errorf("Write allocates per packet: %v for 1, %v for 128", allocs[1], allocs[packet.MaxBatch])
	}
}
