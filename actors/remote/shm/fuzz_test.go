//go:build linux

package shm

import (
	"errors"
	"sync/atomic"
	"testing"
	"unsafe"

	"switchyard/packet"
)

// opReader hands out a fuzz input a byte or a word at a time, zeros once it
// is used up.
type opReader struct{ b []byte }

func (r *opReader) done() bool { return len(r.b) == 0 }

func (r *opReader) byte() byte {
	if len(r.b) == 0 {
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *opReader) u32() uint32 {
	return uint32(r.byte()) | uint32(r.byte())<<8 | uint32(r.byte())<<16 | uint32(r.byte())<<24
}

// alignedMem returns n zero bytes aligned to a cache line, like a mapping.
func alignedMem(n uint64) []byte {
	raw := make([]byte, n+CacheLineBytes)
	off := (CacheLineBytes - uintptr(unsafe.Pointer(&raw[0]))%CacheLineBytes) % CacheLineBytes
	return raw[off : off+uintptr(n)]
}

// FuzzDaemon drives a daemon's end with a mix of honest host steps and
// arbitrary writes to the shared rings, indices and slots, as a hostile
// host would make them. Whatever the input: no panic, only the documented
// errors, the daemon's private slot state consistent, its counts exact,
// every received packet within bounds, and after Reclaim every slot free
// and no pool buffer outstanding.
func FuzzDaemon(f *testing.F) {
	f.Add([]byte{0, 3, 10, 20, 30, 3, 6})                            // send, host borrows and completes, reap
	f.Add([]byte{4, 2, 50, 60, 1})                                   // host sends, daemon receives
	f.Add([]byte{2, 0x00, 0x11, 9, 0, 0, 0, 1})                      // a raw write into the rings, receive
	f.Add([]byte{0, 5, 1, 2, 3, 4, 5, 6, 5, 0, 7, 1, 2, 3, 4, 6, 0}) // send, host copies, scribble, reap
	l, err := newLayout(MinSlotBytes, 4, 4)
	if err != nil {
		f.Fatal(err)
	}
	maxLen := int(l.maxLen())
	f.Fuzz(func(t *testing.T, ops []byte) {
		mem := alignedMem(l.size)
		l.writeHeader(mem, RegionID{})
		d := newDaemon(mem, l, RegionID{}, -1)
		d.rxMu.Lock()
		if err := d.refillLocked(); err != nil {
			t.Fatal(err)
		}
		d.rxMu.Unlock()
		h := newHost(mem, l, RegionID{}, -1)
		reg := view(mem, l)
		pool, hostPool := packet.NewPool(packet.MaxBatch), packet.NewPool(packet.MaxBatch)
		views := make([][]byte, 8)
		seq := uint64(0)
		r := &opReader{b: ops}
		for !r.done() {
			var err error
			switch r.byte() % 9 {
			case 0: // the daemon sends up to 6 packets, some too long
				lens := make([]int, 1+int(r.byte())%6)
				for i := range lens {
					lens[i] = int(r.byte()) * (maxLen + 2) / 255
				}
				b := batchOf(t, pool, seq, lens...)
				seq += uint64(len(lens))
				var next int
				next, err = d.Send(b, 0)
				if next < 0 || next > len(lens) {
					t.Fatalf("send returned %d for %d packets", next, len(lens))
				}
				b.Release()
			case 1: // the daemon receives
				b := pool.GetBatch()
				var n int
				n, err = d.Receive(b)
				if n != b.Len() {
					t.Fatalf("receive reported %d, batch holds %d", n, b.Len())
				}
				for i := range b.Len() {
					if len(b.Packet(i)) > maxLen {
						t.Fatalf("received a packet of %d bytes, max %d", len(b.Packet(i)), maxLen)
					}
				}
				b.Release()
			case 2: // hostile: a ring index or a descriptor field
				rg := &reg.rings[r.byte()%nRings]
				sel := r.byte()
				var word *uint32
				switch e := rg.at(uint32(sel >> 3)); sel & 7 {
				case 0:
					word = (*uint32)(unsafe.Pointer(&rg.hdr.prod))
				case 1:
					word = (*uint32)(unsafe.Pointer(&rg.hdr.cons))
				case 2, 3:
					word = &e.slot
				case 4, 5:
					word = &e.len
				default:
					word = &e.gen
				}
				atomic.StoreUint32(word, fuzzValue(r, atomic.LoadUint32(word), uint32(maxLen)))
			case 8: // hostile: any 32-bit word of the header
				off := (uint64(r.u32()) % HeaderBytes) &^ 3
				atomic.StoreUint32((*uint32)(unsafe.Pointer(&mem[off])), r.u32())
			case 3: // honest host: borrow, then complete some
				n, _ := h.Borrow(views[:1+int(r.byte())%len(views)])
				h.Complete(min(n, int(r.byte())%(n+1)))
			case 4: // honest host: send a few packets
				b := batchOf(t, hostPool, 0, repeat(1+int(r.byte())%4, int(r.byte()))...)
				h.Send(b.Bufs)
				b.Release()
			case 5: // honest host: copy packets out and complete them
				b := hostPool.GetBatch()
				h.Receive(b)
				b.Release()
			case 6:
				_, err = d.Reap()
			case 7: // hostile: scribble on a slot
				s := r.u32() % (l.txSlots + l.rxSlots)
				slot := reg.slot(s)
				slot[int(r.byte())*len(slot)/256] = r.byte()
			}
			var v *Violation
			if err != nil && !errors.As(err, &v) && !errors.Is(err, ErrNoBuffers) && !errors.Is(err, ErrOversized) {
				t.Fatalf("unexpected error: %v", err)
			}
			checkPrivate(t, d)
		}
		d.Reclaim()
		checkPrivate(t, d)
		if c := d.Counts(); c.TXInFlight != 0 || c.FillLent != 0 || c.TXFree != int(l.txSlots) {
			t.Fatalf("after reclaim: %+v", c)
		}
		if err := pool.CheckLeaks(); err != nil {
			t.Fatal(err)
		}
	})
}

// fuzzValue picks a value to write over old: near it, near the longest
// packet, or anything.
func fuzzValue(r *opReader, old, maxLen uint32) uint32 {
	switch k := r.byte(); k % 4 {
	case 0:
		return old + uint32(int8(r.byte()))
	case 1:
		return maxLen + uint32(int8(r.byte()))
	case 2:
		return uint32(r.byte())
	default:
		return r.u32()
	}
}

// checkPrivate checks the daemon's private slot state and its counts.
func checkPrivate(t *testing.T, d *Daemon) {
	t.Helper()
	for _, p := range []*partition{&d.tx, &d.rx} {
		lent := 0
		for _, st := range p.state {
			if st != slotFree {
				lent++
			}
		}
		if lent != int(p.lent.Load()) || lent+len(p.free) != len(p.state) {
			t.Fatalf("partition at %d: %d lent by state, %d counted, %d free of %d", p.base, lent, p.lent.Load(), len(p.free), len(p.state))
		}
		seen := map[uint32]bool{}
		for _, s := range p.free {
			if s-p.base >= uint32(len(p.state)) || p.state[s-p.base] != slotFree || seen[s] {
				t.Fatalf("partition at %d: free list %v against states %v", p.base, p.free, p.state)
			}
			seen[s] = true
		}
	}
	checkConservation(t, d.Counts())
}
