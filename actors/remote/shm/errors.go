package shm

import (
	"errors"
	"fmt"
)

// Sentinel errors. Each says whether the caller's loop continues.
var (
	// ErrMalformed: the peer broke the protocol (a bad descriptor, ring
	// index or doorbell flood). Every *Violation wraps it. The daemon
	// counts it malformed, stops using the region (every later call
	// returns the same violation), kills the host and restarts it.
	ErrMalformed = errors.New("peer broke the shared-memory protocol")

	// ErrPeerGone: the peer closed its end of the doorbell socket; it
	// exited or was killed. The loop ends: drain with Receive, then
	// Reclaim (daemon) or exit (host).
	ErrPeerGone = errors.New("peer closed its doorbell (exited or killed)")

	// ErrClosed: Close was called. The loop ends.
	ErrClosed = errors.New("shared-memory region closed")

	// ErrReclaimed: Reclaim took every slot back; the region carries no
	// more traffic. The loop ends; a restarted host gets a fresh region.
	ErrReclaimed = errors.New("shared-memory region reclaimed")

	// ErrNoBuffers: the receiving process's pool had no buffers for the
	// packets waiting on the ring. Nothing was consumed; the packets stay
	// on the ring (the peer sees back-pressure). The loop continues.
	ErrNoBuffers = errors.New("packet pool exhausted")

	// ErrOversized: a packet is longer than a slot holds. The caller drops
	// that one packet (counted oversized) and continues after it.
	ErrOversized = errors.New("packet larger than a slot")
)

// errConcurrentWait: Wait is for one goroutine at a time (it owns the
// doorbell's read buffer and flood counters).
var errConcurrentWait = errors.New("shm: Wait called while another goroutine waits")

// Kind says which rule a peer broke.
type Kind int

const (
	// SlotRange: a descriptor names a slot outside the ring's direction.
	SlotRange Kind = iota + 1
	// NotLent: the slot is in range but not lent to the peer for this use
	// (a replayed completion, or a slot returned twice).
	NotLent
	// Generation: the slot is lent, but under another generation (a late
	// completion from before a reclaim, or a forged descriptor).
	Generation
	// Length: a packet length of more than a slot holds.
	Length
	// IndexAdvance: a ring index moved by more than the ring holds, or a
	// consumer index moved past what was produced or backwards.
	IndexAdvance
	// DoorbellFlood: the peer rang more than MaxUninvitedRings times
	// beyond what the sleeping flag invited.
	DoorbellFlood
)

var kindNames = [...]string{
	SlotRange:     "slot out of range",
	NotLent:       "slot not lent",
	Generation:    "wrong generation",
	Length:        "bad length",
	IndexAdvance:  "bad ring index",
	DoorbellFlood: "doorbell flood",
}

func (k Kind) String() string {
	if k > 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Violation is a broken rule, with what was read and where. It wraps
// ErrMalformed.
type Violation struct {
	Kind Kind
	// Ring is the ring the value was read from ("rx", "completion",
	// "fill", "tx") or "doorbell".
	Ring string
	// Index is the free-running ring index of the entry, or for
	// IndexAdvance the index value the peer wrote.
	Index uint32
	// Detail says what was read against what was allowed.
	Detail string
}

func (v *Violation) Error() string {
	if v.Kind == DoorbellFlood {
		return fmt.Sprintf("shm: doorbell: %s: %s", v.Kind, v.Detail)
	}
	return fmt.Sprintf("shm: %s ring at %d: %s: %s", v.Ring, v.Index, v.Kind, v.Detail)
}

// Unwrap makes errors.Is(err, ErrMalformed) hold.
func (v *Violation) Unwrap() error { return ErrMalformed }

func violation(k Kind, ring string, index uint32, format string, args ...any) *Violation {
	return &Violation{Kind: k, Ring: ring, Index: index, Detail: fmt.Sprintf(format, args...)}
}
