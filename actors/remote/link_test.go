package remote

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"switchyard/actors/mailbox"
	"switchyard/actors/remote/wire"
	"switchyard/actors/stage"
	"switchyard/packet"
	"switchyard/packet/packettest"
	"switchyard/stats"
)

// linkRig is a link across the test transports: a link actor on side A
// (with its bounded mailbox, as the daemon makes a remote protocol's proxy)
// whose peer is a Receiver on side B that hands batches to a Collector.
type linkRig struct {
	t            *testing.T
	name         string
	poolA, poolB *packet.Pool
	coll         *packettest.Collector
	collPID      *actor.PID
	recv         *Receiver
	// link: In from the mailbox, Out, drops, queued (mailbox and pending
	// ring); in: the receiver's; bad: acknowledgements that make no sense.
	link, in, bad *stats.Counters
	mb            *mailbox.Mailbox
	pid           *actor.PID
	s             *Sender
	stalled       bool
}

var rigs atomic.Int32

// newLinkRig starts a link with the given window, coalescing bound and
// policy. Its mailbox (1024 batches) never drops in these tests.
func newLinkRig(t *testing.T, window, maxBatch int, policy mailbox.Policy) *linkRig {
	t.Helper()
	a, b := sideA, sideB
	r := &linkRig{
		t:     t,
		name:  fmt.Sprintf("rig-%d", rigs.Add(1)),
		poolA: packet.NewPool(4096),
		poolB: packet.NewPool(4096),
		coll:  &packettest.Collector{},
		link:  &stats.Counters{Name: "link", Kind: "link"},
		in:    &stats.Counters{Name: "link.in", Kind: "receiver"},
		bad:   &stats.Counters{Name: "remote", Kind: "remote"},
	}
	var err error
	if r.collPID, err = b.system.Root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor { return r.coll }), "collector/"+r.name); err != nil {
		t.Fatal(err)
	}
	if r.recv, err = NewReceiver(b.system, ReceiverPrefix+r.name, r.poolB, r.collPID, r.in, packet.MaxBatch); err != nil {
		t.Fatal(err)
	}
	r.mb = mailbox.New(1024, policy, r.link)
	started := make(chan *Sender, 1)
	props := stage.Props(NewLink(LinkSpec{
		ID: AckPrefix + r.name, Stats: r.link, Bad: r.bad, Window: window, MaxBatch: maxBatch, Policy: policy,
		Peer:      r.recv.PID(),
		OnStarted: func(_ actor.Context, s *Sender) { started <- s },
	}), r.mb, r.link)
	if r.pid, err = a.system.Root.SpawnNamed(props, "link/"+r.name); err != nil {
		t.Fatal(err)
	}
	r.s = <-started
	t.Cleanup(r.close)
	return r
}

// close stops the link and the collector and checks that both pools got
// every buffer back.
func (r *linkRig) close() {
	r.release()
	if err := sideA.system.Root.StopFuture(r.pid).Wait(); err != nil {
		r.t.Error(err)
	}
	r.mb.Close()
	r.recv.Close()
	if err := sideB.system.Root.StopFuture(r.collPID).Wait(); err != nil {
		r.t.Error(err)
	}
	r.coll.Release()
	if err := r.poolA.CheckLeaks(); err != nil {
		r.t.Errorf("side A: %v", err)
	}
	if err := r.poolB.CheckLeaks(); err != nil {
		r.t.Errorf("side B: %v", err)
	}
}

// stall makes side B stop reading the link, as a hung (SIGSTOPped) host
// would: the receiver neither decodes nor acknowledges, and since it runs on
// the endpoint reader's goroutine, nothing behind it on the connection is
// read either. A slow actor behind the receiver would not do: the receiver
// acknowledges what it decoded and the actor's bounded mailbox drops.
func (r *linkRig) stall() {
	r.recv.mu.Lock()
	r.stalled = true
}

func (r *linkRig) release() {
	if r.stalled {
		r.stalled = false
		r.recv.mu.Unlock()
	}
}

// send sends a batch of packets of the given sizes, tagged tag, to the link.
func (r *linkRig) send(sizes []int, tag int) {
	sideA.system.Root.Send(r.pid, newBatch(r.t, r.poolA, sizes, tag))
}

// inFlight reports the envelopes sent and not acknowledged (the sender's
// InFlight, read through its atomics).
func (r *linkRig) inFlight() int { return int(r.s.ack.sent.Load() - r.s.ack.acked.Load()) }

// balanced reports whether the link's accounting holds: packets in (from
// the mailbox) = out + dropped + queued (in the mailbox and the pending
// ring).
func balanced(c stats.Row) bool {
	return c.InPackets == c.OutPackets+c.DroppedTotal()+c.Queued()
}

// settle waits until the link has taken every batch from its mailbox and
// its accounting holds.
func (r *linkRig) settle() stats.Row {
	r.t.Helper()
	var c stats.Row
	waitFor(r.t, "the link to settle", func() bool {
		// The mailbox empty first, then the counters: read the other way
		// round, batches still queued at the read could be delivered
		// before the depth check and the snapshot would pass.
		if r.mb.Depth() != 0 {
			return false
		}
		c = r.link.Load()
		return balanced(c)
	})
	return c
}

// delivered waits until the collector holds n packets and returns them.
func (r *linkRig) delivered(n int) [][]byte {
	r.t.Helper()
	waitFor(r.t, fmt.Sprintf("%d packets at side B", n), func() bool { return r.coll.Count() >= n })
	time.Sleep(20 * time.Millisecond) // anything more would be a bug
	return r.coll.Packets()
}

// TestLinkDeliversInOrder sends rounds of batches of random sizes, up to
// 128 packets of up to 64 KiB (split into several envelopes), through a
// link with a wide window: every packet arrives intact and in order, nothing
// is dropped, and the counters agree on both sides.
func TestLinkDeliversInOrder(t *testing.T) {
	verifyNoLeaks(t)
	r := newLinkRig(t, MaxWindow, packet.MaxBatch, mailbox.DropNewest)
	rng := rand.New(rand.NewPCG(1, 2))
	total, tag := 0, 0
	for round := range 3 {
		var want [][]byte
		for range 6 {
			sizes := make([]int, 1+rng.IntN(packet.MaxBatch))
			for i := range sizes {
				switch rng.IntN(10) {
				case 0:
					sizes[i] = packet.MaxPacketBytes
				case 1:
					sizes[i] = 20 + rng.IntN(packet.MaxPacketBytes-20)
				default:
					sizes[i] = 20 + rng.IntN(1481)
				}
			}
			want = append(want, expected(sizes, tag)...)
			r.send(sizes, tag)
			tag++
		}
		samePackets(t, fmt.Sprintf("round %d", round), r.delivered(len(want)), want)
		total += len(want)
		r.coll.Release()
	}
	c := r.settle()
	if c.InPackets != uint64(total) || c.OutPackets != uint64(total) || c.DroppedTotal() != 0 {
		t.Errorf("link: in %d, out %d, drops %v; want %d in and out, no drops", c.InPackets, c.OutPackets, c.Drops, total)
	}
	if in := r.in.Load(); in.InPackets != uint64(total) || in.OutPackets != uint64(total) || in.DroppedTotal() != 0 {
		t.Errorf("receiver: in %d, out %d, drops %v; want %d in and out, no drops", in.InPackets, in.OutPackets, in.Drops, total)
	}
	waitFor(t, "every envelope acknowledged", func() bool { return r.inFlight() == 0 })
	sameDrops(t, "bad acks", dropsOf(r.bad), nil)
}

// TestLinkCoalescesBehindTheWindow: while the window is full, batches wait
// in the pending ring merged into batches of up to max_packets, so a
// protocol that hands over small batches still crosses in full ones.
func TestLinkCoalescesBehindTheWindow(t *testing.T) {
	cases := []struct {
		window, maxBatch, n int
		wantSizes           []int // batches as they arrive at side B
	}{
		{window: 2, maxBatch: 128, n: 250, wantSizes: []int{1, 1, 128, 120}},
		{window: 4, maxBatch: 16, n: 60, wantSizes: []int{1, 1, 1, 1, 16, 16, 16, 8}},
		{window: 3, maxBatch: 1, n: 6, wantSizes: []int{1, 1, 1, 1, 1, 1}},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("window=%d/max_packets=%d", c.window, c.maxBatch), func(t *testing.T) {
			verifyNoLeaks(t)
			r := newLinkRig(t, c.window, c.maxBatch, mailbox.DropNewest)
			r.stall()
			for i := range c.n {
				r.send([]int{60}, i)
			}
			s := r.settle()
			pending := len(c.wantSizes) - c.window
			if got := r.inFlight(); got != c.window {
				t.Errorf("in flight = %d, want %d (the window)", got, c.window)
			}
			if s.OutBatches != uint64(c.window) || s.DroppedTotal() != 0 {
				t.Errorf("out %d batches, drops %v; want %d, none", s.OutBatches, s.Drops, c.window)
			}
			if s.Mailbox.DepthBatches != int64(pending) || s.Mailbox.DepthPackets != int64(c.n-c.window) {
				t.Errorf("pending %d batches of %d packets, want %d of %d", s.Mailbox.DepthBatches, s.Mailbox.DepthPackets, pending, c.n-c.window)
			}
			r.release()
			var want [][]byte
			for i := range c.n {
				want = append(want, packetOf(60, i, 0))
			}
			samePackets(t, "side B", r.delivered(c.n), want)
			if got := r.coll.BatchSizes(); !slices.Equal(got, c.wantSizes) {
				t.Errorf("batches at side B = %v, want %v", got, c.wantSizes)
			}
			if s := r.settle(); s.OutPackets != uint64(c.n) || s.Queued() != 0 {
				t.Errorf("out %d, queued %d; want %d, 0", s.OutPackets, s.Queued(), c.n)
			}
		})
	}
}

// TestLinkWindowFull: with side B stalled, the link sends a window of
// envelopes and no more, holds what follows in its pending ring (window
// entries, coalesced up to max_packets), and drops beyond that by its
// policy as remote_window — the newest arrivals or the longest waiting —
// with the accounting exact. Acks that acknowledge what was never sent are
// counted and ignored. Released, side B gets what was not dropped, in order.
func TestLinkWindowFull(t *testing.T) {
	const (
		window   = 4
		maxBatch = 4 // two batches of 2 packets per pending entry
		extra    = 6 // batches beyond the window and the ring
		batches  = window + 2*window + extra
	)
	pair := []int{100, 100}
	tags := func(from, to int) []int {
		var s []int
		for i := from; i < to; i++ {
			s = append(s, i)
		}
		return s
	}
	cases := []struct {
		policy mailbox.Policy
		want   []int // tags of the batches side B gets
	}{
		// The arrivals beyond the ring are dropped.
		{mailbox.DropNewest, tags(0, 3*window)},
		// Each arrival beyond the ring drops the oldest pending entry
		// (two batches) and opens a new one the next arrival joins.
		{mailbox.DropOldest, append(tags(0, window), tags(window+extra, batches)...)},
	}
	for _, c := range cases {
		t.Run(c.policy.String(), func(t *testing.T) {
			verifyNoLeaks(t)
			r := newLinkRig(t, window, maxBatch, c.policy)
			r.stall()
			for i := range batches {
				r.send(pair, i)
			}
			s := r.settle()
			if got := r.inFlight(); got != window || got > window+maxSplit {
				t.Errorf("in flight = %d envelopes, want %d (the window; never above window+maxSplit = %d)", got, window, window+maxSplit)
			}
			type counts struct{ in, out, dropped, queued, queuedBatches uint64 }
			got := counts{s.InPackets, s.OutPackets, s.Drops["remote_window"], s.Queued(), uint64(s.Mailbox.DepthBatches)}
			want := counts{2 * batches, 2 * window, 2 * extra, 2 * 2 * window, window}
			if got != want {
				t.Errorf("stalled: %+v, want %+v", got, want)
			}
			if s.DroppedTotal() != s.Drops["remote_window"] {
				t.Errorf("drops %v, want remote_window only", s.Drops)
			}

			// Acks from side B for what was never sent (ignored: a previous
			// sender's) and a batch sent to the ack process (counted as
			// malformed): the window stays shut.
			sideB.system.Root.Send(r.s.AckPID(), &wire.Envelope{Kind: wire.Kind_ACK, Seq: 1000})
			sideB.system.Root.Send(r.s.AckPID(), &wire.Envelope{Kind: wire.Kind_BATCH, Seq: 1})
			waitFor(t, "the bad message counted", func() bool { return r.bad.Dropped(stats.Malformed) == 1 })
			time.Sleep(20 * time.Millisecond)
			if s := r.settle(); r.inFlight() != window || s.OutPackets != 2*window {
				t.Errorf("after bad acks: in flight %d, out %d; want %d, %d", r.inFlight(), s.OutPackets, window, 2*window)
			}

			r.release()
			samePackets(t, "side B", r.delivered(2*len(c.want)), expected(pair, c.want...))
			s = r.settle()
			if s.InPackets != 2*batches || s.OutPackets != uint64(2*len(c.want)) || s.Queued() != 0 || s.Drops["remote_window"] != 2*extra {
				t.Errorf("released: in %d, out %d, queued %d, remote_window %d; want %d, %d, 0, %d",
					s.InPackets, s.OutPackets, s.Queued(), s.Drops["remote_window"], 2*batches, 2*len(c.want), 2*extra)
			}
			waitFor(t, "every envelope acknowledged", func() bool { return r.inFlight() == 0 })
			sameDrops(t, "bad acks", dropsOf(r.bad), map[stats.Reason]uint64{stats.Malformed: 1})
			sameDrops(t, "receiver", dropsOf(r.in), nil)
		})
	}
}

// TestLinkLargestBatch: a batch of 128 packets of 64 KiB leaves in
// largestSplit envelopes at once; in flight never exceeds window+maxSplit,
// and every packet arrives intact, since no slot is reused while the
// endpoint writer may still read it.
func TestLinkLargestBatch(t *testing.T) {
	for _, window := range []int{1, 2, 8} {
		t.Run(fmt.Sprintf("window=%d", window), func(t *testing.T) {
			verifyNoLeaks(t)
			r := newLinkRig(t, window, packet.MaxBatch, mailbox.DropNewest)
			small, large := []int{40}, repeat(packet.MaxBatch, packet.MaxPacketBytes)
			r.stall()
			// Window-1 small batches, then the largest one, admitted while
			// the window has room; a third waits.
			var want [][]byte
			for i := range window - 1 {
				r.send(small, i)
				want = append(want, expected(small, i)...)
			}
			r.send(large, 100)
			r.send(small, 101)
			want = append(want, expected(large, 100)...)
			want = append(want, expected(small, 101)...)
			s := r.settle()
			if got, want := r.inFlight(), window-1+largestSplit; got != want || got > window+maxSplit {
				t.Errorf("in flight = %d envelopes, want %d (and ≤ window+maxSplit = %d)", got, want, window+maxSplit)
			}
			if s.Queued() != 1 {
				t.Errorf("queued %d packets, want 1", s.Queued())
			}
			r.release()
			samePackets(t, "side B", r.delivered(len(want)), want)
			r.coll.Release()
		})
	}
}

// TestLinkPeerDownUp: when the peer goes down, pending batches are dropped
// as host_down and so is everything sent until it comes back; a new peer
// starts a new window (what was in flight to the old one is forgotten), and
// traffic flows again.
func TestLinkPeerDownUp(t *testing.T) {
	verifyNoLeaks(t)
	const window = 2
	r := newLinkRig(t, window, 4, mailbox.DropNewest)
	pair := []int{80, 80}
	r.stall()
	for i := range 5 { // 0, 1 in flight; 2+3 and 4 pending
		r.send(pair, i)
	}
	r.settle()
	if r.inFlight() != window {
		t.Fatalf("in flight = %d, want %d", r.inFlight(), window)
	}

	sideA.system.Root.Send(r.pid, &PeerDown{})
	waitFor(t, "pending dropped as host_down", func() bool { return r.link.Dropped(stats.HostDown) == 6 })
	s := r.settle()
	if s.Queued() != 0 || r.inFlight() != 0 {
		t.Errorf("down: queued %d, in flight %d; want 0, 0", s.Queued(), r.inFlight())
	}
	r.send(pair, 5) // no peer
	waitFor(t, "a batch sent while down dropped as host_down", func() bool { return r.link.Dropped(stats.HostDown) == 8 })

	// Side B is still stalled, the old envelopes unacknowledged: only a new
	// window lets these leave.
	sideA.system.Root.Send(r.pid, &PeerUp{PID: r.recv.PID()})
	for i := 6; i < 9; i++ { // 6, 7 leave; 8 waits
		r.send(pair, i)
	}
	s = r.settle()
	if s.OutBatches != 4 || s.Queued() != 2 || r.inFlight() != window {
		t.Errorf("up: out %d batches, queued %d packets, in flight %d; want 4, 2, %d", s.OutBatches, s.Queued(), r.inFlight(), window)
	}

	r.release()
	samePackets(t, "side B", r.delivered(2*5), expected(pair, 0, 1, 6, 7, 8))
	s = r.settle()
	type counts struct{ in, out, hostDown, queued uint64 }
	if got, want := (counts{s.InPackets, s.OutPackets, s.Drops["host_down"], s.Queued()}), (counts{18, 10, 8, 0}); got != want {
		t.Errorf("at the end: %+v, want %+v", got, want)
	}
	if s.DroppedTotal() != s.Drops["host_down"] {
		t.Errorf("drops %v, want host_down only", s.Drops)
	}
	waitFor(t, "every envelope acknowledged", func() bool { return r.inFlight() == 0 })
}

// TestAckProcess: the ack process records the highest acknowledgement,
// never beyond what was sent (such acks are a previous sender's and are
// ignored) and never backwards; anything but an ack is counted as
// malformed; a waiting owner gets one Flush.
func TestAckProcess(t *testing.T) {
	verifyNoLeaks(t)
	owner, ownerPID := addProbe(t, sideA.system, "ack-owner")
	ack := func(seq uint64) *wire.Envelope { return &wire.Envelope{Kind: wire.Kind_ACK, Seq: seq} }
	cases := []struct {
		name         string
		acked        uint64
		waiting      bool
		msg          any
		wantAcked    uint64
		wantBad      uint64
		wantHostDown uint64
		wantFlush    bool
	}{
		{name: "ack", msg: ack(5), wantAcked: 5},
		{name: "ack of everything sent", msg: ack(10), wantAcked: 10},
		{name: "ack in an envelope with a sender", msg: &actor.MessageEnvelope{Message: ack(7), Sender: ownerPID}, wantAcked: 7},
		{name: "older ack", acked: 6, msg: ack(3), wantAcked: 6},
		{name: "ack beyond what was sent", acked: 2, msg: ack(11), wantAcked: 2},
		{name: "far beyond", acked: 2, msg: ack(^uint64(0)), wantAcked: 2},
		{name: "not an ack", acked: 2, msg: &wire.Envelope{Kind: wire.Kind_BATCH, Seq: 3}, wantAcked: 2, wantBad: 1},
		{name: "not an envelope", acked: 2, msg: "ack 3", wantAcked: 2, wantBad: 1},
		{name: "undeliverable (no connection)", acked: 2, msg: &actor.DeadLetterResponse{Target: ownerPID}, wantAcked: 2, wantHostDown: 1},
		{name: "undeliverable (no receiver on the far side)", acked: 2, msg: &actor.MessageEnvelope{Message: &actor.DeadLetterResponse{}}, wantAcked: 2, wantHostDown: 1},
		{name: "waiting owner flushed", waiting: true, msg: ack(4), wantAcked: 4, wantFlush: true},
		{name: "ack beyond does not flush", waiting: true, msg: ack(12)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bad := &stats.Counters{}
			a := &ackProcess{system: sideA.system, owner: ownerPID, bad: bad}
			a.sent.Store(10)
			a.acked.Store(c.acked)
			a.waiting.Store(c.waiting)
			a.SendUserMessage(nil, c.msg)
			if got := a.acked.Load(); got != c.wantAcked {
				t.Errorf("acked = %d, want %d", got, c.wantAcked)
			}
			if got := bad.Dropped(stats.Malformed); got != c.wantBad {
				t.Errorf("malformed = %d, want %d", got, c.wantBad)
			}
			if got := bad.Dropped(stats.HostDown); got != c.wantHostDown {
				t.Errorf("host_down = %d, want %d", got, c.wantHostDown)
			}
			select {
			case m := <-owner.got:
				if _, ok := m.(*Flush); !ok || !c.wantFlush {
					t.Errorf("owner got %T, want no message", m)
				}
			case <-time.After(20 * time.Millisecond):
				if c.wantFlush {
					t.Error("owner got no Flush")
				}
			}
			if c.wantFlush && a.waiting.Load() {
				t.Error("still waiting after the Flush")
			}
		})
	}
}

// TestReceiver: the receiver decodes a batch into its pool and sends it on,
// acknowledges every batch envelope to its sender (undecodable ones too, so
// an honest peer's window keeps moving), and counts what it could not decode
// by reason, in the packets announced.
func TestReceiver(t *testing.T) {
	verifyNoLeaks(t)
	src := packet.NewPool(packet.MaxBatch)
	enc := NewEncoder()
	payload := func(sizes []int) []byte {
		b := newBatch(t, src, sizes, 1)
		defer b.Release()
		p, _ := enc.Encode(nil, b, 0)
		return p
	}
	three := payload([]int{20, 1420, 65535})
	cases := []struct {
		name       string
		msg        func(sender *actor.PID) any
		maxPackets int
		hold       int // pool buffers taken first
		wantBatch  bool
		wantAck    bool
		wantDrops  map[stats.Reason]uint64
	}{
		{name: "batch", msg: func(s *actor.PID) any {
			return &actor.MessageEnvelope{Message: &wire.Envelope{Kind: wire.Kind_BATCH, Seq: 9, Payload: three}, Sender: s}
		}, maxPackets: 128, wantBatch: true, wantAck: true},
		{name: "batch without a sender", msg: func(*actor.PID) any {
			return &wire.Envelope{Kind: wire.Kind_BATCH, Seq: 9, Payload: three}
		}, maxPackets: 128, wantBatch: true},
		{name: "truncated", msg: func(s *actor.PID) any {
			return &actor.MessageEnvelope{Message: &wire.Envelope{Kind: wire.Kind_BATCH, Seq: 9, Payload: three[:100]}, Sender: s}
		}, maxPackets: 128, wantAck: true, wantDrops: map[stats.Reason]uint64{stats.Malformed: 3}},
		{name: "garbage", msg: func(s *actor.PID) any {
			return &actor.MessageEnvelope{Message: &wire.Envelope{Kind: wire.Kind_BATCH, Seq: 9, Payload: []byte("garbage")}, Sender: s}
		}, maxPackets: 128, wantAck: true, wantDrops: map[stats.Reason]uint64{stats.Malformed: 1}},
		{name: "more than max_packets", msg: func(s *actor.PID) any {
			return &actor.MessageEnvelope{Message: &wire.Envelope{Kind: wire.Kind_BATCH, Seq: 9, Payload: three}, Sender: s}
		}, maxPackets: 2, wantAck: true, wantDrops: map[stats.Reason]uint64{stats.Oversized: 1}},
		{name: "pool exhausted", msg: func(s *actor.PID) any {
			return &actor.MessageEnvelope{Message: &wire.Envelope{Kind: wire.Kind_BATCH, Seq: 9, Payload: three}, Sender: s}
		}, maxPackets: 128, hold: 127, wantAck: true, wantDrops: map[stats.Reason]uint64{stats.NoBuffers: 3}},
		{name: "not a batch", msg: func(s *actor.PID) any {
			return &actor.MessageEnvelope{Message: &wire.Envelope{Kind: wire.Kind_ACK, Seq: 9}, Sender: s}
		}, maxPackets: 128, wantDrops: map[stats.Reason]uint64{stats.Malformed: 1}},
		{name: "not an envelope", msg: func(*actor.PID) any { return "hello" }, maxPackets: 128,
			wantDrops: map[stats.Reason]uint64{stats.Malformed: 1}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			to, toPID := addProbe(t, sideB.system, fmt.Sprintf("receiver-to-%d", i))
			acks, ackPID := addProbe(t, sideB.system, fmt.Sprintf("receiver-acks-%d", i))
			pool := packet.NewPool(packet.MaxBatch)
			held := make([][]byte, c.hold)
			pool.GetBufs(held)
			st := &stats.Counters{}
			r, err := NewReceiver(sideB.system, fmt.Sprintf("receiver-%d", i), pool, toPID, st, c.maxPackets)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if _, err := NewReceiver(sideB.system, fmt.Sprintf("receiver-%d", i), pool, toPID, st, c.maxPackets); err == nil {
				t.Error("a second receiver under the same id was registered")
			}
			r.SendUserMessage(r.PID(), c.msg(ackPID))
			select {
			case m := <-to.got:
				b, ok := m.(*packet.Batch)
				if !ok || !c.wantBatch {
					t.Fatalf("sent on %T, want nothing", m)
				}
				samePackets(t, "sent on", packetsOf(b), expected([]int{20, 1420, 65535}, 1))
				b.Release()
				if s := st.Load(); s.InPackets != 3 || s.OutPackets != 3 || s.InBytes != 20+1420+65535 {
					t.Errorf("in %d packets (%d bytes), out %d; want 3 (%d bytes), 3", s.InPackets, s.InBytes, s.OutPackets, 20+1420+65535)
				}
			case <-time.After(50 * time.Millisecond):
				if c.wantBatch {
					t.Error("no batch sent on")
				}
			}
			select {
			case m := <-acks.got:
				env, _ := unwrap(m)
				if env == nil || env.Kind != wire.Kind_ACK || env.Seq != 9 || !c.wantAck {
					t.Errorf("ack %v, want %v", m, c.wantAck)
				}
			case <-time.After(50 * time.Millisecond):
				if c.wantAck {
					t.Error("no ack")
				}
			}
			sameDrops(t, "receiver", dropsOf(st), c.wantDrops)
			pool.PutBufs(held)
			if err := pool.CheckLeaks(); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestLinkLargestBatchBehindABusyConnection: the largest batch's envelopes
// queue in protoactor's endpoint writer behind another link's traffic (the
// connection is stalled); none of the sender's slots may be reused before
// the writer serializes it, or side B gets one envelope twice and another
// never.
func TestLinkLargestBatchBehindABusyConnection(t *testing.T) {
	verifyNoLeaks(t)
	busy := newLinkRig(t, MaxWindow, packet.MaxBatch, mailbox.DropNewest)
	r := newLinkRig(t, 1, packet.MaxBatch, mailbox.DropNewest)
	large := repeat(packet.MaxBatch, packet.MaxPacketBytes)
	busy.stall()
	var busyWant [][]byte
	for i := range 4 { // 32 MiB: more than HTTP/2 flow control lets through
		busy.send(large, i)
		busyWant = append(busyWant, expected(large, i)...)
	}
	busy.settle()
	time.Sleep(200 * time.Millisecond) // the endpoint writer blocks in gRPC's flow control
	r.send(large, 100)
	r.settle()
	busy.release()
	samePackets(t, "the busy link at side B", busy.delivered(len(busyWant)), busyWant)
	waitFor(t, "the largest batch acknowledged", func() bool { return r.inFlight() == 0 })
	time.Sleep(20 * time.Millisecond)
	samePackets(t, "the largest batch at side B", r.coll.Packets(), expected(large, 100))
}

// TestLinkStopReleasesQueued: batches still queued in a link's mailbox when
// it stops (a host's uplink at an instance's close) are released and counted
// stopped, so in = out + dropped holds and the pool gets every buffer back.
// Spawned without the Stage wrapper, the same link leaked them.
func TestLinkStopReleasesQueued(t *testing.T) {
	system := actor.NewActorSystem()
	pool := packet.NewPool(1024)
	st := &stats.Counters{Name: "x.up", Kind: "uplink"}
	mb := mailbox.New(64, mailbox.DropNewest, st)
	gate := make(chan struct{})
	pid, err := system.Root.SpawnNamed(stage.Props(NewLink(LinkSpec{
		ID: AckPrefix + "stop-test", Stats: st, Bad: &stats.Counters{}, Window: 4, MaxBatch: packet.MaxBatch, Policy: mailbox.DropNewest,
		OnStarted: func(actor.Context, *Sender) { <-gate }, // hold the actor's first turn
	}), mb, st), "uplink/stop-test")
	if err != nil {
		t.Fatal(err)
	}
	const batches, per = 5, 3
	for range batches {
		b := pool.GetBatch()
		bufs := make([][]byte, per)
		if !pool.GetBufs(bufs) {
			t.Fatal("pool empty")
		}
		for _, buf := range bufs {
			b.Append(buf, 100)
		}
		system.Root.Send(pid, b)
	}
	stopped := system.Root.StopFuture(pid)
	close(gate)
	if err := stopped.Wait(); err != nil {
		t.Fatal(err)
	}
	s := st.Snapshot()
	if got, want := s.Drops["stopped"], uint64(batches*per); got != want {
		t.Errorf("drops[stopped] = %d, want %d (drops %v)", got, want, s.Drops)
	}
	if s.InPackets != s.OutPackets+s.DroppedTotal() {
		t.Errorf("in %d != out %d + dropped %d", s.InPackets, s.OutPackets, s.DroppedTotal())
	}
	if err := pool.CheckLeaks(); err != nil {
		t.Error(err)
	}
}

// TestSenderCountsInFlightLostWithThePeer: envelopes sent to a peer that
// goes away unacknowledged are counted host_lost on the peer's row, so
// handed = acknowledged + lost exactly.
func TestSenderCountsInFlightLostWithThePeer(t *testing.T) {
	system := actor.NewActorSystem()
	pool := packet.NewPool(1024)
	st, host := &stats.Counters{Name: "p"}, &stats.Counters{Name: "p.host"}
	blackHole, err := system.Root.SpawnNamed(actor.PropsFromFunc(func(c actor.Context) {
		if env, ok := c.Message().(*wire.Envelope); ok && env.Kind == wire.Kind_BATCH && env.Seq == 1 {
			c.Respond(&wire.Envelope{Kind: wire.Kind_ACK, Seq: 1}) // only the first is taken
		}
	}), "black-hole")
	if err != nil {
		t.Fatal(err)
	}
	sent := make(chan *Sender, 1)
	pid, err := system.Root.SpawnNamed(stage.Props(NewLink(LinkSpec{
		ID: AckPrefix + "lost-test", Stats: st, Bad: &stats.Counters{}, Window: 8, MaxBatch: packet.MaxBatch,
		Policy: mailbox.DropNewest, Peer: blackHole, Host: host,
		OnStarted: func(_ actor.Context, s *Sender) { sent <- s },
	}), mailbox.New(64, mailbox.DropNewest, st), st), "link/lost-test")
	if err != nil {
		t.Fatal(err)
	}
	<-sent
	for _, n := range []int{3, 5, 7} {
		b := pool.GetBatch()
		bufs := make([][]byte, n)
		pool.GetBufs(bufs)
		for _, buf := range bufs {
			b.Append(buf, 60)
		}
		system.Root.Send(pid, b)
	}
	time.Sleep(100 * time.Millisecond)
	system.Root.Send(pid, &PeerDown{})
	if err := system.Root.StopFuture(pid).Wait(); err != nil {
		t.Fatal(err)
	}
	h := host.Snapshot()
	if got, want := [3]uint64{h.InPackets, h.OutPackets, h.Drops["host_lost"]}, [3]uint64{15, 3, 12}; got != want {
		t.Errorf("peer row in/acknowledged/host_lost = %v, want %v", got, want)
	}
	if err := pool.CheckLeaks(); err != nil {
		t.Error(err)
	}
}
