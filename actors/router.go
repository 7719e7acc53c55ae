package actors

// Router: the middle of the outbound data path.
//
//  1. Receives a *packet.Batch from capture (takes ownership).
//  2. Classifies every packet by destination in the current route table (an
//     atomic pointer: a reload swaps the whole table, so no packet sees a
//     half-built one) and splits the batch into one batch per target,
//     preserving order within each target, moving buffers, never copying.
//  3. Sends each target's batch to its protocol actor (ownership passes), or
//     drops it as protocol_down when the protocol exceeded its restart budget.
//  4. Drops malformed packets, packets without a route and packets of `drop`
//     routes, counted by reason; answers `reject` routes with ICMP/ICMPv6
//     destination unreachable (rate-limited), sent to the injector.

import (
	"net/netip"
	"switchyard/actors/stage"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"switchyard/packet"
	"switchyard/router"
	"switchyard/stats"
)

// Routing is an immutable route table with the targets its routes index.
type Routing struct {
	Table   *router.Table
	Targets []*stage.Target
}

// Router is the routing actor.
type Router struct {
	routing  *atomic.Pointer[Routing]
	injector *actor.PID
	pool     *packet.Pool
	stats    *stats.Counters
	src4     netip.Addr // source of ICMPv4 errors: the TUN's IPv4 address
	src6     netip.Addr // source of ICMPv6 errors
	limiter  *router.RateLimiter

	splitter *router.Splitter
	ctx      actor.Context
	icmp     *packet.Batch // ICMP errors of the batch in hand
	onReject func(pkt []byte)
}

// NewRouter returns the router actor. routing is shared with the node, which
// swaps it on reload.
func NewRouter(routing *atomic.Pointer[Routing], injector *actor.PID, pool *packet.Pool, st *stats.Counters, src4, src6 netip.Addr) *Router {
	r := &Router{
		routing:  routing,
		injector: injector,
		pool:     pool,
		stats:    st,
		src4:     src4,
		src6:     src6,
		limiter:  router.NewRateLimiter(router.ICMPErrorsPerSecond, router.ICMPErrorBurst),
		splitter: router.NewSplitter(pool),
	}
	r.onReject = r.reject
	return r
}

// Receive handles batches (takes ownership) and the lifecycle.
func (r *Router) Receive(ctx actor.Context) {
	switch b := ctx.Message().(type) {
	case *packet.Batch:
		r.ctx = ctx
		r.route(ctx, b)
		r.ctx = nil
	}
}

func (r *Router) route(ctx actor.Context, b *packet.Batch) {
	rt := r.routing.Load()
	res := r.splitter.Split(rt.Table, b, r.onReject)
	for reason := router.Malformed; reason < router.NumDropReasons; reason++ {
		if sr, ok := reason.Reason(); ok {
			r.stats.Drop(sr, res.Drops[reason])
		}
	}
	for _, out := range res.Out {
		t := rt.Targets[out.Target]
		n := out.Batch.Len()
		if t.Down() {
			r.stats.Drop(stats.ProtocolDown, n)
			out.Batch.Release()
			continue
		}
		r.stats.Out(n, out.Batch.Bytes())
		ctx.Send(t.PID, out.Batch)
	}
	if r.icmp != nil {
		ctx.Send(r.injector, r.icmp)
		r.icmp = nil
	}
}

// reject borrows pkt and queues an ICMP error answering it, if the rate
// limit and the pool allow.
func (r *Router) reject(pkt []byte) {
	if !r.limiter.Allow(time.Now()) {
		return
	}
	src := r.src4
	if packet.Version(pkt) == 6 {
		src = r.src6
	}
	var one [1][]byte
	if !r.pool.GetBufs(one[:]) {
		return
	}
	n := router.Unreachable(one[0], pkt, src)
	if n == 0 {
		r.pool.PutBufs(one[:])
		return
	}
	if r.icmp == nil {
		r.icmp = r.pool.GetBatch()
	}
	r.icmp.Append(one[0], n)
	if r.icmp.Full() {
		r.ctx.Send(r.injector, r.icmp)
		r.icmp = nil
	}
}
