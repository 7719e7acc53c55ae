package remote

// The sending half of a link: batches leave this process under a window.
//
//  1. The owning actor (the daemon's proxy for a remote protocol, or a
//     host's uplink to the daemon) hands each batch to Sender.Send, which
//     takes ownership.
//  2. No peer (its host is down): the batch is dropped as host_down.
//  3. Fewer than the window's envelopes unacknowledged: the batch is encoded
//     into a slot buffer (one envelope per MaxEnvelopeBytes), sent to the
//     peer's receiver with the link's ack process as sender, and released.
//  4. Window full: the batch waits in a pending ring of at most
//     PendingBatches batches, merged up to batch.max_packets; when that is full the policy picks the victim (drop_newest: the
//     arriving batch, drop_oldest: the longest waiting), counted as
//     remote_window. Memory stays bounded whatever the peer does.
//  5. The peer's receiver acknowledges each envelope to the ack process,
//     which records the highest sequence number (clamped to what was sent)
//     and wakes the owner with a Flush message if batches are pending.
//  6. A new peer (the host came back) starts a new window: what was in
//     flight to the old one is forgotten, and its slot buffers too, since a
//     dead connection may still hold them.

import (
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"

	"switchyard/actors/mailbox"
	"switchyard/actors/remote/wire"
	"switchyard/packet"
	"switchyard/stats"
)

// maxSplit is the most envelopes one batch can need: 128 packets of 64 KiB,
// whole packets to an envelope, so 7 to a payload of MaxEnvelopeBytes (19
// envelopes). A batch is admitted while the window has room and sends all
// its envelopes, so the window may overshoot by maxSplit-1.
const maxSplit = packet.MaxBatch/((MaxEnvelopeBytes-arrayHeader)/(packet.MaxPacketBytes+5)) + 1

// Flush is sent by a link's ack process to the owning actor when batches
// are pending and the window opened. The owner calls Sender.Flush.
type Flush struct{}

// PeerUp tells a sending actor where its peer's receiver is now; PeerDown
// that its peer is gone. The owner calls Sender.SetPeer.
type (
	PeerUp   struct{ PID *actor.PID }
	PeerDown struct{}
)

// ackProcess receives a link's acknowledgements. It is a protoactor Process,
// not an actor: the endpoint reader calls it directly, so an ack costs an
// atomic store and never queues.
type ackProcess struct {
	system  *actor.ActorSystem
	owner   *actor.PID
	sent    atomic.Uint64 // highest sequence number sent (written by the owner)
	acked   atomic.Uint64 // highest sequence number acknowledged
	waiting atomic.Bool   // the owner has pending batches and wants a Flush
	bad     *stats.Counters
}

var flush = &Flush{}

func (a *ackProcess) SendUserMessage(_ *actor.PID, m any) {
	if undeliverable(m) {
		// protoactor could not deliver one of our envelopes: its endpoint
		// writer had no connection (the host just died), or the far side
		// had no receiver under that id. Not the peer's fault: counted
		// host_down (in envelopes) on the same counters as hostile input.
		a.bad.Drop(stats.HostDown, 1)
		return
	}
	env, _ := unwrap(m)
	if env == nil || env.Kind != wire.Kind_ACK {
		a.bad.Drop(stats.Malformed, 1)
		return
	}
	seq := env.Seq
	if seq > a.sent.Load() {
		// Acknowledges what this sender never sent: a previous sender's
		// envelopes (a restart or a re-open reuses the ack id). Harmless.
		return
	}
	for {
		cur := a.acked.Load()
		if seq <= cur || a.acked.CompareAndSwap(cur, seq) {
			break
		}
	}
	if a.waiting.CompareAndSwap(true, false) {
		a.system.Root.Send(a.owner, flush)
	}
}

// undeliverable reports whether m is protoactor's answer to an envelope it
// could not deliver.
func undeliverable(m any) bool {
	if e, ok := m.(*actor.MessageEnvelope); ok {
		m = e.Message
	}
	_, ok := m.(*actor.DeadLetterResponse)
	return ok
}

func (a *ackProcess) SendSystemMessage(*actor.PID, any) {}
func (a *ackProcess) Stop(*actor.PID)                   {}

// slot is one in-flight envelope: its buffer (the envelope's wire form, see
// wire.Envelope.Seal) and the messages that carry it, reused once the
// envelope is acknowledged.
type slot struct {
	buf     []byte
	env     wire.Envelope
	wrap    actor.MessageEnvelope
	packets int // in the envelope
}

// Sender is the sending half of a link. It is used from its owning actor's
// Receive only.
type Sender struct {
	system *actor.ActorSystem
	stats  *stats.Counters
	policy mailbox.Policy
	window int
	// maxBatch bounds coalescing (batch.max_packets, ≤ packet.MaxBatch).
	maxBatch int

	ack    *ackProcess
	ackPID *actor.PID
	peer   *actor.PID
	enc    *Encoder
	slots  []slot
	seq    uint64 // last sequence number sent

	// host, if set, counts what the peer took: In = packets sent, Out =
	// packets acknowledged, host_lost = packets in flight when the peer
	// went away (never acknowledged). counted is the last sequence number
	// whose packets are counted on it.
	host    *stats.Counters
	counted uint64

	pending []*packet.Batch // ring, window entries
	phead   int
	pn      int
}

// NewSender registers the link's ack process under id (unique in the actor
// system) and returns the sender. maxBatch bounds how many packets
// waiting batches are coalesced into. Owner is the actor that calls Send; st
// counts what leaves (Out) and what is dropped; bad counts acks that make
// no sense.
func NewSender(system *actor.ActorSystem, id string, owner *actor.PID, st, bad *stats.Counters, window, maxBatch int, policy mailbox.Policy) (*Sender, error) {
	if window < 1 {
		window = 1
	}
	a := &ackProcess{system: system, owner: owner, bad: bad}
	pid, ok := system.ProcessRegistry.Add(a, id)
	if !ok {
		return nil, errDuplicate(id)
	}
	return &Sender{
		system:   system,
		stats:    st,
		policy:   policy,
		window:   window,
		maxBatch: min(max(maxBatch, 1), packet.MaxBatch),
		ack:      a,
		ackPID:   pid,
		enc:      NewEncoder(),
		pending:  make([]*packet.Batch, window),
	}, nil
}

// CountPeer makes the sender count on host what the peer took and lost
// (see Sender.host). The daemon's proxies do; a host's uplink does not.
func (s *Sender) CountPeer(host *stats.Counters) { s.host = host }

// countAcked counts the packets of the envelopes acknowledged since the last
// call as taken by the peer. Their slots are not reused before it runs.
func (s *Sender) countAcked() {
	if s.host == nil || s.slots == nil {
		return
	}
	if n := s.countTo(s.ack.acked.Load()); n > 0 {
		s.host.Out(n, 0)
	}
}

// countTo moves counted up to seq and returns the packets of the
// envelopes it passed.
func (s *Sender) countTo(seq uint64) int {
	n := 0
	for ; s.counted < seq; s.counted++ {
		n += s.slots[(s.counted+1)%uint64(len(s.slots))].packets
	}
	return n
}

// loseInFlight counts the packets of every envelope sent and never
// acknowledged as lost with the peer.
func (s *Sender) loseInFlight() {
	s.countAcked()
	if s.host == nil || s.slots == nil {
		s.counted = s.seq
		return
	}
	s.host.Drop(stats.HostLost, s.countTo(s.seq))
}

// AckPID is where the peer's receiver sends acknowledgements.
func (s *Sender) AckPID() *actor.PID { return s.ackPID }

// Close unregisters the ack process and drops the pending batches as
// stopped; what is still in flight counts as lost with the peer.
func (s *Sender) Close() {
	s.loseInFlight()
	s.dropPending(stats.Stopped)
	s.system.ProcessRegistry.Remove(s.ackPID)
}

// SetPeer points the link at a peer's receiver (nil: the peer is down). A
// new peer starts a new window; with no peer, pending batches drop as
// host_down.
func (s *Sender) SetPeer(pid *actor.PID) {
	s.peer = pid
	s.loseInFlight()         // what was in flight to the old peer is lost with it
	s.ack.acked.Store(s.seq) // and forgotten
	s.slots = nil            // and its buffers: a dead connection may still hold them
	if pid == nil {
		s.dropPending(stats.HostDown)
	}
}

// InFlight reports the envelopes sent and not yet acknowledged.
func (s *Sender) InFlight() int { return int(s.seq - s.ack.acked.Load()) }

// Send takes ownership of b: it is sent, held pending, or dropped.
func (s *Sender) Send(ctx actor.Context, b *packet.Batch) {
	switch {
	case s.peer == nil:
		s.stats.Drop(stats.HostDown, b.Len())
		b.Release()
	case s.pn == 0 && s.InFlight() < s.window:
		s.transmit(ctx, b)
	default:
		s.hold(b)
		s.Flush(ctx)
	}
}

// Flush sends pending batches while the window has room and asks the ack
// process for a Flush message if some are still waiting.
func (s *Sender) Flush(ctx actor.Context) {
	for s.pn > 0 {
		if s.InFlight() >= s.window {
			s.ack.waiting.Store(true)
			// An ack may have landed between the check and the store: look again.
			if s.InFlight() >= s.window || !s.ack.waiting.CompareAndSwap(true, false) {
				return
			}
		}
		b := s.pending[s.phead]
		s.pending[s.phead] = nil
		s.phead = (s.phead + 1) % len(s.pending)
		s.pn--
		s.stats.Queued(-1, -b.Len())
		s.transmit(ctx, b)
	}
}

// hold queues b behind the window. Batches that wait are coalesced into
// the newest waiting batch while it has room (packet.MaxBatch), so a
// protocol that hands over small batches still crosses the boundary in
// full ones (up to the node's batch.max_packets). A full ring drops by the policy.
func (s *Sender) hold(b *packet.Batch) {
	if s.pn > 0 {
		tail := s.pending[(s.phead+s.pn-1)%len(s.pending)]
		if tail.Len()+b.Len() <= s.maxBatch {
			for i := range b.Bufs {
				b.MoveTo(i, tail)
			}
			s.stats.Queued(0, b.Len())
			b.Reset()
			b.Release()
			return
		}
	}
	if s.pn == len(s.pending) {
		if s.policy == mailbox.DropNewest {
			s.stats.Drop(stats.RemoteWindow, b.Len())
			b.Release()
			return
		}
		old := s.pending[s.phead]
		s.pending[s.phead] = nil
		s.phead = (s.phead + 1) % len(s.pending)
		s.pn--
		s.stats.Queued(-1, -old.Len())
		s.stats.Drop(stats.RemoteWindow, old.Len())
		old.Release()
	}
	s.pending[(s.phead+s.pn)%len(s.pending)] = b
	s.pn++
	s.stats.Queued(1, b.Len())
}

func (s *Sender) dropPending(r stats.Reason) {
	for s.pn > 0 {
		b := s.pending[s.phead]
		s.pending[s.phead] = nil
		s.phead = (s.phead + 1) % len(s.pending)
		s.pn--
		s.stats.Queued(-1, -b.Len())
		s.stats.Drop(r, b.Len())
		b.Release()
	}
}

// transmit encodes b into envelopes, sends them and releases b.
func (s *Sender) transmit(ctx actor.Context, b *packet.Batch) {
	if s.slots == nil {
		s.slots = make([]slot, s.window+maxSplit)
	}
	// The slots about to be reused were acknowledged; this load orders
	// gRPC's last read of them before our writes (grpccodec.go).
	sentEpoch.Load()
	s.countAcked() // before their slots are reused
	s.stats.Out(b.Len(), b.Bytes())
	if s.host != nil {
		s.host.In(b.Len(), b.Bytes())
	}
	for from := 0; from < b.Len(); {
		s.seq++
		sl := &s.slots[s.seq%uint64(len(s.slots))]
		if sl.buf == nil {
			sl.buf = make([]byte, wire.HeaderRoom, wire.HeaderRoom+MaxEnvelopeBytes)
		}
		start := from
		sl.buf, from = s.enc.Encode(sl.buf[:wire.HeaderRoom], b, from)
		sl.packets = from - start
		sl.env.Seal(wire.Kind_BATCH, s.seq, sl.buf)
		sl.wrap.Message, sl.wrap.Sender = &sl.env, s.ackPID
		s.ack.sent.Store(s.seq)
		ctx.Send(s.peer, &sl.wrap)
	}
	b.Release()
}
