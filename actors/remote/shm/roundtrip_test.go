//go:build linux

package shm

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"switchyard/packet"
)

var small = Config{SlotBytes: 2048, TXSlots: 64, RXSlots: 64}

// echoOnce moves everything on the TX ring back to the daemon: by views
// (Borrow, Send, Complete) or by copies (Receive into the host's pool,
// Send, Release).
func echoOnce(tb testing.TB, h *Host, hostPool *packet.Pool, byViews bool) int {
	tb.Helper()
	total := 0
	for {
		var n int
		var err error
		if byViews {
			views := make([][]byte, packet.MaxBatch)
			n, err = h.Borrow(views)
			if err == nil && n > 0 {
				var sent int
				sent, err = h.Send(views[:n])
				if err == nil && sent != n {
					tb.Fatalf("host sent %d of %d", sent, n)
				}
				if err == nil {
					err = h.Complete(n)
				}
			}
		} else {
			b := hostPool.GetBatch()
			n, err = h.Receive(b)
			if err == nil && n > 0 {
				var sent int
				sent, err = h.Send(b.Bufs)
				if err == nil && sent != n {
					tb.Fatalf("host sent %d of %d", sent, n)
				}
			}
			b.Release()
		}
		if err != nil {
			tb.Fatalf("host echo: %v", err)
		}
		if n == 0 {
			return total
		}
		total += n
	}
}

func TestRoundTrip(t *testing.T) {
	d, h := pair(t, small)
	pool, hostPool := packet.NewPool(512), packet.NewPool(512)
	maxLen := d.MaxPacketBytes()
	if want := 2048 - packet.Headroom; maxLen != want {
		t.Fatalf("max packet %d bytes, want %d", maxLen, want)
	}
	seq := uint64(0)
	for round := 0; round < 40; round++ {
		lens := []int{0, 1, 8, 100, 1400, maxLen}
		for len(lens) < 1+round%64 {
			lens = append(lens, 8+rand.IntN(maxLen-8))
		}
		b := batchOf(t, pool, seq, lens...)
		next, err := d.Send(b, 0)
		if err != nil || next != len(lens) {
			t.Fatalf("round %d: send = %d, %v; want %d, nil", round, next, err, len(lens))
		}
		b.Release()
		if got := echoOnce(t, h, hostPool, round%2 == 0); got != len(lens) {
			t.Fatalf("round %d: host echoed %d, want %d", round, got, len(lens))
		}
		got := pool.GetBatch()
		for got.Len() < len(lens) {
			n, err := d.Receive(got)
			if err != nil || n == 0 {
				t.Fatalf("round %d: receive = %d, %v after %d of %d", round, n, err, got.Len(), len(lens))
			}
		}
		for i, n := range lens {
			if len(got.Packet(i)) != n {
				t.Fatalf("round %d packet %d: %d bytes, want %d", round, i, len(got.Packet(i)), n)
			}
			if err := checkStamp(got.Packet(i), seq+uint64(i)); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		got.Release()
		seq += uint64(len(lens))
	}
	if _, err := d.Reap(); err != nil {
		t.Fatal(err)
	}
	c := d.Counts()
	checkConservation(t, c)
	if c.TXHanded != seq || c.TXCompleted != seq || c.RXReceived != seq || c.TXInFlight != 0 || c.FillLent != 64 {
		t.Fatalf("counts %+v: want %d handed, completed and received, none in flight, 64 lent", c, seq)
	}
	for _, p := range []*packet.Pool{pool, hostPool} {
		if err := p.CheckLeaks(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSendShortOfSlots(t *testing.T) {
	d, h := pair(t, Config{SlotBytes: 2048, TXSlots: 4, RXSlots: 4})
	pool := packet.NewPool(512)
	b := batchOf(t, pool, 0, repeat(10, 100)...)
	defer b.Release()
	next, err := d.Send(b, 0)
	if err != nil || next != 4 {
		t.Fatalf("send = %d, %v; want 4 (all TX slots), nil", next, err)
	}
	if again, err := d.Send(b, next); err != nil || again != next {
		t.Fatalf("send with no free slot = %d, %v; want %d, nil", again, err, next)
	}
	if c := d.Counts(); c.TXInFlight != 4 || c.TXFree != 0 {
		t.Fatalf("counts %+v: want 4 in flight, 0 free", c)
	}
	// The host completes two; the waiter hears of it once (EventSlots).
	views := make([][]byte, 2)
	if n, err := h.Borrow(views); n != 2 || err != nil {
		t.Fatalf("borrow = %d, %v", n, err)
	}
	if err := h.Complete(2); err != nil {
		t.Fatal(err)
	}
	if ev, err := d.Wait(); err != nil || ev != EventSlots {
		t.Fatalf("wait = %v, %v; want EventSlots", ev, err)
	}
	next, err = d.Send(b, next)
	if err != nil || next != 6 {
		t.Fatalf("send after completions = %d, %v; want 6", next, err)
	}
	checkConservation(t, d.Counts())
}

func TestSendOversized(t *testing.T) {
	d, _ := pair(t, small)
	pool := packet.NewPool(512)
	maxLen := d.MaxPacketBytes()
	b := batchOf(t, pool, 0, 100, maxLen, maxLen+1, 100)
	defer b.Release()
	next, err := d.Send(b, 0)
	if !errors.Is(err, ErrOversized) || next != 2 {
		t.Fatalf("send = %d, %v; want 2, ErrOversized", next, err)
	}
	if next, err = d.Send(b, next+1); err != nil || next != 4 {
		t.Fatalf("send after the oversized packet = %d, %v; want 4, nil", next, err)
	}
	if c := d.Counts(); c.TXHanded != 3 {
		t.Fatalf("handed %d, want 3", c.TXHanded)
	}
}

func TestReceiveNoBuffers(t *testing.T) {
	d, h := pair(t, small)
	pool, hostPool := packet.NewPool(packet.MaxBatch), packet.NewPool(512)
	b := batchOf(t, pool, 0, repeat(10, 100)...)
	d.Send(b, 0)
	b.Release()
	echoOnce(t, h, hostPool, true)
	hog := batchOf(t, pool, 0, repeat(packet.MaxBatch, 1)...) // the whole pool
	got := pool.GetBatch()
	if n, err := d.Receive(got); !errors.Is(err, ErrNoBuffers) || n != 0 {
		t.Fatalf("receive with an empty pool = %d, %v; want 0, ErrNoBuffers", n, err)
	}
	hog.Release()
	if n, err := d.Receive(got); err != nil || n != 10 {
		t.Fatalf("receive = %d, %v; want the 10 packets still on the ring", n, err)
	}
	got.Release()
	if err := pool.CheckLeaks(); err != nil {
		t.Fatal(err)
	}
}

// TestCopiedBeforeChecked: what Receive returns is the daemon's own copy; the
// host rewriting its slot or descriptor afterwards changes nothing.
func TestCopiedBeforeChecked(t *testing.T) {
	d, h := pair(t, small)
	pool := packet.NewPool(512)
	pkts := batchOf(t, pool, 7, 1400, 1400)
	views := make([][]byte, 2)
	n, err := h.Reserve(views)
	if n != 2 || err != nil {
		t.Fatalf("reserve = %d, %v", n, err)
	}
	if sent, err := h.Send(pkts.Bufs); sent != 2 || err != nil {
		t.Fatalf("host send = %d, %v", sent, err)
	}
	pkts.Release()
	got := pool.GetBatch()
	defer got.Release()
	if n, err := d.Receive(got); n != 2 || err != nil {
		t.Fatalf("receive = %d, %v", n, err)
	}
	before := bytes.Clone(got.Packet(0))
	for _, v := range views { // the host scribbles over what it published
		v = v[:cap(v)]
		for i := range v {
			v[i] = 0xee
		}
	}
	rx := &h.reg.rings[ringRX]
	for i := uint32(0); i < 2; i++ {
		rx.at(i).len = 1
	}
	if !bytes.Equal(got.Packet(0), before) || len(got.Packet(1)) != 1400 {
		t.Fatal("the daemon's copy changed with the host's slot")
	}
	if err := checkStamp(got.Packet(1), 8); err != nil {
		t.Fatal(err)
	}
}

// TestThreadedEcho runs the daemon's sender, its waiter and an echoing host
// on their own goroutines with few slots, so that both sides run short and
// sleep: every packet must come back, in order, through the doorbells.
func TestThreadedEcho(t *testing.T) {
	defer goleak.VerifyNone(t)
	const total = 20000
	d, h := pair(t, Config{SlotBytes: 2048, TXSlots: 16, RXSlots: 8})
	pool, hostPool := packet.NewPool(1024), packet.NewPool(512)

	var wg sync.WaitGroup
	hostErr := make(chan error, 1)
	wg.Add(1)
	go func() { // the host: echo by views, wait for fill slots when short
		defer wg.Done()
		views := make([][]byte, packet.MaxBatch)
		for {
			if _, err := h.Wait(); err != nil {
				hostErr <- err
				return
			}
			for {
				n, err := h.Borrow(views)
				if err != nil {
					hostErr <- err
					return
				}
				if n == 0 {
					break
				}
				for sent := 0; sent < n; {
					k, err := h.Send(views[sent:n])
					if err != nil {
						hostErr <- err
						return
					}
					if sent += k; sent < n {
						if _, err := h.Wait(); err != nil {
							hostErr <- err
							return
						}
					}
				}
				if err := h.Complete(n); err != nil {
					hostErr <- err
					return
				}
			}
		}
	}()

	slots := make(chan struct{}, 1)
	received := make(chan *packet.Batch, 64)
	wg.Add(1)
	go func() { // the daemon's waiter
		defer wg.Done()
		defer close(received)
		for {
			ev, err := d.Wait()
			if err != nil {
				if !errors.Is(err, ErrClosed) {
					t.Errorf("daemon wait: %v", err)
				}
				return
			}
			if ev&EventSlots != 0 {
				select {
				case slots <- struct{}{}:
				default:
				}
			}
			if ev&EventReceive != 0 {
				b := pool.GetBatch()
				if _, err := d.Receive(b); err != nil {
					t.Errorf("receive: %v", err)
				}
				received <- b
			}
		}
	}()

	go func() { // the sender: stage what does not fit until slots come back
		seq := uint64(0)
		for seq < total {
			n := min(1+rand.IntN(packet.MaxBatch), total-int(seq))
			lens := make([]int, n)
			for i := range lens {
				lens[i] = 8 + rand.IntN(1400)
			}
			b := batchOf(t, pool, seq, lens...)
			for from := 0; from < n; {
				next, err := d.Send(b, from)
				if err != nil {
					t.Errorf("send: %v", err)
					return
				}
				if from = next; from < n {
					select {
					case <-slots:
					case <-time.After(50 * time.Millisecond): // the ack may have come before we asked
					}
				}
			}
			b.Release()
			seq += uint64(n)
		}
	}()

	next := uint64(0)
	deadline := time.After(60 * time.Second)
	for next < total {
		select {
		case b := <-received:
			for i := range b.Len() {
				if err := checkStamp(b.Packet(i), next); err != nil {
					t.Fatal(err)
				}
				next++
			}
			b.Release()
		case <-deadline:
			t.Fatalf("received %d of %d; counts %+v", next, total, d.Counts())
		}
	}
	d.Close()
	for b := range received {
		t.Errorf("%d packets after the last", b.Len())
		b.Release()
	}
	if err := <-hostErr; !errors.Is(err, ErrPeerGone) {
		t.Errorf("host wait after the daemon closed: %v, want ErrPeerGone", err)
	}
	wg.Wait()
	c := d.Counts()
	checkConservation(t, c)
	if c.TXHanded != total || c.RXReceived != total {
		t.Fatalf("counts %+v: want %d handed and received", c, total)
	}
	for _, p := range []*packet.Pool{pool, hostPool} {
		if err := p.CheckLeaks(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestHostGone: a host that goes away while holding packets is seen at once
// (end of file on the doorbell), what it published is still delivered, and
// Reclaim accounts for the rest.
func TestHostGone(t *testing.T) {
	for _, drain := range []bool{true, false} {
		d, h := pair(t, small)
		pool := packet.NewPool(512)
		b := batchOf(t, pool, 0, repeat(10, 100)...)
		if next, err := d.Send(b, 0); next != 10 || err != nil {
			t.Fatalf("send = %d, %v", next, err)
		}
		b.Release()
		views := make([][]byte, 10)
		if n, err := h.Borrow(views); n != 10 || err != nil {
			t.Fatalf("borrow = %d, %v", n, err)
		}
		if sent, err := h.Send(views[:4]); sent != 4 || err != nil { // echoes 4, completes none
			t.Fatalf("host send = %d, %v", sent, err)
		}
		h.Close()

		got := pool.GetBatch()
		if drain {
			if ev, err := d.Wait(); ev != EventReceive || err != nil {
				t.Fatalf("wait = %v, %v; want EventReceive", ev, err)
			}
			if n, err := d.Receive(got); n != 4 || err != nil {
				t.Fatalf("receive = %d, %v; want the 4 published", n, err)
			}
			if ev, err := d.Wait(); !errors.Is(err, ErrPeerGone) {
				t.Fatalf("wait = %v, %v; want ErrPeerGone", ev, err)
			}
		}
		got.Release()
		lost := d.Reclaim()
		want := Lost{TXPackets: 10, FillSlots: 64, RXUnread: 4}
		if drain {
			want.RXUnread = 0
		}
		if lost != want {
			t.Fatalf("drain %v: reclaim = %+v, want %+v", drain, lost, want)
		}
		c := d.Counts()
		checkConservation(t, c)
		if c.TXLost != 10 || c.TXInFlight != 0 || c.FillLent != 0 || c.TXFree != 64 {
			t.Fatalf("counts after reclaim %+v", c)
		}
		if again := d.Reclaim(); again != (Lost{}) {
			t.Fatalf("second reclaim = %+v, want nothing", again)
		}
		if _, err := d.Send(b, 0); !errors.Is(err, ErrReclaimed) {
			t.Fatalf("send after reclaim: %v, want ErrReclaimed", err)
		}
		if err := pool.CheckLeaks(); err != nil {
			t.Fatal(err)
		}
		d.Close()
	}
}

func TestCloseWakesWaiters(t *testing.T) {
	defer goleak.VerifyNone(t)
	d, h := pair(t, small)
	errs := make(chan error, 2)
	go func() { _, err := d.Wait(); errs <- err }()
	go func() { _, err := h.Wait(); errs <- err }()
	time.Sleep(20 * time.Millisecond) // let both block in read(2)
	if _, err := d.Wait(); err == nil || !strings.Contains(err.Error(), "another goroutine") {
		t.Fatalf("a second concurrent Wait: %v", err)
	}
	h.Close()
	d.Close()
	for range 2 {
		select {
		case err := <-errs:
			if !errors.Is(err, ErrClosed) && !errors.Is(err, ErrPeerGone) {
				t.Fatalf("wait after close: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Close did not wake a waiter")
		}
	}
	if _, err := d.Wait(); !errors.Is(err, ErrClosed) {
		t.Fatalf("wait after close: %v", err)
	}
}

// TestRegionSealed: the host's file cannot be resized or re-sealed.
func TestRegionSealed(t *testing.T) {
	d, _ := pair(t, small)
	f, err := d.HostFiles()
	if err == nil {
		t.Fatal("HostFiles twice succeeded")
	}
	d2, err := New(small)
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	if f, err = d2.HostFiles(); err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd := int(f.Region.Fd())
	size := int64(d2.RegionBytes())
	for _, c := range []struct {
		name string
		err  error
	}{
		{"shrink", unix.Ftruncate(fd, size/2)},
		{"grow", unix.Ftruncate(fd, size*2)},
		{"seal writes", func() error { _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_WRITE); return err }()},
	} {
		if !errors.Is(c.err, unix.EPERM) {
			t.Errorf("%s: %v, want EPERM", c.name, c.err)
		}
	}
}

// TestTXOnlyStream: traffic in one direction only, with few slots so Send
// runs short all the time and the sender reaps completions itself, racing
// the waiter that was asked to report them. The host's rings are all
// invited: the daemon must never call them a flood.
func TestTXOnlyStream(t *testing.T) {
	defer goleak.VerifyNone(t)
	const total = 100000
	d, h := pair(t, Config{SlotBytes: 2048, TXSlots: 4, RXSlots: 4})
	pool := packet.NewPool(512)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // the host completes everything, sends nothing
		defer wg.Done()
		views := make([][]byte, packet.MaxBatch)
		for {
			if _, err := h.Wait(); err != nil {
				return
			}
			for {
				n, err := h.Borrow(views)
				if err != nil || n == 0 {
					break
				}
				h.Complete(n)
			}
		}
	}()
	slots := make(chan struct{}, 1)
	waitErr := make(chan error, 1)
	go func() {
		defer wg.Done()
		for {
			ev, err := d.Wait()
			if err != nil {
				waitErr <- err
				return
			}
			if ev&EventSlots != 0 {
				select {
				case slots <- struct{}{}:
				default:
				}
			}
		}
	}()
	b := batchOf(t, pool, 0, repeat(packet.MaxBatch, 64)...)
	sent := 0
	for sent < total {
		next, err := d.Send(b, sent%packet.MaxBatch)
		if err != nil {
			t.Fatal(err)
		}
		sent += next - sent%packet.MaxBatch
		if next < packet.MaxBatch && sent%packet.MaxBatch != 0 {
			select {
			case <-slots:
			case err := <-waitErr:
				t.Fatalf("after %d packets: %v; counts %+v", sent, err, d.Counts())
			case <-time.After(time.Millisecond): // reap it ourselves
			}
		}
	}
	b.Release()
	d.Close()
	h.Close()
	wg.Wait()
	if err := <-waitErr; !errors.Is(err, ErrClosed) {
		t.Fatalf("wait: %v, want ErrClosed", err)
	}
	c := d.Counts()
	t.Logf("counts %+v", c)
	checkConservation(t, c)
}
