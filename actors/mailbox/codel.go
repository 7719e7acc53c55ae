package mailbox

// The codel policy: CoDel (RFC 8289) on a mailbox's sojourn time. A
// bounded mailbox under drop_newest fills to its bound and stays full — a
// standing queue of up to Capacity batches of latency. CoDel keeps the
// queue short instead:
//
//  1. Every batch is stamped on enqueue (Batch.Enqueued); on dequeue its
//     sojourn time is now − stamp.
//  2. While the sojourn time stays at or above Target for a whole Interval
//     (and more than the batch taken was queued), CoDel enters the dropping
//     state: it drops the head batch and schedules the next drop
//     Interval/√count later (the control law, RFC 8289 §5.5), so that drops
//     come ever faster until the delay falls below Target.
//  3. A sojourn time below Target, or an empty mailbox, leaves the dropping
//     state; re-entering soon after starts from the previous drop rate
//     (count), as in the RFC's pseudocode (§5.6).
//
// The unit CoDel drops is a batch: each drop is one batch's packets, counted
// as codel on the actor's stats. The state lives under the mailbox's mutex
// and is touched by the consumer only (popUser), so it needs no atomics.

import (
	"math"
	"time"

	"switchyard/config"
	"switchyard/packet"
)

// CoDel's defaults, those of RFC 8289 (§4.3, §4.4) and of the config.
const (
	// DefaultCoDelTarget (5 ms) is the acceptable standing queueing delay.
	DefaultCoDelTarget = time.Duration(config.DefaultCoDelTarget)
	// DefaultCoDelInterval (100 ms) is how long the delay must stay above
	// the target before CoDel drops: about a worst-case round trip.
	DefaultCoDelInterval = time.Duration(config.DefaultCoDelInterval)

	// codelDropsHint (8 batches) is the initial capacity of the slice of
	// one dequeue's victims; it grows (once) if CoDel ever drops more at
	// once, so the steady state allocates nothing.
	codelDropsHint = 8

	// codelRecentIntervals (16 intervals) is how recent the last dropping
	// state must be for a new one to resume its drop rate (RFC 8289 §5.6).
	codelRecentIntervals = 16
)

// codel is the state of RFC 8289's dequeue, in the mailbox's clock
// (nanoseconds).
type codel struct {
	target, interval int64

	firstAbove int64  // when the sojourn time will have been above target for an interval; 0: it is not above
	dropNext   int64  // when the next drop is due while dropping
	count      uint32 // drops since entering the dropping state
	lastCount  uint32 // count when the last dropping state began
	dropping   bool
}

func (c *codel) setup(target, interval time.Duration) {
	if target > 0 {
		c.target = int64(target)
	}
	if interval > 0 {
		c.interval = int64(interval)
	}
}

// reset forgets the state (a change of policy), keeping the settings.
func (c *codel) reset() {
	*c = codel{target: c.target, interval: c.interval}
}

// controlLaw is when the next drop is due after t: interval/√count later.
func (c *codel) controlLaw(t int64, count uint32) int64 {
	return t + int64(float64(c.interval)/math.Sqrt(float64(count)))
}

// codelPop takes the head batch and says whether CoDel may drop it
// (RFC 8289's dodequeue). The caller holds mu.
func (m *Mailbox) codelPop(now int64) (msg any, b *packet.Batch, okToDrop bool) {
	c := &m.codel
	if msg, b = m.take(); b == nil {
		c.firstAbove = 0
		return msg, nil, false
	}
	// "Less than an MTU in the queue": here, nothing left behind it.
	if now-b.Enqueued < c.target || m.n == 0 {
		c.firstAbove = 0
		return msg, b, false
	}
	if c.firstAbove == 0 {
		c.firstAbove = now + c.interval
		return msg, b, false
	}
	return msg, b, now >= c.firstAbove
}

// codelDequeue is RFC 8289's dequeue: the batch to deliver, after dropping
// what the control law says (into m.dropped, released by the caller after
// mu). The caller holds mu.
func (m *Mailbox) codelDequeue(now int64) (msg any, b *packet.Batch) {
	c := &m.codel
	msg, b, ok := m.codelPop(now)
	if c.dropping {
		if !ok {
			c.dropping = false
		}
		for c.dropping && now >= c.dropNext {
			m.codelDrop(b)
			c.count++
			if msg, b, ok = m.codelPop(now); !ok {
				c.dropping = false
			} else {
				c.dropNext = c.controlLaw(c.dropNext, c.count)
			}
		}
		return msg, b
	}
	if ok {
		m.codelDrop(b)
		msg, b, _ = m.codelPop(now)
		c.dropping = true
		delta := c.count - c.lastCount
		c.count = 1
		if delta > 1 && now-c.dropNext < codelRecentIntervals*c.interval {
			c.count = delta
		}
		c.dropNext = c.controlLaw(now, c.count)
		c.lastCount = c.count
	}
	return msg, b
}

// codelDrop queues b (taken from the ring) for release after mu.
func (m *Mailbox) codelDrop(b *packet.Batch) {
	if b != nil {
		m.dropped = append(m.dropped, b)
	}
}
