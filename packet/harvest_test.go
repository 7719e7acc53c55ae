package packet

import (
	"fmt"
	"testing"
)

func TestHarvesterMove(t *testing.T) {
	for _, tc := range []struct {
		name      string
		slots     int
		maxBatch  int
		pick      []int
		poolExtra int   // buffers beyond the slots the pool can still give
		want      []int // batch sizes emitted
		wantOK    bool
	}{
		{"all, one batch", 8, 128, []int{0, 1, 2, 3, 4, 5, 6, 7}, 8, []int{8}, true},
		{"split by max batch", 8, 3, []int{0, 1, 2, 3, 4, 5, 6, 7}, 8, []int{3, 3, 2}, true},
		{"a subset keeps order", 8, 128, []int{1, 4, 6}, 8, []int{3}, true},
		{"nothing picked", 8, 128, nil, 0, nil, true},
		{"pool cannot refill", 8, 128, []int{0, 1, 2}, 2, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool := NewPool(MaxBatch)
			pool.limit = tc.slots + tc.poolExtra
			h, ok := NewHarvester(pool, tc.slots, tc.maxBatch)
			if !ok {
				t.Fatal("NewHarvester: no buffers")
			}
			sizes := make([]int, tc.slots)
			for i := range sizes {
				sizes[i] = 10 + i
				h.Slots[i][Headroom] = byte(i)
			}
			before := append([][]byte(nil), h.Slots...)
			var got []int
			var order []byte
			var bytes int
			ok = h.Move(tc.pick, sizes, func(b *Batch, n int) {
				got = append(got, b.Len())
				bytes += n
				for i := range b.Len() {
					order = append(order, b.Packet(i)[0])
				}
				b.Release()
			})
			if ok != tc.wantOK || fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("Move = %v, batches %v; want %v, %v", ok, got, tc.wantOK, tc.want)
			}
			wantBytes, wantOrder := 0, []byte(nil)
			if ok {
				for _, i := range tc.pick {
					wantBytes += sizes[i]
					wantOrder = append(wantOrder, byte(i))
				}
			}
			if bytes != wantBytes || string(order) != string(wantOrder) {
				t.Errorf("emitted %d bytes in order %v; want %d in %v", bytes, order, wantBytes, wantOrder)
			}
			for i := range h.Slots {
				if len(h.Slots[i]) != BufferBytes {
					t.Errorf("slot %d has %d bytes after Move, want a full buffer", i, len(h.Slots[i]))
				}
				picked := false
				for _, p := range tc.pick {
					picked = picked || (p == i && ok)
				}
				if same := &h.Slots[i][0] == &before[i][0]; same == picked {
					t.Errorf("slot %d: replaced = %v, want %v", i, !same, picked)
				}
			}
			h.Release()
			if err := pool.CheckLeaks(); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestPoolCopy(t *testing.T) {
	for _, tc := range []struct {
		name     string
		packets  int
		maxBatch int
		limit    int
		want     []int
		dropped  int
	}{
		{"one batch", 5, 128, MaxBatch, []int{5}, 0},
		{"split", 5, 2, MaxBatch, []int{2, 2, 1}, 0},
		{"pool short for the second chunk", 5, 3, 4, []int{3}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool := NewPool(MaxBatch)
			pool.limit = tc.limit
			const offset = 4
			src := make([][]byte, tc.packets)
			for i := range src {
				src[i] = append(make([]byte, offset), byte(i), 1, 2)
			}
			var got []int
			var held []*Batch
			dropped := pool.Copy(src, offset, tc.maxBatch, func(b *Batch, n int) {
				got = append(got, b.Len())
				if n != 3*b.Len() {
					t.Errorf("emit says %d bytes for %d packets of 3", n, b.Len())
				}
				held = append(held, b) // keep them: the pool stays short
			})
			if fmt.Sprint(got) != fmt.Sprint(tc.want) || dropped != tc.dropped {
				t.Errorf("Copy: batches %v, dropped %d; want %v, %d", got, dropped, tc.want, tc.dropped)
			}
			for _, b := range held {
				b.Release()
			}
			if err := pool.CheckLeaks(); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestHarvestAllocatesNothing(t *testing.T) {
	pool := NewPool(4 * MaxBatch)
	h, _ := NewHarvester(pool, MaxBatch, MaxBatch)
	sizes := make([]int, MaxBatch)
	for i := range sizes {
		sizes[i] = 1400
	}
	emit := Emit(func(b *Batch, _ int) { b.Release() })
	src := make([][]byte, 47)
	for i := range src {
		src[i] = make([]byte, Headroom+1400)
	}
	if n := testing.AllocsPerRun(100, func() {
		h.Move(h.All(47), sizes, emit)
		pool.Copy(src, Headroom, MaxBatch, emit)
	}); n != 0 {
		t.Errorf("a harvest allocates %.1f times, want 0", n)
	}
	h.Release()
}
