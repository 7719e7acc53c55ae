// Package stats holds the per-actor counters of the data path: packets,
// bytes and batches in and out, drops by reason, mailbox depth and
// high-water mark, restarts. Every counter is an atomic updated once per
// batch; reading them (Snapshot) never blocks forwarding.
//
// The invariant tests check, per actor, once traffic has stopped:
//
//	in_packets = out_packets + Σ drops + queued_packets
package stats

import (
	"math"
	"math/bits"
	"sort"
	"sync"
	"sync/atomic"
)

// Reason is why packets were dropped. Every drop on the data path has one.
// The reasons every node has are declared here; a protocol declares its own
// with NewReason in its package (see protocols/udp, protocols/wireguard), so
// adding one touches only its folder.
type Reason uint8

// Drop reasons. The strings are the labels users see in stats and metrics.
const (
	MailboxFull     Reason = iota // the actor's mailbox was at capacity; the policy chose the victim
	NoRoute                       // no route matched the destination
	RouteDrop                     // a route with action: drop matched
	Rejected                      // a route with action: reject matched (an ICMP error was sent back)
	Malformed                     // not a valid IPv4/IPv6 packet
	ProtocolDown                  // the target protocol exceeded its restart budget
	NoBuffers                     // the buffer pool was exhausted
	SendError                     // the transport refused the send
	WriteError                    // the TUN refused the write
	Crashed                       // the batch in hand when the actor panicked
	Stopped                       // left in the mailbox when the actor stopped
	DeadLetter                    // sent to an actor that no longer exists
	TooManySegments               // a TUN read had more segments than the batch holds
	HostDown                      // the protocol host process is down
	HostLost                      // handed to a protocol host that died before it was done with them
	RemoteWindow                  // the remote flow-control window was full
	UnknownType                   // a remote message of a type this process does not accept
	Oversized                     // a remote batch or message above the size limit
	numCoreReasons
)

// MaxReasons (64) bounds the reasons of one build, core and protocols'
// together: every row of counters has one atomic counter per possible reason.
const MaxReasons = 64

// reasonNames holds every reason's label, core reasons first. NewReason
// appends to it from package init functions only, before any goroutine can
// read it, so reads need no lock.
var reasonNames = []string{
	MailboxFull:     "mailbox_full",
	NoRoute:         "no_route",
	RouteDrop:       "route_drop",
	Rejected:        "rejected",
	Malformed:       "malformed",
	ProtocolDown:    "protocol_down",
	NoBuffers:       "no_buffers",
	SendError:       "send_error",
	WriteError:      "write_error",
	Crashed:         "crashed",
	Stopped:         "stopped",
	DeadLetter:      "dead_letter",
	TooManySegments: "too_many_segments",
	HostDown:        "host_down",
	HostLost:        "host_lost",
	RemoteWindow:    "remote_window",
	UnknownType:     "unknown_type",
	Oversized:       "oversized",
}

// NewReason declares a drop reason of a protocol: call it in a package-level
// var declaration (`var NoPeer = stats.NewReason("no_peer")`). A name already
// declared returns the same reason, so two protocols may share one. It
// panics past MaxReasons or on an empty name: a programming error.
func NewReason(name string) Reason {
	if name == "" {
		panic("stats: empty drop reason")
	}
	for i, n := range reasonNames {
		if n == name {
			return Reason(i)
		}
	}
	if len(reasonNames) >= MaxReasons {
		panic("stats: more than MaxReasons drop reasons")
	}
	reasonNames = append(reasonNames, name)
	return Reason(len(reasonNames) - 1)
}

func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "unknown"
}

// Reasons lists every drop reason in order of declaration.
func Reasons() []Reason {
	rs := make([]Reason, len(reasonNames))
	for i := range rs {
		rs[i] = Reason(i)
	}
	return rs
}

// State of an actor as the operator sees it.
type State int32

const (
	Running    State = iota
	Restarting       // failed; waiting out its backoff before the restart
	Down             // exceeded its restart budget (or stopped for good)
)

func (s State) String() string {
	switch s {
	case Running:
		return "running"
	case Restarting:
		return "restarting"
	case Down:
		return "down"
	}
	return "unknown"
}

// Counters is the set of counters of one data-path actor (or stage). All methods
// are safe for concurrent use and do not allocate.
type Counters struct {
	Name string // the instance name: "capture", "router", "peer-b", "peer-b.recv", "injector"
	Kind string // what it is: "capture", "router", "udp", "injector", …

	inPackets, inBytes, inBatches    atomic.Uint64
	outPackets, outBytes, outBatches atomic.Uint64
	drops                            [MaxReasons]atomic.Uint64
	restarts                         atomic.Uint64
	state                            atomic.Int32

	// Mailbox gauges; zero for stages without a mailbox.
	mailboxCapacity  atomic.Int64
	mailboxPolicy    atomic.Value // string
	depthBatches     atomic.Int64
	depthPackets     atomic.Int64
	highWaterBatches atomic.Int64

	// batchSizes counts arriving batches by size: bucket i holds the
	// batches of 2^(i-1)+1 … 2^i packets (bucket 0: 0 or 1 packet), the
	// last bucket those above BatchSizeBuckets' last bound.
	batchSizes [numBatchBuckets]atomic.Uint64

	// queueDelay counts the batches taken out of the mailbox by the time
	// they waited in it (QueueDelay), in QueueDelayBuckets; delaySum is
	// the sum of those waits in nanoseconds.
	queueDelay [NumDelayBuckets]atomic.Uint64
	delaySum   atomic.Uint64

	info atomic.Pointer[func() any] // protocol-specific details (e.g. WireGuard peers)
}

// BatchSizeBuckets are the upper bounds, in packets, of the batch-size
// histogram: powers of two up to the TUN batch size (128).
var BatchSizeBuckets = [...]float64{1, 2, 4, 8, 16, 32, 64, 128}

// numBatchBuckets is the histogram's buckets: one per bound and one for
// batches above the last (there should be none).
const numBatchBuckets = len(BatchSizeBuckets) + 1

// batchBucket is the histogram bucket of a batch of n packets: the least i
// with n ≤ 2^i, without a loop or a branch per bound.
func batchBucket(n int) int {
	if n <= 1 {
		return 0
	}
	i := bits.Len(uint(n - 1))
	if i >= numBatchBuckets {
		return numBatchBuckets - 1
	}
	return i
}

// QueueDelayBuckets are the upper bounds, in nanoseconds, of the queueing
// delay histogram: 1.024 µs · 2^i for i = 0…20, so 1 µs to about 1.07 s in
// powers of two (a bucket is found with one bits.Len, no loop over the
// bounds); the last bucket holds the waits above 1.07 s.
var QueueDelayBuckets = func() (b [NumDelayBuckets - 1]int64) {
	for i := range b {
		b[i] = delayUnitNanos << i
	}
	return b
}()

const (
	// delayUnitShift (10: 1024 ns) is the first bucket's bound as a shift.
	delayUnitShift = 10
	delayUnitNanos = 1 << delayUnitShift

	// NumDelayBuckets (22) is the queueing delay histogram's buckets: 21
	// bounds and one above them.
	NumDelayBuckets = 22
)

// delayBucket is the bucket of a wait of ns nanoseconds: the least i with
// ns ≤ 1024·2^i.
func delayBucket(ns int64) int {
	if ns <= delayUnitNanos {
		return 0
	}
	i := bits.Len64(uint64(ns-1) >> delayUnitShift)
	if i >= NumDelayBuckets {
		return NumDelayBuckets - 1
	}
	return i
}

// QueueDelay counts one batch that waited ns nanoseconds in the actor's
// mailbox (negative is counted as 0). Two atomic adds, no allocation.
func (a *Counters) QueueDelay(ns int64) {
	ns = max(ns, 0)
	a.queueDelay[delayBucket(ns)].Add(1)
	a.delaySum.Add(uint64(ns))
}

// QueueDelays copies the queueing delay histogram: counts[i] is the batches
// that waited at most QueueDelayBuckets[i] ns and more than the bound before
// (not cumulative), the last entry those above every bound; sum is the
// total wait in nanoseconds.
func (a *Counters) QueueDelays() (counts [NumDelayBuckets]uint64, sum uint64) {
	for i := range counts {
		counts[i] = a.queueDelay[i].Load()
	}
	return counts, a.delaySum.Load()
}

// SetInfo registers a function whose result is served as the actor's "info"
// in snapshots (for example per-peer handshake times). It is called on every
// snapshot, off the data path, and must be safe for concurrent use.
func (a *Counters) SetInfo(f func() any) {
	if f == nil {
		a.info.Store(nil)
		return
	}
	a.info.Store(&f)
}

// In counts one batch of packets (bytes of payload) arriving at the actor,
// and its size in the batch-size histogram.
func (a *Counters) In(packets, bytes int) {
	a.inBatches.Add(1)
	a.inPackets.Add(uint64(packets))
	a.inBytes.Add(uint64(bytes))
	a.batchSizes[batchBucket(packets)].Add(1)
}

// Out counts one batch of packets leaving the actor for the next hop.
func (a *Counters) Out(packets, bytes int) {
	a.outBatches.Add(1)
	a.outPackets.Add(uint64(packets))
	a.outBytes.Add(uint64(bytes))
}

// Drop counts packets dropped for reason r.
func (a *Counters) Drop(r Reason, packets int) {
	if packets > 0 {
		a.drops[r].Add(uint64(packets))
	}
}

// Dropped reports the packets dropped for reason r.
func (a *Counters) Dropped(r Reason) uint64 { return a.drops[r].Load() }

// Restarted counts one restart.
func (a *Counters) Restarted() { a.restarts.Add(1) }

// SetState records the actor's state.
func (a *Counters) SetState(s State) { a.state.Store(int32(s)) }

// State reports the actor's state.
func (a *Counters) State() State { return State(a.state.Load()) }

// SetMailbox records the mailbox's bound and policy.
func (a *Counters) SetMailbox(capacity int, policy string) {
	a.mailboxCapacity.Store(int64(capacity))
	a.mailboxPolicy.Store(policy)
}

// Queued adjusts the mailbox depth by batches and packets (negative when
// taken out) and raises the high-water mark.
func (a *Counters) Queued(batches, packets int) {
	d := a.depthBatches.Add(int64(batches))
	a.depthPackets.Add(int64(packets))
	for {
		hw := a.highWaterBatches.Load()
		if d <= hw || a.highWaterBatches.CompareAndSwap(hw, d) {
			return
		}
	}
}

// BatchSizes copies the batch-size histogram of the batches that arrived
// (In): counts[i] is the batches of at most BatchSizeBuckets[i] packets
// and more than the bound before (not cumulative); the last entry counts
// the batches above every bound.
func (a *Counters) BatchSizes() (counts [numBatchBuckets]uint64) {
	for i := range counts {
		counts[i] = a.batchSizes[i].Load()
	}
	return counts
}

// Gauge is one protocol-specific metric sample, such as a WireGuard peer's
// last handshake. The admin endpoint serves it as
// switchyard_<Name>{actor="<instance>", <Labels>} Value.
type Gauge struct {
	Name   string            // metric name without the switchyard_ prefix: [a-zA-Z_][a-zA-Z0-9_]*
	Help   string            // one line; the same for every sample of a Name
	Labels map[string]string // besides "actor"; the same keys for every sample of a Name
	Value  float64
}

// MetricsInfo is implemented by an actor's info (see SetInfo) that has
// metrics of its own: GET /metrics serves its Gauges next to the actor's
// counters. Gauges runs at scrape time, off the data path.
type MetricsInfo interface {
	Gauges() []Gauge
}

// Row is a point-in-time copy of an Actor's counters, as served by
// GET /stats.
type Row struct {
	Name       string            `json:"name"`
	Kind       string            `json:"kind"`
	State      string            `json:"state"`
	InPackets  uint64            `json:"in_packets"`
	InBytes    uint64            `json:"in_bytes"`
	InBatches  uint64            `json:"in_batches"`
	OutPackets uint64            `json:"out_packets"`
	OutBytes   uint64            `json:"out_bytes"`
	OutBatches uint64            `json:"out_batches"`
	Drops      map[string]uint64 `json:"drops"`
	Restarts   uint64            `json:"restarts"`
	Mailbox    *MailboxSnapshot  `json:"mailbox,omitempty"`
	Info       any               `json:"info,omitempty"`
}

// MailboxSnapshot describes an actor's mailbox.
type MailboxSnapshot struct {
	Capacity         int64  `json:"capacity_batches"`
	Policy           string `json:"policy"`
	DepthBatches     int64  `json:"depth_batches"`
	DepthPackets     int64  `json:"depth_packets"`
	HighWaterBatches int64  `json:"high_water_batches"`
	// QueueDelay is the histogram of the waits of the batches taken out
	// (Counters.QueueDelays): counts per bucket of QueueDelayBuckets, not
	// cumulative, the last entry above every bound.
	QueueDelay    []uint64 `json:"queue_delay_counts,omitempty"`
	QueueDelaySum uint64   `json:"queue_delay_sum_ns,omitempty"`
}

// DelayQuantile estimates the q-quantile (0 < q ≤ 1) of the waits whose
// per-bucket counts are counts (as MailboxSnapshot.QueueDelay, or the
// difference of two), in nanoseconds: the upper bound of the bucket where
// the quantile falls, so an overestimate of at most 2×. 0 when counts are
// all zero; the last bound for waits above every bound.
func DelayQuantile(counts []uint64, q float64) int64 {
	var total uint64
	for _, c := range counts {
		total += c
	}
	if total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(total)))
	var cum uint64
	for i, c := range counts {
		cum += c
		if cum >= rank {
			return QueueDelayBuckets[min(i, len(QueueDelayBuckets)-1)]
		}
	}
	return QueueDelayBuckets[len(QueueDelayBuckets)-1]
}

// DroppedTotal sums the drops over every reason.
func (s Row) DroppedTotal() uint64 {
	var n uint64
	for _, v := range s.Drops {
		n += v
	}
	return n
}

// Queued reports the packets waiting in the mailbox.
func (s Row) Queued() uint64 {
	if s.Mailbox == nil || s.Mailbox.DepthPackets < 0 {
		return 0
	}
	return uint64(s.Mailbox.DepthPackets)
}

// Snapshot copies the counters and the info. Drops lists only reasons with
// drops.
func (a *Counters) Snapshot() Row {
	s := a.Load()
	s.Info = a.Info()
	return s
}

// Info returns the actor's info (see SetInfo), nil if it has none.
func (a *Counters) Info() any {
	if f := a.info.Load(); f != nil {
		return (*f)()
	}
	return nil
}

// Counters is Snapshot without the info: atomic loads only, never a call
// into the protocol.
func (a *Counters) Load() Row {
	s := Row{
		Name:       a.Name,
		Kind:       a.Kind,
		State:      a.State().String(),
		InPackets:  a.inPackets.Load(),
		InBytes:    a.inBytes.Load(),
		InBatches:  a.inBatches.Load(),
		OutPackets: a.outPackets.Load(),
		OutBytes:   a.outBytes.Load(),
		OutBatches: a.outBatches.Load(),
		Drops:      map[string]uint64{},
		Restarts:   a.restarts.Load(),
	}
	for r := range Reason(len(reasonNames)) {
		if n := a.drops[r].Load(); n > 0 {
			s.Drops[r.String()] = n
		}
	}
	if c := a.mailboxCapacity.Load(); c > 0 {
		policy, _ := a.mailboxPolicy.Load().(string)
		s.Mailbox = &MailboxSnapshot{
			Capacity:         c,
			Policy:           policy,
			DepthBatches:     a.depthBatches.Load(),
			DepthPackets:     a.depthPackets.Load(),
			HighWaterBatches: a.highWaterBatches.Load(),
		}
		counts, sum := a.QueueDelays()
		s.Mailbox.QueueDelay, s.Mailbox.QueueDelaySum = counts[:], sum
	}
	return s
}

// Registry is the set of actors of one node, in the order they were added.
type Registry struct {
	mu     sync.Mutex
	actors []*Counters
}

// Actor returns the counters named name, creating them on first use. The
// same name always gets the same counters, so they survive restarts.
func (r *Registry) Row(name, kind string) *Counters {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, a := range r.actors {
		if a.Name == name {
			return a
		}
	}
	a := &Counters{Name: name, Kind: kind}
	r.actors = append(r.actors, a)
	return a
}

// Remove forgets the actor named name (a protocol removed by a reload).
func (r *Registry) Remove(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, a := range r.actors {
		if a.Name == name {
			r.actors = append(r.actors[:i], r.actors[i+1:]...)
			return
		}
	}
}

// Actors returns the registered actors, in registration order.
func (r *Registry) All() []*Counters {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*Counters(nil), r.actors...)
}

// Snapshot copies every actor's counters, in registration order.
func (r *Registry) Snapshot() []Row {
	r.mu.Lock()
	actors := append([]*Counters(nil), r.actors...)
	r.mu.Unlock()
	out := make([]Row, 0, len(actors))
	for _, a := range actors {
		out = append(out, a.Snapshot())
	}
	return out
}

// SortByName orders snapshots by actor name (for stable output in tests).
func SortByName(s []Row) {
	sort.Slice(s, func(i, j int) bool { return s[i].Name < s[j].Name })
}

// Mirrored keeps a row of counters that another process reports (a
// protocol host's) cumulative across that process's restarts: its counters
// start again from zero in each incarnation, and the operator's must never
// go backwards. One goroutine (the host link) reports.
type Mirrored struct {
	c           *Counters
	incarnation uint64
	base, last  Row // the sum over earlier incarnations, and this one's last report
}

// NewMirrored mirrors reports into c.
func NewMirrored(c *Counters) *Mirrored { return &Mirrored{c: c} }

// Report takes a report of incarnation inc. A new incarnation — a new
// number, or counters lower than the last report's (a process that
// restarted unseen) — folds the last report into the base first.
func (m *Mirrored) Report(s Row, inc uint64) {
	if inc != m.incarnation || s.InPackets < m.last.InPackets || s.OutPackets < m.last.OutPackets || s.DroppedTotal() < m.last.DroppedTotal() {
		m.base = addRows(m.base, m.last)
		m.last = Row{}
		m.incarnation = inc
	}
	m.last = s
	sum := addRows(m.base, s)
	sum.State, sum.Mailbox = s.State, s.Mailbox // gauges: this incarnation's
	m.c.Mirror(sum)
}

// addRows adds the counters of b to a (names, kinds and gauges from b).
func addRows(a, b Row) Row {
	out := b
	out.InPackets, out.InBytes, out.InBatches = a.InPackets+b.InPackets, a.InBytes+b.InBytes, a.InBatches+b.InBatches
	out.OutPackets, out.OutBytes, out.OutBatches = a.OutPackets+b.OutPackets, a.OutBytes+b.OutBytes, a.OutBatches+b.OutBatches
	out.Restarts = a.Restarts + b.Restarts
	out.Drops = make(map[string]uint64, len(a.Drops)+len(b.Drops))
	for k, v := range a.Drops {
		out.Drops[k] += v
	}
	for k, v := range b.Drops {
		out.Drops[k] += v
	}
	return out
}

// Mirror sets the counters to those of s, an actor of another process (a
// protocol host's, reported to the daemon): the daemon serves them like
// its own (Mirrored keeps them cumulative across the process's restarts).
// Reasons this build does not know are ignored.
func (a *Counters) Mirror(s Row) {
	a.inPackets.Store(s.InPackets)
	a.inBytes.Store(s.InBytes)
	a.inBatches.Store(s.InBatches)
	a.outPackets.Store(s.OutPackets)
	a.outBytes.Store(s.OutBytes)
	a.outBatches.Store(s.OutBatches)
	for r := range Reason(len(reasonNames)) {
		a.drops[r].Store(s.Drops[r.String()])
	}
	a.restarts.Store(s.Restarts)
	switch s.State {
	case "running":
		a.SetState(Running)
	case "restarting":
		a.SetState(Restarting)
	case "down":
		a.SetState(Down)
	}
	if m := s.Mailbox; m != nil {
		a.mailboxCapacity.Store(m.Capacity)
		a.mailboxPolicy.Store(m.Policy)
		a.depthBatches.Store(m.DepthBatches)
		a.depthPackets.Store(m.DepthPackets)
		a.highWaterBatches.Store(m.HighWaterBatches)
		for i := range a.queueDelay {
			var v uint64
			if i < len(m.QueueDelay) {
				v = m.QueueDelay[i]
			}
			a.queueDelay[i].Store(v)
		}
		a.delaySum.Store(m.QueueDelaySum)
	}
}
