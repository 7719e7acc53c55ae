package shm

// The daemon's private allocation state: which slot is lent, for what, and
// under which generation. It lives in the daemon's heap, never in the
// region, so nothing a host writes can corrupt it; every descriptor a host
// returns is checked against it.

import (
	"fmt"
	"sync/atomic"
)

// slotState is what a slot is doing, as far as the daemon is concerned.
type slotState uint8

const (
	slotFree slotState = iota // the daemon's
	slotTX                    // holds a packet for the host; back on the completion ring
	slotFill                  // lent empty to the host; back on the RX ring
)

func (s slotState) String() string {
	switch s {
	case slotFree:
		return "free"
	case slotTX:
		return "tx"
	case slotFill:
		return "fill"
	}
	return "?"
}

// partition is the slots of one direction: [base, base+n).
type partition struct {
	base  uint32
	state []slotState // by slot - base
	gen   []uint32    // generation of the slot's current or last loan
	free  []uint32    // stack of free slot numbers
	lent  atomic.Int32
}

func (p *partition) init(base, n uint32) {
	p.base = base
	p.state = make([]slotState, n)
	p.gen = make([]uint32, n)
	p.free = make([]uint32, n)
	// Pop from the end: hand out the lowest slots first.
	for i := range p.free {
		p.free[i] = base + n - 1 - uint32(i)
	}
}

// lend takes a free slot and lends it as st under a new generation. The
// caller checked that one is free.
func (p *partition) lend(st slotState) (slot, gen uint32) {
	slot = p.free[len(p.free)-1]
	p.free = p.free[:len(p.free)-1]
	i := slot - p.base
	p.gen[i]++
	p.state[i] = st
	p.lent.Add(1)
	return slot, p.gen[i]
}

// check validates a descriptor's slot and generation (each read once by the
// caller) against the loan the daemon made: the slot must be in this
// direction, lent as want, under generation gen. It returns 0 or the rule
// broken, and a detail for the error.
func (p *partition) check(slot, gen uint32, want slotState) (Kind, string) {
	i := slot - p.base // wraps to a huge value below base
	if i >= uint32(len(p.state)) {
		return SlotRange, fmt.Sprintf("slot %d not in [%d, %d)", slot, p.base, p.base+uint32(len(p.state)))
	}
	if st := p.state[i]; st != want {
		return NotLent, fmt.Sprintf("slot %d is %s, not lent as %s", slot, st, want)
	}
	if g := p.gen[i]; gen != g {
		return Generation, fmt.Sprintf("slot %d generation %d, lent under %d", slot, gen, g)
	}
	return 0, ""
}

// give takes back a checked slot.
func (p *partition) give(slot uint32) {
	p.state[slot-p.base] = slotFree
	p.free = append(p.free, slot)
	p.lent.Add(-1)
}

// reclaim takes back every slot lent as st, bumping its generation so a
// descriptor naming the old loan is refused, and reports how many.
func (p *partition) reclaim(st slotState) int {
	n := 0
	for i, s := range p.state {
		if s != st {
			continue
		}
		p.gen[i]++
		p.give(p.base + uint32(i))
		n++
	}
	return n
}

// checkLen validates a packet length read once from a descriptor.
func checkLen(n, maxLen uint32) (Kind, string) {
	if n > maxLen {
		return Length, fmt.Sprintf("length %d: a slot holds %d", n, maxLen)
	}
	return 0, ""
}

// checkAdvance validates a peer's producer index prod against the
// consumer's private index cons: the ring holds at most entries. It returns
// how many entries are ready.
func checkAdvance(prod, cons, entries uint32) (uint32, Kind, string) {
	n := prod - cons
	if n > entries {
		return 0, IndexAdvance, fmt.Sprintf("producer index %d is %d past consumer %d: ring holds %d", prod, n, cons, entries)
	}
	return n, 0, ""
}

// checkConsumed validates a peer's consumer index cons on a ring we
// produce: it may only move forward from last (what we saw before), up to
// prod (what we produced).
func checkConsumed(cons, last, prod uint32) (Kind, string) {
	if cons-last > prod-last {
		return IndexAdvance, fmt.Sprintf("consumer index %d not in [%d, %d]", cons, last, prod)
	}
	return 0, ""
}
