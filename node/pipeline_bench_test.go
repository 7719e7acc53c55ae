package node

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"golang.zx2c4.com/wireguard/conn"

	"switchyard/config"
	"switchyard/packet/packettest"
	"switchyard/protocols"
	"switchyard/protocols/udp"
)

// sink is the bind of the "udp-sink" benchmark protocol: the udp protocol
// actor, unchanged, with an in-memory conn.Bind in place of the socket.
var sink = struct {
	sync.Mutex
	bind *packettest.SinkBind
}{}

func init() {
	udpInfo, _ := protocols.Lookup("udp")
	protocols.Register(protocols.Info{
		Name:  "udp-sink",
		Parse: udpInfo.Parse,
		New: func(inst protocols.Instance) actor.Actor {
			return udp.NewWithBind(inst, func() conn.Bind {
				sink.Lock()
				defer sink.Unlock()
				return sink.bind
			})
		},
	})
}

// pipelineWindow (in packets) is how many packets the benchmark keeps in
// flight between the device and the sink: a closed loop, like a TCP window,
// so the pipeline runs at its capacity without mailbox drops.
const pipelineWindow = 4096

// pipelineStall (10 s) without a packet reaching the sink fails the run.
const pipelineStall = 10 * time.Second

// pipelineWarmup (in windows) is how much traffic passes before measuring.
const pipelineWarmup = 32

// BenchmarkPipeline measures capture → router → udp protocol → sink in
// memory, 1400-byte IPv4 packets, for TUN reads (and batches) of 1 to 128
// packets. One op is one packet. The source writes only each packet's
// header, so what is measured is the actor pipeline, not a memcpy of the
// payload (BenchmarkPipelineCopy includes that).
func BenchmarkPipeline(b *testing.B) {
	for _, batch := range []int{1, 4, 16, 64, 128} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) { benchPipeline(b, batch, true) })
	}
}

// BenchmarkPipelineCopy is BenchmarkPipeline with a source that copies all
// 1400 bytes into every buffer, as a TUN read does (there in the kernel).
func BenchmarkPipelineCopy(b *testing.B) {
	for _, batch := range []int{1, 128} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) { benchPipeline(b, batch, false) })
	}
}

func benchPipeline(b *testing.B, batch int, headerOnly bool) {
	const size = 1400
	tmpl := packettest.IPv4([4]byte{10, 90, 0, 1}, [4]byte{10, 90, 0, 2}, size, nil)
	dev := packettest.NewGenerator(tmpl, batch, 1<<62)
	dev.HeaderOnly = headerOnly

	var mu sync.Mutex
	cond := sync.NewCond(&mu)
	// The broadcast takes mu: without it, a send landing between the
	// gate's check and its Wait was a lost wakeup, and the loop stalled
	// (seen once in CI at batch 64). One lock per sendmmsg batch.
	sb := &packettest.SinkBind{OnSend: func(int) { mu.Lock(); cond.Broadcast(); mu.Unlock() }}
	dev.Gate = func() {
		mu.Lock()
		for dev.Reads.Load()-sb.Packets.Load() >= pipelineWindow {
			cond.Wait()
		}
		mu.Unlock()
	}
	sink.Lock()
	sink.bind = sb
	sink.Unlock()

	yaml := fmt.Sprintf(`
tun: {name: sybench0, addresses: [10.90.0.1/24], install_routes: false}
batch: {max_packets: %d, pool_buffers: 16384}
mailbox: {capacity: 8192, policy: drop_newest}   # ≥ the window in batches: the closed loop never drops
routes: [{prefix: 10.90.0.0/24, to: sink}]
protocols:
  - {name: sink, type: udp-sink, settings: {listen: "127.0.0.1:9", peer: "127.0.0.1:9"}}
`, batch)
	cfg, err := config.Parse("bench.yaml", []byte(yaml))
	if err != nil {
		b.Fatal(err)
	}
	n, err := New(cfg, Options{Device: dev})
	if err != nil {
		b.Fatal(err)
	}
	if err := n.Start(); err != nil {
		b.Fatal(err)
	}
	defer n.Stop()

	// waitFor fails only on a stall (no progress for pipelineStall), so a
	// slow, loaded machine makes the benchmark slow, not failed.
	waitFor := func(target uint64) {
		last, lastChange := sb.Packets.Load(), time.Now()
		for {
			got := sb.Packets.Load()
			if got >= target {
				return
			}
			if got != last {
				last, lastChange = got, time.Now()
			} else if time.Since(lastChange) > pipelineStall {
				b.Fatalf("pipeline stalled at %d packets (want %d); stats %+v", got, target, n.Stats().Actors)
			}
			time.Sleep(50 * time.Microsecond)
		}
	}
	// Warm up until the in-flight set has reached the window: every buffer
	// and batch header it needs has then been allocated once.
	waitFor(pipelineWarmup * pipelineWindow)

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	base := sb.Packets.Load()
	b.ResetTimer()
	waitFor(base + uint64(b.N))
	b.StopTimer()
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	got := sb.Packets.Load() - base

	pps := float64(got) / elapsed.Seconds()
	b.ReportMetric(pps/1e6, "Mpps")
	b.ReportMetric(pps*size*8/1e9, "Gbit/s")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(got), "allocs/pkt")
	for _, a := range n.Stats().Actors {
		if d := a.DroppedTotal(); d > 0 {
			b.Errorf("%s dropped %d packets %v: the closed loop should not drop", a.Name, d, a.Drops)
		}
	}
}
