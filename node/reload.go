package node

// Reload: a new config swapped into a running node, without a restart.
//
//  1. plan — changes nothing: the new config is validated fully
//     (config.Validate, every protocol's Parse, the route table is built),
//     changes that need a restart are refused (node.name, tun.name,
//     tun.mtu, batch.*, admin.*), new kernel routes that would capture a
//     protocol's endpoint are refused (a read-only kernel lookup,
//     routes.go), and old and new are compared. Any error refuses the
//     whole reload; the running config keeps serving untouched.
//  2. apply, in an order that never leaves a packet without a place to go:
//     a. protocols whose type or settings changed (or that were down): the
//     old instance is marked down (its routes drop as protocol_down) and
//     stopped — its queued batches drop as stopped — then the new one is
//     spawned under the same name;
//     b. added protocols are spawned;
//     c. mailboxes whose capacity or policy changed are resized in place:
//     protocols, router and injector (mailbox.Resize);
//     d. kernel routes of removed prefixes are deleted — only the node's
//     own (routes.go);
//     e. the new Routing — route table and targets — is stored with one
//     atomic pointer swap: the router reads it once per batch, so no packet
//     sees a half-built table. Unchanged protocols keep their Target (PID,
//     stats, socket, sessions);
//     f. removed protocols are stopped and their stats rows removed;
//     g. new addresses are added, old addresses removed, then kernel routes
//     for new prefixes installed, never replacing one (only on a TUN the
//     node created);
//     h. the restart budget and the log level are replaced.
//  3. The Result lists every change; each is logged at info.
//
// Reloads are serialized with Stop by Node.mu: a Stop that arrives during a
// reload waits for it, and a reload after Stop is refused.

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"switchyard/actors/stage"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"switchyard/actors"
	"switchyard/actors/mailbox"
	"switchyard/config"
	"switchyard/router"
)

// StopTimeout (10 s) bounds how long a reload waits for a protocol it
// stops: protoactor's stop future gives up after 10 s too.
const StopTimeout = 10 * time.Second

// Change kinds in a reload Result.
const (
	ChangeRouteAdded        = "route_added"
	ChangeRouteRemoved      = "route_removed"
	ChangeRouteChanged      = "route_changed"
	ChangeProtocolAdded     = "protocol_added"
	ChangeProtocolRemoved   = "protocol_removed"
	ChangeProtocolRestarted = "protocol_restarted"
	ChangeMailboxResized    = "mailbox_resized"
	ChangeAddressAdded      = "address_added"
	ChangeAddressRemoved    = "address_removed"
	ChangeKernelRouteAdded  = "kernel_route_added"
	ChangeKernelRouteGone   = "kernel_route_removed"
	ChangeSupervision       = "supervision_changed"
	ChangeLogLevel          = "log_level_changed"
)

// Change is one thing a reload changed.
type Change struct {
	Kind   string `json:"kind"`             // one of the Change* constants
	Name   string `json:"name"`             // what changed: a prefix, an instance or actor name, a key
	Detail string `json:"detail,omitempty"` // how, for people
}

func (c Change) String() string {
	if c.Detail == "" {
		return c.Kind + " " + c.Name
	}
	return c.Kind + " " + c.Name + ": " + c.Detail
}

// Result is what a reload did, as logged and as POST /reload returns it.
type Result struct {
	// Applied is true when the new config was swapped in; false when it
	// was refused and the running config kept serving untouched.
	Applied bool `json:"applied"`
	// File is the config file the reload read.
	File string `json:"file,omitempty"`
	// Changes lists what changed, in apply order; empty when nothing did.
	Changes []Change `json:"changes"`
	// Errors are why the config was refused, one per problem with
	// file:line:col where known; or, with Applied, the parts of the apply
	// that failed (a netlink call, a protocol that did not spawn).
	Errors []string `json:"errors"`
	// Note explains a reload that could not change anything (the daemon
	// runs the embedded default config).
	Note string `json:"note,omitempty"`
}

// Refused returns the Result of a reload refused for err (a config that did
// not load or parse), with one error line per problem.
func Refused(file string, err error) Result {
	return Result{File: file, Changes: []Change{}, Errors: errorLines(err)}
}

// errorLines splits err into one line per problem.
func errorLines(err error) []string {
	var ces config.Errors
	if errors.As(err, &ces) {
		out := make([]string, len(ces))
		for i, e := range ces {
			out[i] = e.Error()
		}
		return out
	}
	return strings.Split(err.Error(), "\n")
}

// protocolAction is what a reload does with one protocol instance.
type protocolAction uint8

const (
	keepProtocol    protocolAction = iota // unchanged (maybe resized): untouched
	addProtocol                           // new name
	restartProtocol                       // type, placement or settings changed, or it was down
)

// planned is one protocol instance of the new config and what happens to it.
type planned struct {
	p      parsedProtocol
	action protocolAction
	old    *runningProtocol // keep and restart
	why    string           // restart: what changed
	resize bool             // keep: mailbox capacity or policy changed
}

// plan is a validated reload, computed without touching anything.
type plan struct {
	cfg       *config.Config
	protocols []planned          // new config order = target order of the table
	removed   []*runningProtocol // in old config order
	table     *router.Table
	routes    []Change
	defaultMB bool // router and injector mailboxes change
	budget    *stage.Budget
	level     *zapcore.Level
	addrAdd   []netip.Prefix
	addrDel   []netip.Prefix
	routeAdd  []netip.Prefix // kernel routes to install
	routeDel  []netip.Prefix // kernel routes to delete
	routeKeep []netip.Prefix // installed routes kept (the new kernelRoutes with routeAdd)
}

// Reload validates newCfg fully and, if it is valid and changes nothing that
// needs a restart, swaps it in: see the flow at the top of this file. It
// returns the Result; the error is non-nil when the config was refused
// (Result.Applied false, the running config untouched). Failures while
// applying a valid config (a netlink call, a spawn) do not refuse it: they
// are in Result.Errors with Applied true, and logged.
func (n *Node) Reload(newCfg *config.Config) (Result, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	res := Result{File: newCfg.File, Changes: []Change{}, Errors: []string{}}
	if !n.live {
		err := errors.New("the node is not running")
		res.Errors = []string{err.Error()}
		return res, err
	}
	pl, err := n.plan(newCfg)
	if err != nil {
		res.Errors = errorLines(err)
		n.log.Warn("reload refused; the running config keeps serving",
			zap.String("file", newCfg.File), zap.Strings("errors", res.Errors))
		return res, err
	}
	n.apply(pl, &res)
	res.Applied = true
	if len(res.Changes) == 0 {
		n.log.Info("reload applied: nothing changed", zap.String("file", newCfg.File))
	} else {
		n.log.Info("reload applied", zap.String("file", newCfg.File),
			zap.Int("changes", len(res.Changes)), zap.Int("errors", len(res.Errors)))
	}
	return res, nil
}

// plan validates newCfg against the running config and works out the
// changes. It touches nothing.
func (n *Node) plan(newCfg *config.Config) (*plan, error) {
	old := n.current.Load()
	var errs config.Errors
	add := func(err error) {
		var ces config.Errors
		var ce *config.Error
		switch {
		case err == nil:
		case errors.As(err, &ces):
			errs = append(errs, ces...)
		case errors.As(err, &ce):
			errs = append(errs, ce)
		default:
			errs = append(errs, &config.Error{Pos: config.Position{File: newCfg.File}, Msg: err.Error()})
		}
	}
	add(newCfg.Validate())
	parsed, perr := parse(newCfg)
	add(perr)
	errs = append(errs, immutable(old, newCfg)...)
	errs = append(errs, n.hostCapabilities(newCfg, parsed)...)
	if len(errs) > 0 {
		return nil, errs
	}

	pl := &plan{cfg: newCfg}
	index := make(map[string]int, len(parsed))
	for i, p := range parsed {
		index[p.cfg.Name] = i
		pp := planned{p: p}
		rp, ok := n.running[p.cfg.Name]
		switch {
		case !ok:
			pp.action = addProtocol
		case rp.target.Down():
			pp.action, pp.old, pp.why = restartProtocol, rp, "was down (restart budget exceeded)"
		default:
			pp.old = rp
			if why := instanceChange(rp.parsed, p); why != "" {
				pp.action, pp.why = restartProtocol, why
			} else {
				pp.resize = rp.parsed.cfg.Mailbox != p.cfg.Mailbox
			}
		}
		pl.protocols = append(pl.protocols, pp)
	}
	for _, p := range n.protocols {
		if _, ok := index[p.cfg.Name]; !ok {
			pl.removed = append(pl.removed, n.running[p.cfg.Name])
		}
	}
	table, err := buildTable(newCfg.Routes, index)
	if err != nil {
		return nil, config.Errors{{Pos: config.Position{File: newCfg.File}, Path: "routes", Msg: err.Error()}}
	}
	pl.table = table
	pl.routes = routeChanges(old.Routes, newCfg.Routes)

	pl.defaultMB = old.Mailbox != newCfg.Mailbox
	if old.Supervision != newCfg.Supervision {
		b := budgetOf(newCfg.Supervision)
		pl.budget = &b
	}
	if old.Log.Level != newCfg.Log.Level {
		lvl, err := zapcore.ParseLevel(newCfg.Log.Level)
		if err != nil { // Validate ruled this out
			return nil, config.Errors{{Pos: config.Position{File: newCfg.File}, Path: "log.level", Msg: err.Error()}}
		}
		pl.level = &lvl
	}

	pl.addrAdd, pl.addrDel = diffPrefixes(old.TUN.Addresses, newCfg.TUN.Addresses)
	if n.ownTUN {
		want := kernelRoutePrefixes(newCfg.TUN, newCfg.Routes)
		pl.routeAdd, pl.routeDel = diffPrefixes(n.kernelRoutes, want)
		for _, p := range n.kernelRoutes {
			if slices.Contains(want, p) {
				pl.routeKeep = append(pl.routeKeep, p)
			}
		}
		// New kernel routes must not capture an endpoint, as at start.
		if lookupRoute != nil && len(pl.routeAdd) > 0 {
			if err := kernelCaptures(pl.routeAdd, endpointsOf(newCfg, parsed, n.mark), lookupRoute); err != nil {
				return nil, config.Errors{{Pos: config.Position{File: newCfg.File}, Path: "routes", Msg: err.Error()}}
			}
		}
	} else {
		pl.routeKeep = n.kernelRoutes
	}
	return pl, nil
}

// hostCapabilities refuses a protocol that would listen below 1024 on a
// spawned host started without CAP_NET_BIND_SERVICE: the host would fail to
// bind and restart it forever.
func (n *Node) hostCapabilities(cfg *config.Config, ps []parsedProtocol) config.Errors {
	var errs config.Errors
	for _, h := range cfg.Hosts {
		if !h.Spawn || n.hostBindsLow[h.Name] {
			continue
		}
		if p := lowPortOn(h.Name, ps); p != nil {
			errs = append(errs, cfg.Errorf(p.cfg.Settings.Pos(), p.cfg.Settings.Path(),
				"listens below %d on host %q, which was started without CAP_NET_BIND_SERVICE; restart the daemon",
				privilegedPorts, h.Name))
		}
	}
	return errs
}

// immutable refuses changes that only a restart can make.
func immutable(old, cfg *config.Config) config.Errors {
	var errs config.Errors
	check := func(path string, changed bool, from, to any) {
		if changed {
			errs = append(errs, &config.Error{Pos: config.Position{File: cfg.File}, Path: path,
				Msg: fmt.Sprintf("cannot change on reload (%v → %v); restart the daemon", from, to)})
		}
	}
	check("node.name", old.Node.Name != cfg.Node.Name, old.Node.Name, cfg.Node.Name)
	check("tun.name", old.TUN.Name != cfg.TUN.Name, old.TUN.Name, cfg.TUN.Name)
	check("tun.mtu", old.TUN.MTU != cfg.TUN.MTU, old.TUN.MTU, cfg.TUN.MTU)
	check("batch.max_packets", old.Batch.MaxPackets != cfg.Batch.MaxPackets, old.Batch.MaxPackets, cfg.Batch.MaxPackets)
	check("batch.pool_buffers", old.Batch.PoolBuffers != cfg.Batch.PoolBuffers, old.Batch.PoolBuffers, cfg.Batch.PoolBuffers)
	check("admin.listen", old.Admin.Listen != cfg.Admin.Listen, old.Admin.Listen, cfg.Admin.Listen)
	if old.Admin.Listen == cfg.Admin.Listen && !reflect.DeepEqual(old.Admin, cfg.Admin) {
		errs = append(errs, &config.Error{Pos: config.Position{File: cfg.File}, Path: "admin",
			Msg: "cannot change on reload; restart the daemon"})
	}
	// The remote listener, its transport and the protocol hosts are set up
	// once at start; where they are in the file does not matter.
	oldRemote, newRemote := old.Remote, cfg.Remote
	oldRemote.Pos, newRemote.Pos = config.Position{}, config.Position{}
	if !reflect.DeepEqual(oldRemote, newRemote) {
		errs = append(errs, &config.Error{Pos: config.Position{File: cfg.File}, Path: "remote",
			Msg: "cannot change on reload; restart the daemon"})
	}
	hosts := func(hs []config.Host) []config.Host {
		out := make([]config.Host, len(hs))
		for i, h := range hs {
			h.Pos = config.Position{}
			out[i] = h
		}
		return out
	}
	if !reflect.DeepEqual(hosts(old.Hosts), hosts(cfg.Hosts)) {
		errs = append(errs, &config.Error{Pos: config.Position{File: cfg.File}, Path: "hosts",
			Msg: "cannot change on reload; restart the daemon"})
	}
	return errs
}

// instanceChange says what makes a protocol instance need a restart, or ""
// when only its mailbox (or nothing) changed. Settings are compared as the
// protocol parsed them, so formatting and key order do not matter.
func instanceChange(old, cur parsedProtocol) string {
	switch {
	case old.cfg.Type != cur.cfg.Type:
		return fmt.Sprintf("type %s → %s", old.cfg.Type, cur.cfg.Type)
	case old.cfg.Host != cur.cfg.Host:
		return fmt.Sprintf("host %q → %q", old.cfg.Host, cur.cfg.Host)
	case !reflect.DeepEqual(old.settings, cur.settings):
		return "settings changed"
	}
	return ""
}

func budgetOf(s config.Supervision) stage.Budget {
	return stage.Budget{
		MaxRestarts: s.MaxRestarts,
		Within:      time.Duration(s.Within),
		Backoff:     time.Duration(s.Backoff),
	}
}

func routeTarget(r config.Route) string {
	if r.Action != "" {
		return r.Action
	}
	return "to " + r.To
}

// routeChanges compares routes by prefix (prefixes are unique in a valid
// config).
func routeChanges(old, cur []config.Route) []Change {
	was := make(map[netip.Prefix]config.Route, len(old))
	for _, r := range old {
		was[r.Prefix] = r
	}
	var out []Change
	seen := make(map[netip.Prefix]bool, len(cur))
	for _, r := range cur {
		seen[r.Prefix] = true
		o, ok := was[r.Prefix]
		switch {
		case !ok:
			out = append(out, Change{ChangeRouteAdded, r.Prefix.String(), routeTarget(r)})
		case routeTarget(o) != routeTarget(r):
			out = append(out, Change{ChangeRouteChanged, r.Prefix.String(), routeTarget(o) + " → " + routeTarget(r)})
		}
	}
	for _, r := range old {
		if !seen[r.Prefix] {
			out = append(out, Change{ChangeRouteRemoved, r.Prefix.String(), "was " + routeTarget(r)})
		}
	}
	return out
}

// diffPrefixes returns what is in cur but not old, and in old but not cur.
func diffPrefixes(old, cur []netip.Prefix) (added, removed []netip.Prefix) {
	for _, p := range cur {
		if !slices.Contains(old, p) && !slices.Contains(added, p) {
			added = append(added, p)
		}
	}
	for _, p := range old {
		if !slices.Contains(cur, p) && !slices.Contains(removed, p) {
			removed = append(removed, p)
		}
	}
	return added, removed
}

func mailboxString(m config.Mailbox) string {
	if m.Drop() == config.DropCoDel {
		return fmt.Sprintf("%d %s (target %v, interval %v)", m.Capacity, m.Policy, m.Target, m.Interval)
	}
	return fmt.Sprintf("%d %s", m.Capacity, m.Policy)
}

// apply carries out a plan; see the flow at the top of this file, one step
// a method. Failures are recorded in res and logged; the rest of the plan
// still applies.
func (n *Node) apply(pl *plan, res *Result) {
	a := &applier{n: n, pl: pl, res: res, old: n.current.Load()}
	running, targets := a.protocols()
	a.mailboxes()
	kernel := a.kernelRoutesOut(n.tunctl)
	a.swapTable(targets)
	a.removeProtocols()
	kernel = append(kernel, a.addressesAndRoutesIn(n.tunctl)...)
	n.kernelRoutes = kernel
	a.budgetAndLogLevel()
	a.commit(running)
	if len(n.sessions) > 0 {
		// Sessions again, now against the new config in full (a route it
		// no longer has may be a session's now).
		n.resyncSessions(n.current.Load(), n.protocols)
		n.storeRouting(n.current.Load(), targets)
	}
}

// applier is one apply's state: the plan, the config it replaces and the
// result it fills.
type applier struct {
	n   *Node
	pl  *plan
	res *Result
	old *config.Config
}

func (a *applier) change(c Change) {
	a.res.Changes = append(a.res.Changes, c)
	a.n.log.Info("reload: "+strings.ReplaceAll(c.Kind, "_", " "), zap.String("name", c.Name), zap.String("detail", c.Detail))
}

func (a *applier) fail(err error) {
	a.res.Errors = append(a.res.Errors, err.Error())
	a.n.log.Error("reload: part of the new config was not applied", zap.Error(err))
}

// protocols (steps a, b) restarts and adds protocols and resizes the
// mailboxes of those kept; it returns the running set and the targets in
// the new config's order.
func (a *applier) protocols() (map[string]*runningProtocol, []*stage.Target) {
	running := make(map[string]*runningProtocol, len(a.pl.protocols))
	targets := make([]*stage.Target, len(a.pl.protocols))
	for i, pp := range a.pl.protocols {
		name := pp.p.cfg.Name
		switch pp.action {
		case keepProtocol:
			running[name] = pp.old
			targets[i] = pp.old.target
			if pp.resize {
				from := pp.old.parsed.cfg.Mailbox
				pp.old.parsed = pp.p
				if err := resize(pp.old.mailbox, pp.p.cfg.Mailbox); err != nil {
					a.fail(fmt.Errorf("resize the mailbox of %q: %w", name, err))
					continue
				}
				a.change(Change{ChangeMailboxResized, name, mailboxString(from) + " → " + mailboxString(pp.p.cfg.Mailbox)})
			} else {
				pp.old.parsed = pp.p // same instance; keep the new positions
			}
			continue
		case restartProtocol:
			pp.old.target.SetDown(true)
			a.n.stopProtocol(pp.old, a.fail)
			a.n.dropSession(name)
			if pp.old.parsed.cfg.Type != pp.p.cfg.Type {
				// The stats rows carry the type: start them afresh.
				a.n.registry.Remove(name)
				a.n.registry.Remove(name + ".recv")
			}
		}
		rp, err := a.n.spawnProtocol(pp.p)
		if err != nil {
			a.fail(err)
			// Its routes drop as protocol_down until a later reload.
			st := a.n.registry.Row(name, pp.p.cfg.Type)
			rp = &runningProtocol{parsed: pp.p, target: &stage.Target{Name: name, Stats: st}}
			rp.target.SetDown(true)
		}
		running[name] = rp
		targets[i] = rp.target
		if pp.action == restartProtocol {
			a.change(Change{ChangeProtocolRestarted, name, pp.why})
		} else {
			a.change(Change{ChangeProtocolAdded, name, pp.p.cfg.Type})
		}
	}

	return running, targets
}

// mailboxes (step c): the router's and the injector's follow the default.
func (a *applier) mailboxes() {
	if a.pl.defaultMB {
		for _, m := range []struct {
			name string
			mb   *mailbox.Mailbox
		}{{"router", a.n.routerMB}, {"injector", a.n.injectorMB}} {
			if err := resize(m.mb, a.pl.cfg.Mailbox); err != nil {
				a.fail(fmt.Errorf("resize the mailbox of %s: %w", m.name, err))
				continue
			}
			a.change(Change{ChangeMailboxResized, m.name, mailboxString(a.old.Mailbox) + " → " + mailboxString(a.pl.cfg.Mailbox)})
		}
	}
}

// kernelRoutesOut (step d) removes the kernel routes the new config drops;
// it returns the routes still installed. ctl is nil on a device the node
// was given.
func (a *applier) kernelRoutesOut(ctl tunControl) []netip.Prefix {
	kernel := slices.Clone(a.pl.routeKeep)
	for _, p := range a.pl.routeDel {
		if err := ctl.delRoute(p); err != nil {
			a.fail(err)
			kernel = append(kernel, p)
			continue
		}
		a.change(Change{ChangeKernelRouteGone, p.String(), "via " + ctl.device()})
	}
	return kernel
}

// swapTable (step e) makes the new route table live with one store.
func (a *applier) swapTable(targets []*stage.Target) {
	if len(a.n.sessions) == 0 {
		a.n.routing.Store(&actors.Routing{Table: a.pl.table, Targets: targets})
	} else {
		// The sessions' routes, less those the new config routes itself.
		a.n.resyncSessions(a.pl.cfg, a.parsed())
		a.n.storeRouting(a.pl.cfg, targets)
	}
	for _, c := range a.pl.routes {
		a.change(c)
	}
}

// removeProtocols (step f) stops the protocols the new config drops.
func (a *applier) removeProtocols() {
	for _, rp := range a.pl.removed {
		name := rp.parsed.cfg.Name
		rp.target.SetDown(true)
		a.n.stopProtocol(rp, a.fail)
		a.n.dropSession(name)
		// Its rows leave the stats: log their final counters first, as
		// Stop does for every actor.
		for _, st := range []string{name, name + ".recv"} {
			row := a.n.registry.Row(st, rp.parsed.cfg.Type).Snapshot()
			a.n.log.Info("final counters of a removed protocol",
				zap.String("actor", row.Name),
				zap.Uint64("in_packets", row.InPackets),
				zap.Uint64("out_packets", row.OutPackets),
				zap.Uint64("dropped", row.DroppedTotal()),
				zap.Any("drops", row.Drops),
				zap.Uint64("restarts", row.Restarts))
			a.n.registry.Remove(st)
		}
		a.change(Change{ChangeProtocolRemoved, name, rp.parsed.cfg.Type})
	}
}

// addressesAndRoutesIn (step g) adds and removes TUN addresses, then
// installs the new kernel routes (after the removals: a route to the
// subnet of a removed address can only be added once the address's
// connected route is gone); it returns the routes it installed. ctl is nil
// on a device the node was given: addresses are only recorded.
func (a *applier) addressesAndRoutesIn(ctl tunControl) (kernel []netip.Prefix) {
	for _, p := range a.pl.addrAdd {
		if ctl != nil {
			if err := ctl.addAddress(p); err != nil {
				a.fail(err)
				continue
			}
		}
		a.change(Change{ChangeAddressAdded, p.String(), a.n.tunNote()})
	}
	for _, p := range a.pl.addrDel {
		if ctl != nil {
			if err := ctl.delAddress(p); err != nil {
				a.fail(err)
				continue
			}
		}
		a.change(Change{ChangeAddressRemoved, p.String(), a.n.tunNote()})
	}
	for _, p := range a.pl.routeAdd {
		if err := ctl.addRoute(p, preferredSource(p, a.pl.cfg.TUN.Addresses)); err != nil {
			a.fail(err)
			continue
		}
		kernel = append(kernel, p)
		a.change(Change{ChangeKernelRouteAdded, p.String(), "via " + ctl.device()})
	}
	return kernel
}

// budgetAndLogLevel (step h).
func (a *applier) budgetAndLogLevel() {
	if a.pl.budget != nil {
		a.n.system.Root.Send(a.n.supervisor, &stage.SetBudget{Budget: *a.pl.budget})
		a.change(Change{ChangeSupervision, "supervision", fmt.Sprintf("max_restarts %d within %s backoff %s",
			a.pl.cfg.Supervision.MaxRestarts, a.pl.cfg.Supervision.Within, a.pl.cfg.Supervision.Backoff)})
	}
	if a.pl.level != nil {
		detail := a.old.Log.Level + " → " + a.pl.cfg.Log.Level
		if a.n.opts.Level != nil {
			a.n.opts.Level.SetLevel(*a.pl.level)
		} else {
			detail += " (not applied: the node was not given its logger's level)"
		}
		a.change(Change{ChangeLogLevel, "log.level", detail})
	}
}

// parsed lists the new config's protocols.
func (a *applier) parsed() []parsedProtocol {
	out := make([]parsedProtocol, len(a.pl.protocols))
	for i, pp := range a.pl.protocols {
		out[i] = pp.p
	}
	return out
}

// commit records the new config as the running one.
func (a *applier) commit(running map[string]*runningProtocol) {
	n := a.n
	n.running = running
	n.protocols = make([]parsedProtocol, len(a.pl.protocols))
	for i, pp := range a.pl.protocols {
		n.protocols[i] = pp.p
	}
	n.current.Store(a.pl.cfg)
}

// tunNote qualifies address changes on a TUN the node did not create.
func (n *Node) tunNote() string {
	if n.ownTUN {
		return "on " + n.cfg.TUN.Name
	}
	return "recorded only: the node was given its device"
}

func resize(mb *mailbox.Mailbox, mc config.Mailbox) error {
	mb.SetCoDel(time.Duration(mc.Target), time.Duration(mc.Interval))
	mb.Resize(mc.Capacity, mc.Drop())
	return nil
}

// stopProtocol stops a protocol instance for good and waits for it: its
// transport closes and its queued batches drop as stopped.
func (n *Node) stopProtocol(rp *runningProtocol, fail func(error)) {
	if rp.target.PID == nil {
		return // it never spawned
	}
	if _, err := n.system.Root.RequestFuture(n.supervisor, &stage.StopProtocol{PID: rp.target.PID}, StopTimeout).Result(); err != nil {
		fail(fmt.Errorf("stop protocol %q: not stopped within %v", rp.parsed.cfg.Name, StopTimeout))
	}
}
