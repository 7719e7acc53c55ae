package node

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"switchyard/config"
	"switchyard/packet"
	"switchyard/packet/packettest"
	"switchyard/protocols"
)

// sessiontest is a protocol for the session tests: it opens nothing, keeps
// its latest incarnation's Env where the test can report sessions through
// it, and panics on a batch that carries "PANIC".
type sessSettings struct{ Endpoint netip.AddrPort }

func (s sessSettings) Endpoints() []netip.AddrPort {
	if s.Endpoint.IsValid() {
		return []netip.AddrPort{s.Endpoint}
	}
	return nil
}
func (s sessSettings) ListenPorts() []uint16 { return nil }

var sessEnvs sync.Map // instance name → protocols.Env of its latest incarnation

func init() {
	protocols.Register(protocols.Info{
		Name: "sessiontest",
		Parse: func(s config.Settings) (any, error) {
			var raw struct {
				Endpoint string `yaml:"endpoint"`
			}
			if err := s.Decode(&raw); err != nil {
				return nil, err
			}
			var set sessSettings
			if raw.Endpoint != "" {
				ap, err := netip.ParseAddrPort(raw.Endpoint)
				if err != nil {
					return nil, s.Errorf("endpoint", "%v", err)
				}
				set.Endpoint = ap
			}
			return set, nil
		},
		New: func(inst protocols.Instance) actor.Actor { return &sessActor{inst: inst} },
	})
}

type sessActor struct{ inst protocols.Instance }

func (a *sessActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		sessEnvs.Store(a.inst.Name, a.inst.Env)
	case *packet.Batch:
		for i := range m.Len() {
			if bytes.Contains(m.Packet(i), []byte("PANIC")) {
				panic("sessiontest: PANIC")
			}
		}
		m.Release()
	}
}

// fakeTUN records what the node adds and removes, and fails what it was
// told to; removing what is not there is an error the test reports.
type fakeTUN struct {
	mu      sync.Mutex
	addrs   map[netip.Prefix]bool
	routes  map[netip.Prefix]netip.Addr // → preferred source
	failAdd map[netip.Prefix]bool
	errs    []string
}

func newFakeTUN() *fakeTUN {
	return &fakeTUN{addrs: map[netip.Prefix]bool{}, routes: map[netip.Prefix]netip.Addr{}, failAdd: map[netip.Prefix]bool{}}
}

func (f *fakeTUN) device() string { return "fake0" }
func (f *fakeTUN) up() error      { return nil }
func (f *fakeTUN) close() error   { return nil }
func (f *fakeTUN) addAddress(p netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.addrs[p] {
		f.errs = append(f.errs, "address added twice: "+p.String())
	}
	f.addrs[p] = true
	return nil
}
func (f *fakeTUN) delAddress(p netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.addrs[p] {
		f.errs = append(f.errs, "removed an address it never added: "+p.String())
	}
	delete(f.addrs, p)
	return nil
}
func (f *fakeTUN) addRoute(p netip.Prefix, src netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failAdd[p] {
		return fmt.Errorf("install route %s: a route to %s exists already", p, p)
	}
	if _, ok := f.routes[p]; ok {
		f.errs = append(f.errs, "route added twice: "+p.String())
	}
	f.routes[p] = src
	return nil
}
func (f *fakeTUN) delRoute(p netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.routes[p]; !ok {
		f.errs = append(f.errs, "removed a route it never added: "+p.String())
	}
	delete(f.routes, p)
	return nil
}

// state is the fake's addresses and routes, sorted, as strings.
func (f *fakeTUN) state() (addrs, routes []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for p := range f.addrs {
		addrs = append(addrs, p.String())
	}
	for p, src := range f.routes {
		routes = append(routes, p.String()+" src "+src.String())
	}
	sort.Strings(addrs)
	sort.Strings(routes)
	return addrs, routes
}

func sessYAML(extraRoutes string, names ...string) string {
	var b strings.Builder
	b.WriteString(`node: {name: sessions}
tun: {name: sytest0, mtu: 1420, addresses: [10.90.0.1/24], install_routes: true}
batch: {max_packets: 128, pool_buffers: 256}
supervision: {max_restarts: 5, within: 10s, backoff: 10ms}
routes:
  - {prefix: 10.66.0.0/16, action: reject}
  - {prefix: 10.90.0.0/24, to: a}
`)
	b.WriteString(extraRoutes)
	b.WriteString("protocols:\n")
	for _, n := range names {
		fmt.Fprintf(&b, "  - {name: %s, type: sessiontest, settings: {endpoint: \"203.0.113.5:443\"}}\n", n)
	}
	return b.String()
}

func pfx(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// report reports s through the latest incarnation of name, and waits until
// the node applied it (check says so).
func report(t *testing.T, n *Node, name string, s protocols.Session, check func([]SessionInfo) bool) {
	t.Helper()
	env, ok := sessEnvs.Load(name)
	if !ok {
		t.Fatalf("%s has not started", name)
	}
	env.(protocols.Env).ReportSession(s)
	waitFor(t, fmt.Sprintf("%s's session %v to apply", name, s), func() bool { return check(n.Sessions()) })
}

func sessionOf(ss []SessionInfo, name string) (SessionInfo, bool) {
	for _, s := range ss {
		if s.Instance == name {
			return s, true
		}
	}
	return SessionInfo{}, false
}

// routedTo returns the instance the router's table sends dst to, or the
// action ("no route", "reject").
func routedTo(n *Node, dst string) string {
	r := n.routing.Load()
	route, ok := r.Table.Lookup(netip.MustParseAddr(dst))
	switch {
	case !ok:
		return "no route"
	case route.Action.String() != "forward":
		return route.Action.String()
	}
	return r.Targets[route.Target].Name
}

// TestSessionBookkeeping follows two instances' sessions through reports,
// refusals, a reload, a restart, a removal and Stop, with a fake TUN: what
// the node adds it removes, exactly, and it never removes anything else.
func TestSessionBookkeeping(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(), deadLetterThrottle)
	// Every endpoint follows a default route now: a session route that
	// contains one captures it.
	saved := lookupRoute
	lookupRoute = func(netip.Addr) (underlayMatch, error) {
		return underlayMatch{prefix: netip.MustParsePrefix("0.0.0.0/0"), desc: "default via 10.91.0.2 dev eth0"}, nil
	}
	defer func() { lookupRoute = saved }()

	sessEnvs.Clear()
	dev := packettest.New(8)
	n, err := New(mustParse(t, "s1.yaml", sessYAML("", "a", "b")), Options{Device: dev, Log: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			n.Stop()
		}
	}()
	fake := newFakeTUN()
	n.mu.Lock()
	n.tunctl, n.ownTUN = fake, true // as if the node had created it
	n.mu.Unlock()
	wantFake := func(step string, addrs, routes []string) {
		t.Helper()
		gotA, gotR := fake.state()
		if !slices.Equal(gotA, addrs) || !slices.Equal(gotR, routes) {
			t.Errorf("%s: TUN has addresses %v routes %v, want %v %v", step, gotA, gotR, addrs, routes)
		}
		if len(fake.errs) > 0 {
			t.Errorf("%s: %v", step, fake.errs)
		}
	}
	waitFor(t, "a and b to start", func() bool {
		_, a := sessEnvs.Load("a")
		_, b := sessEnvs.Load("b")
		return a && b
	})

	// a: an address (and the config's own, which is not a's to add), a
	// route, a route the config has (refused), a route that captures the
	// endpoint (refused), and a route the kernel refuses.
	fake.failAdd[netip.MustParsePrefix("172.16.0.0/12")] = true
	report(t, n, "a", protocols.Session{
		Addrs:  pfx("192.168.99.2/24", "10.90.0.1/24"),
		Routes: pfx("10.77.0.0/16", "10.66.0.0/16", "203.0.113.0/24", "172.16.0.0/12"),
	}, func(ss []SessionInfo) bool { _, ok := sessionOf(ss, "a"); return ok })
	wantFake("a up", []string{"192.168.99.2/24"}, []string{"10.77.0.0/16 src 192.168.99.2"})
	for dst, want := range map[string]string{
		"10.77.1.1": "a", "192.168.99.7": "a", "10.66.0.1": "reject", "203.0.113.5": "no route", "172.16.1.1": "no route",
	} {
		if got := routedTo(n, dst); got != want {
			t.Errorf("a up: %s routed to %s, want %s", dst, got, want)
		}
	}
	sa, _ := sessionOf(n.Sessions(), "a")
	if len(sa.Refused) != 3 || !strings.Contains(sa.Refused["203.0.113.0/24"], "captures") {
		t.Errorf("a's refusals: %v, want 10.66.0.0/16, 172.16.0.0/12 and 203.0.113.0/24 (captures the endpoint)", sa.Refused)
	}
	if row := actorByName(n.Stats(), "sessions"); row.Drops[SessionRefused.String()] != 3 || row.InPackets != 6 || row.OutPackets != 3 {
		t.Errorf("sessions row: %+v, want in 6 out 3 refused 3", row)
	}
	if got := n.Stats().Sessions; len(got) != 1 || got[0].Instance != "a" {
		t.Errorf("/stats sessions: %v", got)
	}

	// b: another address in a's subnet (routed by a already: skipped), and
	// a's route (refused).
	report(t, n, "b", protocols.Session{Addrs: pfx("192.168.99.3/24"), Routes: pfx("10.77.0.0/16", "10.88.0.0/16")},
		func(ss []SessionInfo) bool { _, ok := sessionOf(ss, "b"); return ok })
	wantFake("b up", []string{"192.168.99.2/24", "192.168.99.3/24"},
		[]string{"10.77.0.0/16 src 192.168.99.2", "10.88.0.0/16 src 192.168.99.3"})
	if got := routedTo(n, "10.77.0.1"); got != "a" {
		t.Errorf("b up: 10.77.0.1 routed to %s, want a (first)", got)
	}
	if got := routedTo(n, "10.88.0.1"); got != "b" {
		t.Errorf("b up: 10.88.0.1 routed to %s, want b", got)
	}
	// b's peer assigns another address: its kernel route follows it.
	report(t, n, "b", protocols.Session{Addrs: pfx("192.168.99.6/24"), Routes: pfx("10.77.0.0/16", "10.88.0.0/16")},
		func(ss []SessionInfo) bool {
			s, _ := sessionOf(ss, "b")
			return len(s.Addresses) == 1 && s.Addresses[0] == netip.MustParsePrefix("192.168.99.6/24")
		})
	wantFake("b moved", []string{"192.168.99.2/24", "192.168.99.6/24"},
		[]string{"10.77.0.0/16 src 192.168.99.2", "10.88.0.0/16 src 192.168.99.6"})

	// A reload that changes nothing of theirs: the sessions' routes survive
	// the new table. Then one whose config routes a's 10.77.0.0/16 itself:
	// the config wins, a's kernel route makes way for the config's.
	if _, err := n.Reload(mustParse(t, "s2.yaml", sessYAML("  - {prefix: 10.55.0.0/16, action: drop}\n", "a", "b"))); err != nil {
		t.Fatal(err)
	}
	for dst, want := range map[string]string{"10.77.1.1": "a", "192.168.99.7": "a", "10.88.0.1": "b", "10.55.0.1": "drop"} {
		if got := routedTo(n, dst); got != want {
			t.Errorf("after reload: %s routed to %s, want %s", dst, got, want)
		}
	}
	res, err := n.Reload(mustParse(t, "s3.yaml", sessYAML("  - {prefix: 10.77.0.0/16, to: b}\n", "a", "b")))
	if err != nil || len(res.Errors) > 0 {
		t.Fatalf("reload: %v %v", err, res.Errors)
	}
	if got := routedTo(n, "10.77.1.1"); got != "b" {
		t.Errorf("config route: 10.77.1.1 routed to %s, want b (the config's)", got)
	}
	wantFake("config route", []string{"192.168.99.2/24", "192.168.99.6/24"}, []string{
		"10.66.0.0/16 src invalid IP", "10.77.0.0/16 src invalid IP", "10.88.0.0/16 src 192.168.99.6"})

	// The zero session: a's address goes, and nothing else of a's was there.
	report(t, n, "a", protocols.Session{}, func(ss []SessionInfo) bool { _, ok := sessionOf(ss, "a"); return !ok })
	wantFake("a down", []string{"192.168.99.6/24"}, []string{
		"10.66.0.0/16 src invalid IP", "10.77.0.0/16 src invalid IP", "10.88.0.0/16 src 192.168.99.6"})
	if got := routedTo(n, "192.168.99.7"); got != "no route" {
		t.Errorf("a down: 192.168.99.7 routed to %s, want no route", got)
	}

	// a again, then its supervisor restarts it: the new incarnation starts
	// without the session.
	report(t, n, "a", protocols.Session{Addrs: pfx("192.168.99.4/24"), Routes: pfx("10.44.0.0/16")},
		func(ss []SessionInfo) bool { _, ok := sessionOf(ss, "a"); return ok })
	old, _ := sessEnvs.Load("a")
	dev.Inject(packettest.IPv4([4]byte{10, 90, 0, 1}, [4]byte{10, 90, 0, 9}, 100, []byte("PANIC")))
	waitFor(t, "a's restart to clear its session", func() bool {
		_, ok := sessionOf(n.Sessions(), "a")
		return !ok && actorByName(n.Stats(), "a").Restarts == 1
	})
	// The old incarnation's reports are ignored.
	old.(protocols.Env).ReportSession(protocols.Session{Addrs: pfx("192.168.99.5/24")})
	time.Sleep(50 * time.Millisecond)
	if _, ok := sessionOf(n.Sessions(), "a"); ok {
		t.Errorf("a report of a's previous incarnation was applied")
	}
	wantFake("a restarted", []string{"192.168.99.6/24"}, []string{
		"10.66.0.0/16 src invalid IP", "10.77.0.0/16 src invalid IP", "10.88.0.0/16 src 192.168.99.6"})

	// A reload that removes b: its session goes with it (and the config's
	// route to b with the config).
	if _, err := n.Reload(mustParse(t, "s4.yaml", sessYAML("", "a"))); err != nil {
		t.Fatal(err)
	}
	if _, ok := sessionOf(n.Sessions(), "b"); ok {
		t.Errorf("b removed: its session remains")
	}
	wantFake("b removed", nil, []string{"10.66.0.0/16 src invalid IP"})

	// Stop removes what a new session of a added.
	report(t, n, "a", protocols.Session{Addrs: pfx("fd99::2/64"), Routes: pfx("fd77::/48")},
		func(ss []SessionInfo) bool { _, ok := sessionOf(ss, "a"); return ok })
	wantFake("a v6", []string{"fd99::2/64"}, []string{"10.66.0.0/16 src invalid IP", "fd77::/48 src fd99::2"})
	n.Stop()
	stopped = true
	// The config's kernel routes go with the device, not on Stop.
	wantFake("stopped", nil, []string{"10.66.0.0/16 src invalid IP"})
	if got := n.Sessions(); len(got) != 0 {
		t.Errorf("after Stop: sessions %v", got)
	}
}

// TestSessionTruncated: a report past the bounds keeps the first
// MaxSessionAddrs and MaxSessionRoutes and counts the rest.
func TestSessionTruncated(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(), deadLetterThrottle)
	sessEnvs.Clear()
	dev := packettest.New(8)
	n, err := New(mustParse(t, "t.yaml", strings.Replace(sessYAML("", "a"), "install_routes: true", "install_routes: false", 1)),
		Options{Device: dev, Log: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	waitFor(t, "a to start", func() bool { _, ok := sessEnvs.Load("a"); return ok })
	var s protocols.Session
	for i := range MaxSessionRoutes + 5 {
		s.Routes = append(s.Routes, netip.PrefixFrom(netip.AddrFrom4([4]byte{100, byte(i >> 8), byte(i), 0}), 24))
	}
	for i := range MaxSessionAddrs + 2 {
		s.Addrs = append(s.Addrs, netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 168, byte(i), 2}), 32))
	}
	report(t, n, "a", s, func(ss []SessionInfo) bool { _, ok := sessionOf(ss, "a"); return ok })
	si, _ := sessionOf(n.Sessions(), "a")
	if len(si.Addresses) != MaxSessionAddrs || len(si.Routes) != MaxSessionRoutes {
		t.Errorf("kept %d addresses %d routes, want %d %d", len(si.Addresses), len(si.Routes), MaxSessionAddrs, MaxSessionRoutes)
	}
	if got := actorByName(n.Stats(), "sessions").Drops[SessionTruncated.String()]; got != 7 {
		t.Errorf("session_truncated %d, want 7", got)
	}
}
