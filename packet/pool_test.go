package packet

import (
	"sync"
	"testing"
)

func TestPoolBoundAndLeakCheck(t *testing.T) {
	p := NewPool(MaxBatch * 2)
	a := make([][]byte, MaxBatch)
	b := make([][]byte, MaxBatch)
	c := make([][]byte, 1)
	if !p.GetBufs(a) || !p.GetBufs(b) {
		t.Fatal("GetBufs failed below the limit")
	}
	if p.GetBufs(c) {
		t.Fatal("GetBufs succeeded beyond the limit")
	}
	if got, want := p.Outstanding(), 2*MaxBatch; got != want {
		t.Fatalf("Outstanding() = %d, want %d", got, want)
	}
	if err := p.CheckLeaks(); err == nil {
		t.Fatal("CheckLeaks() = nil with buffers outstanding")
	}
	p.PutBufs(a)
	p.PutBufs(b)
	if err := p.CheckLeaks(); err != nil {
		t.Fatal(err)
	}
	if !p.GetBufs(c) {
		t.Fatal("GetBufs failed after buffers came back")
	}
	if got, want := cap(c[0]), BufferBytes; got != want {
		t.Fatalf("cap(buffer) = %d, want %d", got, want)
	}
	p.PutBufs(c)
}

func TestPoolRejectsForeignBuffer(t *testing.T) {
	p := NewPool(MaxBatch)
	defer func() {
		if recover() == nil {
			t.Fatal("PutBufs accepted a buffer that is not from a pool")
		}
	}()
	p.PutBufs([][]byte{make([]byte, 10)})
}

func TestBatchFilterAndRelease(t *testing.T) {
	p := NewPool(MaxBatch)
	b := p.GetBatch()
	bufs := make([][]byte, 5)
	if !p.GetBufs(bufs) {
		t.Fatal("GetBufs")
	}
	for i, buf := range bufs {
		buf[Headroom] = byte(i)
		b.Append(buf, 1)
	}
	removed := b.Filter(func(pkt []byte) bool { return pkt[0]%2 == 0 })
	if got, want := removed, 2; got != want {
		t.Fatalf("Filter removed %d, want %d", got, want)
	}
	var got []byte
	for i := 0; i < b.Len(); i++ {
		got = append(got, b.Packet(i)[0])
	}
	if want := []byte{0, 2, 4}; string(got) != string(want) {
		t.Fatalf("kept packets %v, want %v", got, want)
	}
	if got, want := p.Outstanding(), 3; got != want {
		t.Fatalf("Outstanding() = %d, want %d", got, want)
	}
	b.Release()
	if err := p.CheckLeaks(); err != nil {
		t.Fatal(err)
	}
}

func TestPoolConcurrent(t *testing.T) {
	p := NewPool(MaxBatch * 4)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bufs := make([][]byte, 32)
			for i := 0; i < 1000; i++ {
				if p.GetBufs(bufs) {
					p.PutBufs(bufs)
				}
			}
		}()
	}
	wg.Wait()
	if err := p.CheckLeaks(); err != nil {
		t.Fatal(err)
	}
}

func TestPoolSteadyStateAllocs(t *testing.T) {
	p := NewPool(MaxBatch)
	bufs := make([][]byte, MaxBatch)
	// Warm up: allocate every buffer once.
	p.GetBufs(bufs)
	p.PutBufs(bufs)
	allocs := testing.AllocsPerRun(100, func() {
		b := p.GetBatch()
		p.GetBufs(bufs)
		for _, buf := range bufs {
			b.Append(buf, 1400)
		}
		b.Release()
	})
	if allocs != 0 {
		t.Fatalf("allocations per batch = %v, want 0", allocs)
	}
}

type countHook struct{ calls, n int }

func (c *countHook) Released(n int) { c.calls++; c.n += n }

func TestOnReleaseTellsOnce(t *testing.T) {
	pool := NewPool(MaxBatch)
	h := &countHook{}
	b := pool.GetBatch()
	b.OnRelease(h, 7)
	b.Release()
	if h.calls != 1 || h.n != 7 {
		t.Errorf("hook told %d times with %d packets, want once with 7", h.calls, h.n)
	}
	// The recycled header carries no hook.
	b = pool.GetBatch()
	b.Release()
	if h.calls != 1 {
		t.Errorf("a recycled batch told the old hook (%d calls)", h.calls)
	}
	if n := testing.AllocsPerRun(100, func() {
		b := pool.GetBatch()
		b.OnRelease(h, 1)
		b.Release()
	}); n != 0 {
		t.Errorf("OnRelease + Release allocate %.1f times, want 0", n)
	}
}

// TestPoolAllocatedIsTheHighWaterMark: buffers returned stay allocated (the
// pool keeps them for reuse), so Allocated is the most ever out at once.
func TestPoolAllocatedIsTheHighWaterMark(t *testing.T) {
	p := NewPool(4 * MaxBatch)
	steps := []struct {
		get, put        int
		wantAllocated   int
		wantOutstanding int
	}{
		{get: 100, wantAllocated: 100, wantOutstanding: 100},
		{put: 100, wantAllocated: 100, wantOutstanding: 0},
		{get: 60, wantAllocated: 100, wantOutstanding: 60}, // reused
		{get: 100, wantAllocated: 160, wantOutstanding: 160},
		{put: 160, wantAllocated: 160, wantOutstanding: 0},
	}
	var out [][]byte
	for i, s := range steps {
		if s.get > 0 {
			bufs := make([][]byte, s.get)
			if !p.GetBufs(bufs) {
				t.Fatalf("step %d: GetBufs(%d) failed", i, s.get)
			}
			out = append(out, bufs...)
		}
		if s.put > 0 {
			p.PutBufs(out[:s.put])
			out = out[s.put:]
		}
		if got := p.Allocated(); got != s.wantAllocated {
			t.Errorf("step %d: Allocated = %d, want %d", i, got, s.wantAllocated)
		}
		if got := p.Outstanding(); got != s.wantOutstanding {
			t.Errorf("step %d: Outstanding = %d, want %d", i, got, s.wantOutstanding)
		}
	}
}
