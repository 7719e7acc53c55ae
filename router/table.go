// Route table and per-packet classification.
//
// A packet meets this file in this order:
//  1. Classify checks the IP header (packet.Check); malformed -> Drop/Malformed.
//  2. It reads the destination address (packet.Destination).
//  3. Lookup finds the longest prefix that contains it (bart.Fast, IPv4 and
//     IPv6 in one table); no prefix -> Drop/NoRoute.
//  4. The route's action becomes the Verdict: Forward to a target, Drop
//     (RouteDrop) or Reject (the caller answers with an ICMP error).
//
// Nothing here allocates per packet, and a Table is never modified after
// NewTable, so any number of goroutines read it without locks. A reload builds
// a new Table and swaps a pointer.
package router

import (
	"fmt"
	"net/netip"

	"github.com/gaissmai/bart"

	"switchyard/packet"
	"switchyard/stats"
)

// Action is what a route does with the packets it matches.
type Action uint8

// Actions of a route.
const (
	// Forward sends the packet to the route's Target.
	Forward Action = iota
	// Drop discards the packet silently (counted as RouteDrop).
	Drop
	// Reject discards the packet and answers its sender with an ICMP or
	// ICMPv6 "administratively prohibited" error.
	Reject
)

// String returns the action's config name: "forward", "drop" or "reject".
func (a Action) String() string {
	switch a {
	case Forward:
		return "forward"
	case Drop:
		return "drop"
	case Reject:
		return "reject"
	}
	return fmt.Sprintf("action(%d)", uint8(a))
}

// DropReason says why a packet did not go to a target: an index into
// Result.Drops, so a split counts without a map. Its counter is the stats
// reason Reason returns; the labels users see live in stats alone.
type DropReason uint8

// Drop reasons, in counter order.
const (
	// None: the packet was forwarded.
	None DropReason = iota
	// Malformed: the IP header failed packet.Check.
	Malformed
	// NoRoute: no prefix in the table contains the destination.
	NoRoute
	// RouteDrop: the matching route's action is Drop.
	RouteDrop
	// Rejected: the matching route's action is Reject.
	Rejected

	// NumDropReasons is the number of reasons, None included; Result.Drops
	// is indexed by DropReason.
	NumDropReasons
)

// statsReasons maps each DropReason but None to its counter.
var statsReasons = [NumDropReasons]stats.Reason{
	Malformed: stats.Malformed,
	NoRoute:   stats.NoRoute,
	RouteDrop: stats.RouteDrop,
	Rejected:  stats.Rejected,
}

// Reason returns the stats reason packets dropped for r are counted under.
// None has none: it is not a drop.
func (r DropReason) Reason() (stats.Reason, bool) {
	if r == None || r >= NumDropReasons {
		return 0, false
	}
	return statsReasons[r], true
}

// String returns the reason's counter label ("malformed", "no_route",
// "route_drop", "rejected"), or "none".
func (r DropReason) String() string {
	if sr, ok := r.Reason(); ok {
		return sr.String()
	}
	if r == None {
		return "none"
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Route is one entry of a Table: a prefix and what to do with packets whose
// destination it contains.
type Route struct {
	Prefix netip.Prefix
	Action Action
	// Target is the index of the forward target (a protocol instance),
	// assigned by the caller. It must be ≥ 0 for Forward and is carried
	// unchanged (and unused) for Drop and Reject.
	Target int
}

// Table is an immutable longest-prefix-match table over IPv4 and IPv6.
//
// IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are not unmapped, neither in
// prefixes nor in lookups: they are IPv6 addresses and match only IPv6
// prefixes (such as ::/0 or ::ffff:0:0/96), never IPv4 routes. An IPv6 packet
// carrying one is still an IPv6 packet, and such addresses must not appear on
// the wire (RFC 4291 §2.5.5.2); a config that wants them gone routes
// ::ffff:0:0/96 to drop.
type Table struct {
	lpm    bart.Fast[entry] // prefix -> the route's index and its verdict, packed
	routes []Route          // for Lookup
}

// entry is what the LPM table stores per prefix: 8 bytes, so the data path's
// verdict comes out of the lookup itself without a second cache miss.
type entry struct {
	index  int32 // into Table.routes
	target int32 // Verdict.Target
	action Action
	reason DropReason
}

// NewTable builds a Table from routes. Prefixes are masked (10.1.2.3/8 is
// 10.0.0.0/8); an invalid prefix, a duplicate prefix (after masking), an
// unknown action or a negative forward target is an error. It borrows routes.
func NewTable(routes []Route) (*Table, error) {
	t := &Table{routes: make([]Route, 0, len(routes))}
	for i, r := range routes {
		if !r.Prefix.IsValid() {
			return nil, fmt.Errorf("route %d: invalid prefix %v", i, r.Prefix)
		}
		if r.Action > Reject {
			return nil, fmt.Errorf("route %d (%v): unknown action %d", i, r.Prefix, uint8(r.Action))
		}
		if r.Action == Forward && (r.Target < 0 || r.Target > MaxTargets) {
			return nil, fmt.Errorf("route %d (%v): forward target must be 0-%d, got %d", i, r.Prefix, MaxTargets, r.Target)
		}
		r.Prefix = r.Prefix.Masked()
		if e, dup := t.lpm.Get(r.Prefix); dup {
			return nil, fmt.Errorf("route %d: duplicate prefix %v (also route %d)", i, r.Prefix, e.index)
		}
		v := verdictOf(r)
		t.lpm.Insert(r.Prefix, entry{index: int32(len(t.routes)), target: int32(v.Target), action: v.Action, reason: v.Reason})
		t.routes = append(t.routes, r)
	}
	return t, nil
}

// Len reports the number of routes.
func (t *Table) Len() int { return len(t.routes) }

// Routes returns a copy of the table's routes (prefixes masked), in the order
// given to NewTable.
func (t *Table) Routes() []Route { return append([]Route(nil), t.routes...) }

// Lookup returns the route with the longest prefix containing dst. It does
// not allocate. An IPv6 zone is ignored.
func (t *Table) Lookup(dst netip.Addr) (Route, bool) {
	e, ok := t.lpm.Lookup(dst)
	if !ok {
		return Route{}, false
	}
	return t.routes[e.index], true
}

// Verdict is the decision for one packet.
type Verdict struct {
	Action Action
	// Target is the route's target for Forward, and -1 otherwise.
	Target int
	// Reason is None for Forward and says why for Drop and Reject.
	Reason DropReason
}

// Classify decides what happens to pkt (an IP packet without headroom). It
// borrows pkt and does not allocate.
func (t *Table) Classify(pkt []byte) Verdict {
	if packet.Check(pkt) != nil {
		return Verdict{Action: Drop, Target: -1, Reason: Malformed}
	}
	dst, ok := packet.Destination(pkt)
	if !ok {
		return Verdict{Action: Drop, Target: -1, Reason: Malformed}
	}
	return t.LookupVerdict(dst)
}

// LookupVerdict is the data path's lookup: the verdict of the longest prefix
// containing dst (Drop with reason NoRoute when none does), straight from the
// LPM table's 8-byte entry. It does not allocate.
func (t *Table) LookupVerdict(dst netip.Addr) Verdict {
	e, ok := t.lpm.Lookup(dst)
	if !ok {
		return Verdict{Action: Drop, Target: -1, Reason: NoRoute}
	}
	return Verdict{Action: e.action, Target: int(e.target), Reason: e.reason}
}

// verdictOf returns the verdict for packets matching r.
func verdictOf(r Route) Verdict {
	switch r.Action {
	case Forward:
		return Verdict{Action: Forward, Target: r.Target, Reason: None}
	case Reject:
		return Verdict{Action: Reject, Target: -1, Reason: Rejected}
	default:
		return Verdict{Action: Drop, Target: -1, Reason: RouteDrop}
	}
}
