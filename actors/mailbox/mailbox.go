// Package mailbox is Switchyard's bounded, drop-policy mailbox for
// protoactor-go actors. protoactor's own Bounded mailbox spins the sender on
// runtime.Gosched when full and BoundedDropping miscounts after a drop and
// spins forever (docs/ARCHITECTURE.md §7); neither reports drops. This one:
//
//  1. PostUserMessage: a *packet.Batch (or an envelope holding one) is
//     stamped with the time (Batch.Enqueued, a monotonic clock) and queued
//     if there is room; when the mailbox holds Capacity batches the policy
//     picks the victim — drop_newest and codel drop the arriving batch,
//     drop_oldest drops the head — and the victim's buffers go back to the
//     pool, counted as mailbox_full on the actor's stats. Other user messages
//     (control commands) are never dropped; they wait in a small queue of
//     their own, delivered before batches.
//  2. Dequeue: each batch handed to the actor records how long it waited
//     (its sojourn time) in the actor's queueing delay histogram
//     (stats.Counters.QueueDelay). With codel, the sojourn time drives
//     CoDel (RFC 8289, codel.go): once batches have waited above the target
//     for a whole interval, it drops at the head, ever faster, until the
//     delay is back under the target — counted as codel.
//  3. PostSystemMessage: always queued, never dropped, delivered before any
//     user message.
//  4. Delivery runs on the dispatcher only while messages wait; an idle or
//     full mailbox costs no CPU (no spinning, no polling).
//  5. Close (on the actor's final stop) drops what is queued and everything
//     posted later, counted as stopped: nothing is lost silently.
//  6. Resize (a config reload) changes the bound and the policy in place,
//     while the actor runs; shrinking below the depth drops the excess by
//     the new policy, counted as mailbox_full.
//
// Accounting, on the stats.Counters the mailbox is given: every batch posted is
// counted In; it then leaves as delivered to the actor, dropped (with a
// reason), or is still queued (depth). The actor counts what it does with the
// delivered ones.
package mailbox

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"switchyard/config"
	"switchyard/packet"
	"switchyard/stats"
)

// Policy chooses which batch is dropped when the mailbox is full: the
// config's typed value (config.Mailbox.Drop).
type Policy = config.DropPolicy

const (
	// DropNewest is tail drop: the arriving batch is dropped.
	DropNewest = config.DropNewest
	// DropOldest is head drop: the batch that waited longest is dropped.
	DropOldest = config.DropOldest
	// CoDel drops at the head by the batches' sojourn time (RFC 8289,
	// SetCoDel); a full mailbox drops the arriving batch.
	CoDel = config.DropCoDel
)

// ParsePolicy converts a policy's name to a Policy: for what arrives off
// the wire (a protocol host's OPEN); a config's is typed already.
func ParsePolicy(s string) (Policy, error) {
	switch s {
	case "drop_newest", "":
		return DropNewest, nil
	case "drop_oldest":
		return DropOldest, nil
	case "codel":
		return CoDel, nil
	}
	return 0, fmt.Errorf("mailbox policy must be drop_newest, drop_oldest or codel, got %q", s)
}

const (
	idle int32 = iota
	running
)

// Mailbox implements actor.Mailbox with a bound in batches and a drop
// policy. Create one per actor with New and hand it to protoactor with
// actor.WithMailbox(m.Producer()).
type Mailbox struct {
	capacity int
	policy   Policy
	stats    *stats.Counters

	mu      sync.Mutex
	ring    []any // batches (or envelopes holding one), capacity entries
	head    int
	n       int
	control []any // non-batch user messages, never dropped
	system  []any // system messages, never dropped
	closed  bool
	codel   codel           // CoDel's state and settings (policy codel), under mu
	dropped []*packet.Batch // codel's victims of one dequeue, released after mu; the consumer's

	pending   atomic.Int32 // user messages waiting (batches + control)
	sysCount  atomic.Int32
	status    atomic.Int32
	suspended atomic.Bool

	invoker    actor.MessageInvoker
	dispatcher actor.Dispatcher
	processFn  func() // m.process, made once: a method value allocates

	// now is the clock of the stamps, in nanoseconds (monotonic); tests
	// replace it.
	now func() int64
}

// epoch is the origin of monoNow: time.Since reads the monotonic clock.
var epoch = time.Now()

// monoNow is the mailboxes' clock: monotonic nanoseconds since epoch,
// without an allocation.
func monoNow() int64 { return int64(time.Since(epoch)) }

// New returns a mailbox that holds at most capacity batches (capacity ≥ 1)
// and counts on s.
func New(capacity int, policy Policy, s *stats.Counters) *Mailbox {
	if capacity < 1 {
		capacity = 1
	}
	s.SetMailbox(capacity, policy.String())
	m := &Mailbox{
		capacity: capacity,
		policy:   policy,
		stats:    s,
		ring:     make([]any, capacity),
		dropped:  make([]*packet.Batch, 0, codelDropsHint),
		now:      monoNow,
	}
	m.codel.setup(DefaultCoDelTarget, DefaultCoDelInterval)
	m.processFn = m.process
	return m
}

// SetCoDel sets the codel policy's target and interval (RFC 8289 §4.3–4.4;
// config.Mailbox.Target and Interval), in place: New starts with
// DefaultCoDelTarget and DefaultCoDelInterval. Values ≤ 0 keep the
// current ones.
func (m *Mailbox) SetCoDel(target, interval time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.codel.setup(target, interval)
}

// Producer returns a MailboxProducer that always yields this mailbox: one
// mailbox per actor, which survives the actor's restarts.
func (m *Mailbox) Producer() actor.MailboxProducer {
	return func() actor.Mailbox { return m }
}

// batchOf returns the batch carried by a user message, or nil.
func batchOf(msg any) *packet.Batch {
	switch v := msg.(type) {
	case *packet.Batch:
		return v
	case *actor.MessageEnvelope:
		if b, ok := v.Message.(*packet.Batch); ok {
			return b
		}
	}
	return nil
}

// PostUserMessage takes ownership of message. A batch is queued or dropped
// by the policy; anything else is queued unconditionally.
func (m *Mailbox) PostUserMessage(message any) {
	b := batchOf(message)
	if b == nil {
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			return
		}
		m.control = append(m.control, message)
		m.mu.Unlock()
		m.pending.Add(1)
		m.schedule()
		return
	}

	packets, bytes := b.Len(), b.Bytes()
	m.stats.In(packets, bytes)
	b.Enqueued = m.now()

	var victim *packet.Batch
	reason := stats.MailboxFull
	m.mu.Lock()
	switch {
	case m.closed:
		victim, reason = b, stats.Stopped
	case m.n < m.capacity:
		m.ring[(m.head+m.n)%m.capacity] = message
		m.n++
		// Depth changes under the lock, so the gauges never read past
		// the capacity.
		m.stats.Queued(1, packets)
	case m.policy != DropOldest: // DropNewest, CoDel
		victim = b
	default: // DropOldest: replace the head, the new batch goes to the tail
		victim = batchOf(m.ring[m.head])
		m.ring[m.head] = nil
		m.head = (m.head + 1) % m.capacity
		m.ring[(m.head+m.n-1)%m.capacity] = message
		// Depth in batches is unchanged; in packets it moves by the
		// difference.
		m.stats.Queued(0, packets-victim.Len())
	}
	m.mu.Unlock()

	switch {
	case victim == nil:
		m.pending.Add(1)
		m.schedule()
	case victim == b:
		m.stats.Drop(reason, packets)
		victim.Release()
	default:
		m.stats.Drop(reason, victim.Len())
		victim.Release()
	}
}

// PostSystemMessage queues a system message; they are never dropped.
func (m *Mailbox) PostSystemMessage(message any) {
	m.mu.Lock()
	m.system = append(m.system, message)
	m.mu.Unlock()
	m.sysCount.Add(1)
	m.schedule()
}

// RegisterHandlers is called by protoactor when the actor is spawned.
func (m *Mailbox) RegisterHandlers(invoker actor.MessageInvoker, dispatcher actor.Dispatcher) {
	m.invoker = invoker
	m.dispatcher = dispatcher
}

// Start is called by protoactor after RegisterHandlers.
func (m *Mailbox) Start() {}

// UserMessageCount reports the user messages waiting.
func (m *Mailbox) UserMessageCount() int { return int(m.pending.Load()) }

// Depth reports the batches waiting.
func (m *Mailbox) Depth() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.n
}

// Close is called by the actor when it stops for good: queued batches are
// released and counted as stopped, and so is every batch posted afterwards.
func (m *Mailbox) Close() {
	m.mu.Lock()
	m.closed = true
	dropped := make([]*packet.Batch, 0, m.n)
	for m.n > 0 {
		b := batchOf(m.ring[m.head])
		m.stats.Queued(-1, -b.Len())
		dropped = append(dropped, b)
		m.ring[m.head] = nil
		m.head = (m.head + 1) % m.capacity
		m.n--
	}
	m.pending.Add(-int32(len(m.control)))
	m.control = nil
	m.mu.Unlock()
	for _, b := range dropped {
		m.pending.Add(-1)
		m.stats.Drop(stats.Stopped, b.Len())
		b.Release()
	}
}

// Resize changes the mailbox's bound and policy in place (a config reload),
// without touching the actor. The ring is reallocated under the lock; the
// queued batches keep their order. If more than capacity batches are
// queued, the excess is dropped by the new policy — drop_oldest drops from
// the head, drop_newest from the tail — released to the pool and counted as
// mailbox_full, so in = delivered + dropped + queued still holds exactly.
// It returns the number of batches dropped.
func (m *Mailbox) Resize(capacity int, policy Policy) int {
	if capacity < 1 {
		capacity = 1
	}
	m.mu.Lock()
	var victims []*packet.Batch
	if excess := m.n - capacity; excess > 0 && !m.closed {
		victims = make([]*packet.Batch, 0, excess)
		for ; excess > 0; excess-- {
			var i int
			if policy == DropOldest {
				i = m.head
				m.head = (m.head + 1) % m.capacity
			} else {
				i = (m.head + m.n - 1) % m.capacity
			}
			b := batchOf(m.ring[i])
			m.ring[i] = nil
			m.n--
			m.stats.Queued(-1, -b.Len())
			victims = append(victims, b)
		}
	}
	ring := make([]any, capacity)
	for i := 0; i < m.n; i++ {
		ring[i] = m.ring[(m.head+i)%m.capacity]
	}
	if policy != m.policy {
		m.codel.reset()
	}
	m.ring, m.head, m.capacity, m.policy = ring, 0, capacity, policy
	m.stats.SetMailbox(capacity, policy.String())
	m.mu.Unlock()
	for _, b := range victims {
		m.pending.Add(-1)
		m.stats.Drop(stats.MailboxFull, b.Len())
		b.Release()
	}
	return len(victims)
}

// CoDel reports the codel policy's target and interval (SetCoDel).
func (m *Mailbox) CoDel() (target, interval time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return time.Duration(m.codel.target), time.Duration(m.codel.interval)
}

// Capacity reports the bound, in batches, and the policy.
func (m *Mailbox) Capacity() (int, Policy) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.capacity, m.policy
}

func (m *Mailbox) schedule() {
	if m.status.CompareAndSwap(idle, running) {
		m.dispatcher.Schedule(m.processFn)
	}
}

func (m *Mailbox) process() {
	for {
		m.run()
		m.status.Store(idle)
		// Messages posted after run saw an empty queue: take them too.
		if m.sysCount.Load() == 0 && (m.suspended.Load() || m.pending.Load() == 0) {
			return
		}
		if !m.status.CompareAndSwap(idle, running) {
			return // another post scheduled us already
		}
	}
}

func (m *Mailbox) popSystem() any {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.system) == 0 {
		return nil
	}
	msg := m.system[0]
	m.system[0] = nil
	m.system = m.system[1:]
	if len(m.system) == 0 {
		m.system = m.system[:0:0]
	}
	return msg
}

// popUser returns the next control message or, if none, the next batch,
// and records how long that batch waited. With codel it may drop batches
// from the head first (codel.go), counted as codel.
func (m *Mailbox) popUser() (msg any, b *packet.Batch) {
	now := m.now()
	m.mu.Lock()
	if len(m.control) > 0 {
		msg = m.control[0]
		m.control[0] = nil
		m.control = m.control[1:]
		m.mu.Unlock()
		return msg, nil
	}
	if m.closed {
		m.mu.Unlock()
		return nil, nil
	}
	if m.policy == CoDel {
		msg, b = m.codelDequeue(now)
	} else {
		msg, b = m.take()
	}
	dropped := m.dropped
	m.dropped = m.dropped[:0]
	m.mu.Unlock()
	for i, v := range dropped {
		m.pending.Add(-1)
		m.stats.Drop(ReasonCoDel, v.Len())
		v.Release()
		dropped[i] = nil
	}
	if b != nil {
		m.stats.QueueDelay(now - b.Enqueued)
	}
	return msg, b
}

// take removes the head batch; nil when there is none. The caller holds mu.
func (m *Mailbox) take() (msg any, b *packet.Batch) {
	if m.n == 0 {
		return nil, nil
	}
	msg = m.ring[m.head]
	m.ring[m.head] = nil
	m.head = (m.head + 1) % m.capacity
	m.n--
	if b = batchOf(msg); b != nil {
		m.stats.Queued(-1, -b.Len())
	}
	return msg, b
}

func (m *Mailbox) run() {
	var msg any
	defer func() {
		if r := recover(); r != nil {
			m.invoker.EscalateFailure(r, msg)
		}
	}()

	throughput := m.dispatcher.Throughput()
	for i := 0; ; i++ {
		if i > throughput {
			i = 0
			runtime.Gosched()
		}
		if msg = m.popSystem(); msg != nil {
			m.sysCount.Add(-1)
			switch msg.(type) {
			case *actor.SuspendMailbox:
				m.suspended.Store(true)
			case *actor.ResumeMailbox:
				m.suspended.Store(false)
			default:
				m.invoker.InvokeSystemMessage(msg)
			}
			continue
		}
		if m.suspended.Load() {
			return
		}
		if msg, _ = m.popUser(); msg == nil {
			return
		}
		m.pending.Add(-1)
		m.invoker.InvokeUserMessage(msg)
	}
}
