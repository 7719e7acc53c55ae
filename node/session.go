package node

// Sessions: what a protocol instance's peer assigned (protocols.Session),
// put on the TUN and into the routes, and taken off again.
//
//  1. Report: an instance calls Env.Session from any goroutine; out of
//     process its host sends the report and the host link hands it over
//     (actors/remote/session.go), and reports the zero Session when the host
//     goes down. The report is bounded (MaxSessionAddrs, MaxSessionRoutes:
//     the rest is counted as truncated), kept as the instance's latest, and
//     the session worker is woken. A reporter never waits for the node: a
//     protocol that stops under Stop or Reload reports while Node.mu is held.
//  2. Incarnations: each incarnation of an instance (spawned, restarted by
//     its supervisor) has a generation and starts with the zero Session;
//     reports of an earlier one are ignored.
//  3. Apply (the worker, under Node.mu, once the node is live), against the
//     running config and the other sessions:
//     - addresses go on the TUN, unless tun.addresses or another session
//     has them (then they are not this session's to add or remove);
//     - routes go into the router's table towards the instance, unless the
//     config or another session routes that prefix (refused, counted); the
//     subnets of the addresses too (the kernel's connected route sends
//     them into the TUN), skipped quietly when routed already;
//     - with tun.install_routes on a TUN the node created, each route gets
//     a kernel route into the TUN as routes.go installs them: never
//     replacing one (an existing route refuses it), refused when it would
//     capture a protocol's endpoint (kernelCaptures), its source the
//     session's address of its family. A route whose kernel route is
//     refused is refused entirely.
//     What the instance had and no longer wants is removed first (kernel
//     routes, then addresses), what is new is added (addresses, then kernel
//     routes), and the router's table — config routes, then every
//     session's — is rebuilt and swapped in.
//  4. End: the zero Session, a new incarnation, a reload that restarts or
//     removes the instance, the host gone, and Stop remove exactly what
//     step 3 recorded as added, nothing else. A reload re-applies every
//     session against the new config (its routes win over a session's).

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"

	"switchyard/actors"
	"switchyard/actors/stage"
	"switchyard/config"
	"switchyard/protocols"
	"switchyard/router"
	"switchyard/stats"
)

// Drop reasons of the "sessions" row: In counts the addresses and routes
// sessions report, Out those applied.
var (
	// SessionRefused: an address or route the node would not apply (routed
	// already, captures an endpoint, the kernel refused it).
	SessionRefused = stats.NewReason("session_refused")
	// SessionTruncated: past MaxSessionAddrs or MaxSessionRoutes.
	SessionTruncated = stats.NewReason("session_truncated")
)

// sessionState is what one instance's session asked for and what the node
// did with it. Only under Node.mu.
type sessionState struct {
	want    protocols.Session
	since   time.Time
	addrs   []netip.Prefix          // put on the TUN by the node for this session
	routes  []netip.Prefix          // in the router's table towards the instance
	kernel  []netip.Prefix          // kernel routes the node installed for it
	refused map[netip.Prefix]string // why, for the stats
}

// sessionReport is one pending report of an incarnation.
type sessionReport struct {
	gen uint64
	s   protocols.Session
}

// sessionQueue hands reports to the worker. Lock order: Node.mu, then mu.
type sessionQueue struct {
	mu      sync.Mutex
	gen     map[string]uint64 // the current incarnation of each instance
	pending map[string]sessionReport
	wake    chan struct{}
	quit    chan struct{}
	done    sync.WaitGroup
}

// SessionInfo is one instance's session in GET /stats.
type SessionInfo struct {
	Instance     string            `json:"instance"`
	Since        time.Time         `json:"since"`
	Addresses    []netip.Prefix    `json:"addresses"`               // reported
	Routes       []netip.Prefix    `json:"routes"`                  // routed to the instance
	KernelRoutes []netip.Prefix    `json:"kernel_routes,omitempty"` // installed into the TUN
	Refused      map[string]string `json:"refused,omitempty"`       // prefix → why
}

// startSessions starts the worker. Reports wait until the node is live.
func (n *Node) startSessions() {
	q := &n.sq
	q.mu.Lock()
	if q.gen == nil {
		q.gen = map[string]uint64{}
	}
	q.pending = map[string]sessionReport{}
	q.wake = make(chan struct{}, 1)
	q.quit = make(chan struct{})
	quit, wake := q.quit, q.wake
	q.mu.Unlock()
	n.sessions = map[string]*sessionState{}
	n.sessStats = n.registry.Row("sessions", "sessions")
	q.done.Add(1)
	go func() {
		defer q.done.Done()
		for {
			select {
			case <-quit:
				return
			case <-wake:
				n.applyPending()
			}
		}
	}()
}

// stopSessions ends the worker; it must not be called with Node.mu held.
func (n *Node) stopSessions() {
	q := &n.sq
	q.mu.Lock()
	quit := q.quit
	q.quit = nil
	q.mu.Unlock()
	if quit != nil {
		close(quit)
		q.done.Wait()
	}
}

func (q *sessionQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// incarnation starts a new incarnation of instance name: it has no session
// until it reports one. It returns the generation its reports carry.
func (n *Node) incarnation(name string) uint64 {
	q := &n.sq
	q.mu.Lock()
	defer q.mu.Unlock()
	q.gen[name]++
	g := q.gen[name]
	if q.wake != nil {
		q.pending[name] = sessionReport{gen: g}
		q.signal()
	}
	return g
}

// sessionReporter is Env.Session of incarnation gen of instance name.
func (n *Node) sessionReporter(name string, gen uint64) func(protocols.Session) {
	return func(s protocols.Session) { n.queueSession(name, gen, s) }
}

// hostSession is a report from a protocol host's link, for the instance's
// current incarnation.
func (n *Node) hostSession(name string, s protocols.Session) {
	n.sq.mu.Lock()
	g := n.sq.gen[name]
	n.sq.mu.Unlock()
	n.queueSession(name, g, s)
}

// queueSession keeps a bounded copy of s as the latest report of name and
// wakes the worker. It never waits for Node.mu.
func (n *Node) queueSession(name string, gen uint64, s protocols.Session) {
	var trunc int
	if len(s.Addrs) > MaxSessionAddrs {
		trunc += len(s.Addrs) - MaxSessionAddrs
	}
	if len(s.Routes) > MaxSessionRoutes {
		trunc += len(s.Routes) - MaxSessionRoutes
	}
	c := protocols.Session{
		Addrs:  slices.Clone(s.Addrs[:min(len(s.Addrs), MaxSessionAddrs)]),
		Routes: slices.Clone(s.Routes[:min(len(s.Routes), MaxSessionRoutes)]),
	}
	q := &n.sq
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.wake == nil || q.gen[name] != gen {
		return // an earlier incarnation's, or the node is not running
	}
	if trunc > 0 && n.sessStats != nil {
		n.sessStats.In(trunc, 0)
		n.sessStats.Drop(SessionTruncated, trunc)
	}
	q.pending[name] = sessionReport{gen: gen, s: c}
	q.signal()
}

// applyPending applies the pending reports, if the node is live.
func (n *Node) applyPending() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.live {
		return // Start wakes the worker once live; after Stop nothing applies
	}
	q := &n.sq
	q.mu.Lock()
	pending := q.pending
	q.pending = map[string]sessionReport{}
	gens := make(map[string]uint64, len(pending))
	for name := range pending {
		gens[name] = q.gen[name]
	}
	q.mu.Unlock()
	if len(pending) == 0 {
		return
	}
	cfg := n.current.Load()
	names := make([]string, 0, len(pending))
	for name := range pending {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		r := pending[name]
		if r.gen != gens[name] {
			continue
		}
		if _, ok := n.running[name]; !ok {
			continue
		}
		n.syncSession(cfg, n.protocols, name, r.s, true)
	}
	n.storeRouting(cfg, n.routing.Load().Targets)
	n.publishSessions()
}

// dropSession removes instance name's session (its instance stops or
// restarts, under Node.mu): reports of the incarnation that made it are
// ignored from now on. The caller rebuilds the routing.
func (n *Node) dropSession(name string) {
	q := &n.sq
	q.mu.Lock()
	if q.gen != nil {
		q.gen[name]++
	}
	if q.pending != nil {
		delete(q.pending, name)
	}
	q.mu.Unlock()
	if n.sessions[name] != nil {
		n.syncSession(n.current.Load(), n.protocols, name, protocols.Session{}, false)
	}
}

// resyncSessions re-applies every session against cfg (a reload), and
// drops those of instances cfg no longer has. Under Node.mu.
func (n *Node) resyncSessions(cfg *config.Config, ps []parsedProtocol) {
	names := make([]string, 0, len(n.sessions))
	for name := range n.sessions {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		want := n.sessions[name].want
		if !slices.ContainsFunc(ps, func(p parsedProtocol) bool { return p.cfg.Name == name }) {
			want = protocols.Session{}
		}
		n.syncSession(cfg, ps, name, want, false)
	}
	n.publishSessions()
}

// clearSessions removes every session (Stop, before the TUN closes).
func (n *Node) clearSessions() {
	for name := range n.sessions {
		n.dropSession(name)
	}
	n.publishSessions()
}

// syncSession makes instance name's session want under cfg: see step 3 of
// the flow at the top of this file. count says to count the report on the
// sessions row (a report, not a reload's re-apply).
func (n *Node) syncSession(cfg *config.Config, ps []parsedProtocol, name string, want protocols.Session, count bool) {
	st := n.sessions[name]
	if st == nil {
		if want.IsZero() {
			return
		}
		st = &sessionState{}
		n.sessions[name] = st
	}
	if !sameSession(st.want, want) || st.since.IsZero() {
		st.since = time.Now()
	}
	oldWant := st.want
	st.want = want
	// A kernel route whose source address changed is installed afresh.
	moved := func(p netip.Prefix) bool { return sessionSource(p, oldWant.Addrs) != sessionSource(p, want.Addrs) }
	refused := map[netip.Prefix]string{}
	log := n.log.With(zap.String("protocol", name))
	ctl := n.tunctl

	// Addresses this session adds (and owns).
	var addrs []netip.Prefix
	for _, a := range want.Addrs {
		switch {
		case !a.IsValid():
			refused[a] = "invalid"
		case slices.Contains(addrs, a):
		case slices.Contains(cfg.TUN.Addresses, a):
			// The config's: on the TUN already, never removed by a session.
		case n.otherSessionHas(name, func(o *sessionState) bool { return slices.Contains(o.addrs, a) }):
			refused[a] = "another session has it"
		default:
			addrs = append(addrs, a)
		}
	}

	// Routes towards the instance: who routes each prefix already.
	taken := map[netip.Prefix]string{}
	for _, r := range cfg.Routes {
		what := "the config's route " + routeTarget(r)
		if r.Action == "" && r.To == name {
			what = "" // routed to this instance already
		}
		taken[r.Prefix.Masked()] = what
	}
	for other, o := range n.sessions {
		if other != name {
			for _, p := range o.routes {
				taken[p] = "the session of " + other
			}
		}
	}
	var routes, pushed []netip.Prefix
	for _, p := range want.Routes {
		if !p.IsValid() {
			refused[p] = "invalid"
			continue
		}
		p = p.Masked()
		if why, ok := taken[p]; ok {
			if why != "" {
				refused[p] = "routed by " + why
			}
			continue
		}
		if !slices.Contains(routes, p) {
			routes = append(routes, p)
			pushed = append(pushed, p)
		}
	}
	for _, a := range want.Addrs {
		sub := a.Masked()
		if !a.IsValid() || a.Bits() == a.Addr().BitLen() || slices.Contains(routes, sub) {
			continue
		}
		if _, ok := taken[sub]; !ok {
			routes = append(routes, sub)
			if !connectedSubnets {
				pushed = append(pushed, sub) // no connected route on a point-to-point utun
			}
		}
	}

	// Kernel routes: the accepted routes, checked as at start.
	var kernel []netip.Prefix
	if n.ownTUN && ctl != nil && cfg.TUN.InstallRoutes {
		eps := endpointsOf(cfg, ps, n.mark)
		for _, p := range pushed {
			if slices.Contains(n.kernelRoutes, p) {
				continue // the config's
			}
			if !slices.Contains(st.kernel, p) && lookupRoute != nil {
				if err := kernelCaptures([]netip.Prefix{p}, eps, lookupRoute); err != nil {
					refused[p] = err.Error()
					routes = slices.DeleteFunc(routes, func(r netip.Prefix) bool { return r == p })
					continue
				}
			}
			kernel = append(kernel, p)
		}
	}

	// Remove what is no longer wanted: kernel routes, then addresses.
	for _, p := range st.kernel {
		if !slices.Contains(kernel, p) || moved(p) {
			if err := ctl.delRoute(p); err != nil {
				log.Warn("session ended: kernel route not removed", zap.Error(err))
			}
		}
	}
	for _, a := range st.addrs {
		if !slices.Contains(addrs, a) && ctl != nil && n.ownTUN {
			if err := ctl.delAddress(a); err != nil {
				log.Warn("session ended: address not removed", zap.Error(err))
			}
		}
	}
	// Add what is new: addresses, then kernel routes.
	added := addrs[:0:0]
	for _, a := range addrs {
		if !slices.Contains(st.addrs, a) && ctl != nil && n.ownTUN {
			if err := ctl.addAddress(a); err != nil {
				refused[a] = err.Error()
				continue
			}
		}
		added = append(added, a)
	}
	installed := kernel[:0:0]
	for _, p := range kernel {
		if !slices.Contains(st.kernel, p) || moved(p) {
			if err := ctl.addRoute(p, sessionSource(p, want.Addrs)); err != nil {
				refused[p] = err.Error()
				routes = slices.DeleteFunc(routes, func(r netip.Prefix) bool { return r == p })
				continue
			}
		}
		installed = append(installed, p)
	}
	if count {
		n.logSessionChange(log, st, added, routes, installed, refused)
	}
	st.addrs, st.routes, st.kernel, st.refused = added, routes, installed, refused
	if count {
		reported := len(want.Addrs) + len(want.Routes)
		n.sessStats.In(reported, 0)
		n.sessStats.Out(max(reported-len(refused), 0), 0)
		n.sessStats.Drop(SessionRefused, min(len(refused), reported))
	}
	if want.IsZero() {
		delete(n.sessions, name)
	}
}

func (n *Node) logSessionChange(log *zap.Logger, st *sessionState, addrs, routes, kernel []netip.Prefix, refused map[netip.Prefix]string) {
	if st.want.IsZero() {
		log.Info("session ended: its addresses and routes removed",
			zap.Stringers("addresses", st.addrs), zap.Stringers("kernel_routes", st.kernel))
	} else {
		log.Info("session applied", zap.Stringers("addresses", addrs),
			zap.Stringers("routes", routes), zap.Stringers("kernel_routes", kernel))
	}
	for p, why := range refused {
		log.Warn("session: refused", zap.Stringer("prefix", p), zap.String("why", why))
	}
}

// otherSessionHas reports whether a session other than name's satisfies f.
func (n *Node) otherSessionHas(name string, f func(*sessionState) bool) bool {
	for other, o := range n.sessions {
		if other != name && f(o) {
			return true
		}
	}
	return false
}

// sessionSource is the preferred source of a session's kernel route to p:
// the session's first address of p's family (a route the peer pushed is
// for traffic from the address it assigned), if any.
func sessionSource(p netip.Prefix, addrs []netip.Prefix) netip.Addr {
	for _, a := range addrs {
		if a.Addr().Is4() == p.Addr().Is4() {
			return a.Addr()
		}
	}
	return netip.Addr{}
}

func sameSession(a, b protocols.Session) bool {
	return slices.Equal(a.Addrs, b.Addrs) && slices.Equal(a.Routes, b.Routes)
}

// storeRouting swaps in the route table of cfg's routes and every
// session's, over targets (whose order the table indexes).
func (n *Node) storeRouting(cfg *config.Config, targets []*stage.Target) {
	index := make(map[string]int, len(targets))
	for i, t := range targets {
		index[t.Name] = i
	}
	table, err := buildTable(cfg.Routes, index, n.sessionRoutes(cfg, index)...)
	if err != nil {
		// Cannot happen (syncSession keeps prefixes unique); keep the
		// config's routes.
		n.log.Error("route table with the sessions' routes", zap.Error(err))
		if table, err = buildTable(cfg.Routes, index); err != nil {
			return
		}
	}
	n.routing.Store(&actors.Routing{Table: table, Targets: targets})
}

// sessionRoutes are the sessions' routes towards instances in index, less
// prefixes cfg routes itself.
func (n *Node) sessionRoutes(cfg *config.Config, index map[string]int) []router.Route {
	seen := make(map[netip.Prefix]bool, len(cfg.Routes))
	for _, r := range cfg.Routes {
		seen[r.Prefix.Masked()] = true
	}
	names := make([]string, 0, len(n.sessions))
	for name := range n.sessions {
		names = append(names, name)
	}
	sort.Strings(names)
	var out []router.Route
	for _, name := range names {
		i, ok := index[name]
		if !ok {
			continue
		}
		for _, p := range n.sessions[name].routes {
			if !seen[p] {
				seen[p] = true
				out = append(out, router.Route{Prefix: p, Action: router.Forward, Target: i})
			}
		}
	}
	return out
}

// publishSessions makes the sessions' stats snapshot. Under Node.mu.
func (n *Node) publishSessions() {
	out := make([]SessionInfo, 0, len(n.sessions))
	for name, st := range n.sessions {
		si := SessionInfo{
			Instance: name, Since: st.since,
			Addresses:    slices.Clone(st.want.Addrs),
			Routes:       slices.Clone(st.routes),
			KernelRoutes: slices.Clone(st.kernel),
		}
		if len(st.refused) > 0 {
			si.Refused = make(map[string]string, len(st.refused))
			for p, why := range st.refused {
				si.Refused[p.String()] = why
			}
		}
		out = append(out, si)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Instance < out[j].Instance })
	n.sessionInfo.Store(&out)
}

// Sessions returns the sessions the node applied, by instance name.
func (n *Node) Sessions() []SessionInfo {
	if p := n.sessionInfo.Load(); p != nil {
		return *p
	}
	return nil
}

// describeSession is a session for a test's failure message.
func (s SessionInfo) String() string {
	return fmt.Sprintf("%s: addresses %v routes %v kernel %v refused %v", s.Instance, s.Addresses, s.Routes, s.KernelRoutes, s.Refused)
}
