// Splitting a batch by target.
//
// A batch meets this file in this order:
//  1. Split walks the packets of the batch once, in order, and classifies
//     each (Table.Classify).
//  2. Forward: the buffer moves (no copy) to its target's batch. The first
//     target seen keeps the incoming batch itself, compacted in place, so a
//     batch bound for one target costs no new batch header.
//  3. Drop and Reject: the reason is counted; a Reject is handed to onReject,
//     which borrows it to write an ICMP error; the buffer is set aside.
//  4. The set-aside buffers go back to the pool in one call, and the
//     non-empty target batches are returned to the caller, who owns them.
package router

import (
	"net/netip"

	"switchyard/packet"
)

// TargetBatch is the part of a split batch bound for one target.
type TargetBatch struct {
	Target int
	// Batch is owned by the caller of Split, who sends it to the target or
	// releases it.
	Batch *packet.Batch
}

// Result is the outcome of one Split. It is valid until the next Split on
// the same Splitter.
type Result struct {
	// Out holds one non-empty batch per target, in the order the targets
	// were first seen in the input.
	Out []TargetBatch
	// Drops counts the packets that were not forwarded, by reason
	// (Drops[None] is always 0).
	Drops [NumDropReasons]int
}

// Splitter splits batches by target. One router actor owns one Splitter; it
// is reusable but not safe for concurrent use. Its scratch space grows to
// the highest target index seen and to the number of targets in a batch,
// then stays: in the steady state Split allocates nothing.
type Splitter struct {
	pool *packet.Pool
	// slot[target] is 1 + the index in out of the target's batch, or 0 when
	// the target has no batch in the current Split.
	slot    []int32
	out     []TargetBatch
	dropped [packet.MaxBatch][]byte
}

// NewSplitter returns a Splitter whose batches come from pool. Every batch
// given to Split must hold buffers of that pool.
func NewSplitter(pool *packet.Pool) *Splitter {
	return &Splitter{pool: pool, out: make([]TargetBatch, 0, 8)}
}

// Split takes ownership of in and classifies its packets with t.
//
// Forwarded packets move, in order, to the batch of their target; the
// batches are in the Result, and ownership of each passes to the caller.
// Dropped and rejected packets are counted in Result.Drops and their buffers
// return to the pool. For each rejected packet, onReject (if not nil) is
// called first: it borrows the packet until it returns.
//
// in is consumed: either it is one of the Result's batches or it has been
// released. The caller must not use it after Split.
func (s *Splitter) Split(t *Table, in *packet.Batch, onReject func(pkt []byte)) Result {
	if in.Pool() != s.pool {
		panic("router: Split given a batch of another pool")
	}
	var res Result
	s.out = s.out[:0]
	nd := 0

	// Slots of in below kept hold the first target's packets; slot i ≥ kept
	// is read before it can be overwritten, and whatever is left past kept
	// at the end has been moved or set aside.
	bufs := in.Bufs
	kept := 0
	firstTarget := -1 // the target that keeps in; -1 until one is seen
	// A batch is mostly one flow (the segments of one TCP super-packet): a
	// packet whose destination repeats the previous one's reuses its verdict
	// once its header has been checked.
	var lastDst netip.Addr
	var last Verdict
	for _, buf := range bufs {
		pkt := buf[packet.Headroom:]
		var v Verdict
		if dst, ok := packet.Destination(pkt); ok && dst == lastDst && packet.Check(pkt) == nil {
			v = last
		} else {
			v = t.Classify(pkt)
			if v.Reason != Malformed {
				lastDst, last = dst, v
			}
		}
		if v.Action == Forward {
			if firstTarget < 0 {
				firstTarget = v.Target
			}
			if v.Target == firstTarget {
				bufs[kept] = buf
				kept++
				continue
			}
			b := s.batchFor(v.Target)
			b.Bufs = append(b.Bufs, buf)
			continue
		}
		res.Drops[v.Reason]++
		if v.Action == Reject && onReject != nil {
			onReject(pkt)
		}
		if nd == len(s.dropped) {
			s.pool.PutBufs(s.dropped[:nd])
			nd = 0
		}
		s.dropped[nd] = buf
		nd++
	}
	s.pool.PutBufs(s.dropped[:nd])

	clear(bufs[kept:])
	in.Bufs = bufs[:kept]
	if kept > 0 {
		s.out = append(s.out, TargetBatch{})
		copy(s.out[1:], s.out[:len(s.out)-1])
		s.out[0] = TargetBatch{Target: firstTarget, Batch: in}
	} else {
		in.Reset()
		in.Release()
	}
	for _, tb := range s.out {
		if tb.Target < len(s.slot) {
			s.slot[tb.Target] = 0
		}
	}
	res.Out = s.out
	return res
}

// batchFor returns the current Split's batch for target, taking a header
// from the pool the first time the target is seen.
func (s *Splitter) batchFor(target int) *packet.Batch {
	if target >= len(s.slot) {
		grown := make([]int32, target+1)
		copy(grown, s.slot)
		s.slot = grown
	}
	if k := s.slot[target]; k > 0 {
		return s.out[k-1].Batch
	}
	b := s.pool.GetBatch()
	s.out = append(s.out, TargetBatch{Target: target, Batch: b})
	s.slot[target] = int32(len(s.out))
	return b
}
