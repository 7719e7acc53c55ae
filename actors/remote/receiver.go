package remote

// The receiving half of a link.
//
//  1. protoactor's endpoint reader calls Receiver.SendUserMessage with each
//     envelope addressed to the receiver's id: the receiver is a Process,
//     not an actor, so decoding runs on the reader's goroutine and a fast
//     peer is held back by gRPC's flow control, never by a queue that grows.
//  2. The payload is decoded into buffers of this process's pool, and the
//     batch is sent to the destination actor (the injector on the daemon,
//     the protocol actor on a host), whose bounded mailbox takes ownership.
//  3. The envelope is acknowledged to its sender (the peer's ack process),
//     including ones that could not be decoded, so an honest peer's window
//     keeps moving; what could not be decoded is counted by reason, in the
//     packets it announced (1 when it announced none).

import (
	"errors"
	"sync"

	"github.com/asynkron/protoactor-go/actor"

	"switchyard/actors/remote/wire"
	"switchyard/packet"
	"switchyard/stats"
)

// Receiver decodes a link's batches into this process's pool.
type Receiver struct {
	system     *actor.ActorSystem
	pool       *packet.Pool
	to         *actor.PID
	stats      *stats.Counters
	maxPackets int
	pid        *actor.PID

	mu  sync.Mutex // one endpoint reader per peer connection; peers may overlap
	dec *Decoder
}

// NewReceiver registers a receiver under id. Batches go to to; st counts
// them In (decoded), Out (sent on) and dropped.
func NewReceiver(system *actor.ActorSystem, id string, pool *packet.Pool, to *actor.PID, st *stats.Counters, maxPackets int) (*Receiver, error) {
	r := &Receiver{system: system, pool: pool, to: to, stats: st, maxPackets: maxPackets, dec: NewDecoder()}
	pid, ok := system.ProcessRegistry.Add(r, id)
	if !ok {
		return nil, errDuplicate(id)
	}
	r.pid = pid
	return r, nil
}

// PID is where peers send batches.
func (r *Receiver) PID() *actor.PID { return r.pid }

// Close unregisters the receiver.
func (r *Receiver) Close() { r.system.ProcessRegistry.Remove(r.pid) }

// SendUserMessage receives one envelope (from the endpoint reader).
func (r *Receiver) SendUserMessage(_ *actor.PID, m any) {
	env, sender := unwrap(m)
	if env == nil || env.Kind != wire.Kind_BATCH {
		r.stats.Drop(stats.Malformed, 1)
		return
	}
	r.mu.Lock()
	b, n, err := r.dec.Decode(env.Payload, r.pool, r.maxPackets)
	r.mu.Unlock()
	if sender != nil {
		r.system.Root.Send(sender, &wire.Envelope{Kind: wire.Kind_ACK, Seq: env.Seq})
	}
	if err != nil {
		reason := stats.Malformed
		switch {
		case errors.Is(err, ErrOversized):
			reason = stats.Oversized
		case errors.Is(err, ErrNoBuffers):
			reason = stats.NoBuffers
		}
		r.stats.In(n, len(env.Payload)) // what the peer announced: in = out + dropped holds
		r.stats.Drop(reason, n)
		return
	}
	bytes := b.Bytes()
	r.stats.In(n, bytes)
	r.stats.Out(n, bytes)
	r.system.Root.Send(r.to, b)
}

// SendSystemMessage ignores system messages: a receiver cannot be watched
// or stopped from outside.
func (r *Receiver) SendSystemMessage(*actor.PID, any) {}

// Stop does nothing; Close unregisters the receiver.
func (r *Receiver) Stop(*actor.PID) {}
