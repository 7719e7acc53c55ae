//go:build linux

package shm

import (
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"switchyard/packet"
)

// The crossing alone: daemon → host → daemon, 1400-byte packets, 128 to a
// batch, default region (slots of a pool buffer). One op is one batch out
// and back: two crossings. The goal is ≤ 0.015 CPU seconds per Gbit per
// crossing added over the in-process pipeline, which hands a batch on by
// pointer and so adds nothing here: the whole cost of an op is added.

const (
	benchPackets = packet.MaxBatch
	benchBytes   = 1400
)

// crossing is one daemon → host → daemon trip on one goroutine: the daemon
// copies into slots, the host copies each packet from its TX slot into a
// fill slot (standing in for a protocol writing its output there) and
// completes, the daemon copies out into its pool.
type crossing struct {
	d     *Daemon
	h     *Host
	pool  *packet.Pool
	src   *packet.Batch
	views [][]byte
}

func newCrossing(tb testing.TB, cfg Config) *crossing {
	d, h := pair(tb, cfg)
	pool := packet.NewPool(4 * packet.MaxBatch)
	return &crossing{
		d: d, h: h, pool: pool,
		src:   batchOf(tb, pool, 0, repeat(benchPackets, benchBytes)...),
		views: make([][]byte, packet.MaxBatch),
	}
}

func (c *crossing) trip(tb testing.TB) {
	if n, err := c.d.Send(c.src, 0); n != benchPackets || err != nil {
		tb.Fatalf("send = %d, %v", n, err)
	}
	n, err := c.h.Borrow(c.views)
	if n != benchPackets || err != nil {
		tb.Fatalf("borrow = %d, %v", n, err)
	}
	if sent, err := c.h.Send(c.views[:n]); sent != n || err != nil {
		tb.Fatalf("host send = %d, %v", sent, err)
	}
	if err := c.h.Complete(n); err != nil {
		tb.Fatal(err)
	}
	dst := c.pool.GetBatch()
	if got, err := c.d.Receive(dst); got != benchPackets || err != nil {
		tb.Fatalf("receive = %d, %v", got, err)
	}
	dst.Release()
}

func cpuTime() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the process's CPU seconds per Gbit per crossing.
func reportCPU(b *testing.B, cpu time.Duration, crossings int) {
	gbits := float64(b.N) * benchPackets * benchBytes * 8 / 1e9
	b.ReportMetric(cpu.Seconds()/gbits/float64(crossings), "cpu-s/Gbit/crossing")
}

func BenchmarkCrossing(b *testing.B) {
	for _, c := range []struct {
		name string
		cfg  Config
	}{
		{"slot=pool-buffer", Config{}},
		{"slot=2048", Config{SlotBytes: 2048}},
	} {
		b.Run(c.name, func(b *testing.B) {
			c := newCrossing(b, c.cfg)
			defer c.src.Release()
			b.SetBytes(benchPackets * benchBytes)
			b.ReportAllocs()
			c.trip(b) // warm the pool
			cpu := cpuTime()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				c.trip(b)
			}
			b.StopTimer()
			reportCPU(b, cpuTime()-cpu, 2)
		})
	}
}

// BenchmarkCopyFloor is one copy of a batch between pool buffers: what a
// crossing cannot go below with one copy.
func BenchmarkCopyFloor(b *testing.B) {
	pool := packet.NewPool(4 * packet.MaxBatch)
	src := batchOf(b, pool, 0, repeat(benchPackets, benchBytes)...)
	dst := batchOf(b, pool, 0, repeat(benchPackets, benchBytes)...)
	defer src.Release()
	defer dst.Release()
	b.SetBytes(benchPackets * benchBytes)
	b.ReportAllocs()
	cpu := cpuTime()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := range src.Bufs {
			copy(dst.Bufs[j][packet.Headroom:], src.Packet(j))
		}
	}
	b.StopTimer()
	reportCPU(b, cpuTime()-cpu, 1)
}

// BenchmarkCrossingThreaded is the crossing as the transport will run it:
// the daemon's sender, its waiter and the host on their own goroutines,
// woken by the doorbells. One op is one batch out and back.
func BenchmarkCrossingThreaded(b *testing.B) {
	d, h := pair(b, Config{})
	pool := packet.NewPool(8 * packet.MaxBatch)
	src := batchOf(b, pool, 0, repeat(benchPackets, benchBytes)...)
	defer src.Release()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // the host echoes by views
		defer wg.Done()
		echoHost(h)
	}()
	slots := make(chan struct{}, 1)
	got := make(chan int, 1024)
	go func() { // the daemon's waiter
		defer wg.Done()
		defer close(got)
		for {
			ev, err := d.Wait()
			if err != nil {
				return
			}
			if ev&EventSlots != 0 {
				select {
				case slots <- struct{}{}:
				default:
				}
			}
			if ev&EventReceive != 0 {
				dst := pool.GetBatch()
				n, _ := d.Receive(dst)
				dst.Release()
				got <- n
			}
		}
	}()
	run := func(batches int) {
		received := 0
		for i := 0; i < batches; i++ {
			for from := 0; from < benchPackets; {
				next, err := d.Send(src, from)
				if err != nil {
					b.Fatal(err)
				}
				if from = next; from < benchPackets {
					select {
					case <-slots:
					case n := <-got:
						received += n
					}
				}
			}
		}
		for received < batches*benchPackets {
			received += <-got
		}
	}
	run(64) // warm up: the pool's buffers are allocated lazily
	b.SetBytes(benchPackets * benchBytes)
	b.ReportAllocs()
	cpu, before := cpuTime(), d.Counts()
	hostRung, hostSlept := h.bell.rung.Load(), h.bell.slept.Load()
	b.ResetTimer()
	run(b.N)
	b.StopTimer()
	reportCPU(b, cpuTime()-cpu, 2)
	after := d.Counts()
	// Doorbells per batch out and back: both sides' rings and sleeps.
	rings := after.BellsRung - before.BellsRung + h.bell.rung.Load() - hostRung
	sleeps := after.Sleeps - before.Sleeps + h.bell.slept.Load() - hostSlept
	b.ReportMetric(float64(rings)/float64(b.N), "rings/op")
	b.ReportMetric(float64(sleeps)/float64(b.N), "sleeps/op")
	d.Close()
	for range got {
	}
	wg.Wait()
}

// TestCrossingAllocs: the crossing allocates nothing per batch, and
// neither does a Wait that finds work.
func TestCrossingAllocs(t *testing.T) {
	c := newCrossing(t, Config{})
	defer c.src.Release()
	c.trip(t)
	if allocs := testing.AllocsPerRun(100, func() { c.trip(t) }); allocs != 0 {
		t.Fatalf("%v allocations per batch out and back, want 0", allocs)
	}
	// Work waiting on both sides: each Wait returns at once.
	c.d.Send(c.src, 0)
	c.h.Borrow(c.views)
	c.h.Send(c.views[:1])
	c.d.Send(c.src, 0) // more for the host, left on the ring
	for name, wait := range map[string]func() (Event, error){"daemon": c.d.Wait, "host": c.h.Wait} {
		if allocs := testing.AllocsPerRun(100, func() {
			if ev, err := wait(); ev&EventReceive == 0 || err != nil {
				t.Fatalf("%s wait = %v, %v", name, ev, err)
			}
		}); allocs != 0 {
			t.Fatalf("%v allocations per %s Wait, want 0", allocs, name)
		}
	}
}

// BenchmarkDoorbell measures one wake-up of a thread blocked in read(2) on
// the doorbell: ping-pong between two goroutines, ns/op per one-way wake.
// "socketpair" is what the package uses; the others are the alternatives
// it was measured against.
func BenchmarkDoorbell(b *testing.B) {
	type end struct {
		wait func()
		ring func()
	}
	pingPong := func(b *testing.B, a, z end) {
		done := make(chan struct{})
		go func() {
			for i := 0; i < b.N; i++ {
				z.wait()
				z.ring()
			}
			close(done)
		}()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			a.ring()
			a.wait()
		}
		<-done
		b.StopTimer()
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(2*b.N), "ns/wake")
	}
	one := []byte{1, 0, 0, 0, 0, 0, 0, 0}
	b.Run("socketpair", func(b *testing.B) {
		x, y, err := newBellPair()
		if err != nil {
			b.Fatal(err)
		}
		defer unix.Close(x)
		defer unix.Close(y)
		mk := func(mine, peer int) end {
			buf := make([]byte, BellDrainBytes)
			return end{
				wait: func() { unix.Read(mine, buf) },
				ring: func() { unix.Sendto(mine, one[:1], unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, nil) },
			}
		}
		pingPong(b, mk(x, y), mk(y, x))
	})
	b.Run("eventfd", func(b *testing.B) {
		var fds [2]int
		for i := range fds {
			fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
			if err != nil {
				b.Fatal(err)
			}
			defer unix.Close(fd)
			fds[i] = fd
		}
		mk := func(mine, peer int) end {
			buf := make([]byte, 8)
			return end{wait: func() { unix.Read(mine, buf) }, ring: func() { unix.Write(peer, one) }}
		}
		pingPong(b, mk(fds[0], fds[1]), mk(fds[1], fds[0]))
	})
	b.Run("eventfd-netpoller", func(b *testing.B) {
		var files [2]*os.File
		for i := range files {
			fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
			if err != nil {
				b.Fatal(err)
			}
			files[i] = os.NewFile(uintptr(fd), "eventfd")
			defer files[i].Close()
		}
		mk := func(mine, peer *os.File) end {
			buf := make([]byte, 8)
			return end{wait: func() { mine.Read(buf) }, ring: func() { peer.Write(one) }}
		}
		pingPong(b, mk(files[0], files[1]), mk(files[1], files[0]))
	})
}

// BenchmarkSocketFloor is what a batch costs through a kernel socket, a
// floor for any socket-based crossing: one batch (128 × 1400 bytes) written
// by one goroutine and read by another, over a Unix stream socket and over
// loopback TCP. One op is one batch one way; the CPU is both ends'.
func BenchmarkSocketFloor(b *testing.B) {
	for _, kind := range []string{"unix", "tcp-loopback"} {
		b.Run(kind, func(b *testing.B) {
			var w, r net.Conn
			switch kind {
			case "unix":
				fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
				if err != nil {
					b.Fatal(err)
				}
				fw, fr := os.NewFile(uintptr(fds[0]), "w"), os.NewFile(uintptr(fds[1]), "r")
				if w, err = net.FileConn(fw); err != nil {
					b.Fatal(err)
				}
				if r, err = net.FileConn(fr); err != nil {
					b.Fatal(err)
				}
				fw.Close()
				fr.Close()
			default:
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					b.Fatal(err)
				}
				defer ln.Close()
				if w, err = net.Dial("tcp", ln.Addr().String()); err != nil {
					b.Fatal(err)
				}
				if r, err = ln.Accept(); err != nil {
					b.Fatal(err)
				}
			}
			defer w.Close()
			defer r.Close()
			batch := make([]byte, benchPackets*benchBytes)
			done := make(chan error, 1)
			go func() {
				buf := make([]byte, len(batch))
				for i := 0; i < b.N; i++ {
					if _, err := io.ReadFull(r, buf); err != nil {
						done <- err
						return
					}
				}
				done <- nil
			}()
			b.SetBytes(int64(len(batch)))
			b.ReportAllocs()
			cpu := cpuTime()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := w.Write(batch); err != nil {
					b.Fatal(err)
				}
			}
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			reportCPU(b, cpuTime()-cpu, 1)
		})
	}
}
