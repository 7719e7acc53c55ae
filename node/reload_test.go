package node

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"switchyard/config"
	"switchyard/packet/packettest"
	"switchyard/protocols/protocoltest"
)

// reloadProto is one udp instance of a reload test config: its peer is
// itself, so what it sends comes back to the injector.
type reloadProto struct {
	name    string
	port    int
	mailbox string // a `mailbox:` flow map, or ""
	prefix  string // its route
}

func reloadYAML(level, defMailbox string, ps ...reloadProto) string {
	var b strings.Builder
	fmt.Fprintf(&b, `node: {name: reload}
log: {level: %s}
tun: {name: sytest0, mtu: 1420, addresses: [10.90.0.1/24], install_routes: false}
batch: {max_packets: 128, pool_buffers: 1024}
mailbox: %s
supervision: {max_restarts: 3, within: 10s, backoff: 10ms}
routes:
  - {prefix: 10.66.0.0/16, action: reject}
`, level, defMailbox)
	for _, p := range ps {
		fmt.Fprintf(&b, "  - {prefix: %s, to: %s}\n", p.prefix, p.name)
	}
	b.WriteString("protocols:\n")
	for _, p := range ps {
		fmt.Fprintf(&b, "  - name: %s\n    type: udp\n", p.name)
		if p.mailbox != "" {
			fmt.Fprintf(&b, "    mailbox: %s\n", p.mailbox)
		}
		fmt.Fprintf(&b, "    settings: {listen: \"127.0.0.1:%d\", peer: \"127.0.0.1:%d\"}\n", p.port, p.port)
	}
	return b.String()
}

// deadLetterThrottle is protoactor's dead-letter log throttle: a goroutine
// started by the first dead letter (a batch the router sent to a protocol a
// reload had just stopped) that exits by itself after the throttle interval
// (1 s), whether or not the system still runs.
var deadLetterThrottle = goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1")

func mustParse(t *testing.T, file, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse(file, []byte(yaml))
	if err != nil {
		t.Fatalf("parse %s: %v\n%s", file, err, yaml)
	}
	return cfg
}

// loopThrough injects count packets to dst and waits until as many more
// packets than before have been written back to the device.
func loopThrough(t *testing.T, dev *packettest.Device, dst [4]byte, count int, tag string) {
	t.Helper()
	before := len(dev.Written())
	for i := 0; i < count; i++ {
		dev.Inject(packettest.IPv4([4]byte{10, 90, 0, 1}, dst, 100, []byte(fmt.Sprintf("%s-%04d", tag, i))))
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(dev.Written()) < before+count && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	got := dev.Written()[before:]
	if len(got) != count {
		t.Fatalf("%s: %d of %d packets to %v came back", tag, len(got), count, dst)
	}
	for i, p := range got {
		if want := fmt.Sprintf("%s-%04d", tag, i); !strings.Contains(string(p), want) {
			t.Fatalf("%s: packet %d lacks %q: out of order or lost", tag, i, want)
		}
	}
}

func changeKinds(res Result) map[string][]string {
	out := map[string][]string{}
	for _, c := range res.Changes {
		out[c.Kind] = append(out[c.Kind], c.Name)
	}
	return out
}

// checkInvariant checks in = out + dropped + queued for every actor, once
// the counters settle: a protocol counts Out after its send returns, which
// can be after the packet has looped back.
func checkInvariant(t *testing.T, n *Node) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		ok := true
		for _, a := range n.Stats().Actors {
			ok = ok && a.InPackets == a.OutPackets+a.DroppedTotal()+a.Queued()
		}
		if ok {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	for _, a := range n.Stats().Actors {
		if got, want := a.InPackets, a.OutPackets+a.DroppedTotal()+a.Queued(); got != want {
			t.Errorf("%s: in %d != out %d + dropped %d %v + queued %d", a.Name, a.InPackets, a.OutPackets, a.DroppedTotal(), a.Drops, a.Queued())
		}
	}
}

func listening(logs *observer.ObservedLogs, instance string) int {
	return logs.FilterMessage("udp listening").FilterField(zap.String("instance", instance)).Len()
}

func TestReload(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(), deadLetterThrottle)
	core, logs := observer.New(zapcore.DebugLevel)
	level := zap.NewAtomicLevelAt(zapcore.InfoLevel)
	pKeep, pGone, pFresh := freePort(t), freePort(t), freePort(t)
	var pFresh2 int // fresh's port after its settings change
	keep := reloadProto{"keep", pKeep, "{capacity: 64}", "10.90.0.0/24"}
	gone := reloadProto{"gone", pGone, "", "10.91.0.0/24"}
	fresh := reloadProto{"fresh", pFresh, "", "10.92.0.0/24"}
	const defMB = "{capacity: 256, policy: drop_newest}"

	dev := packettest.New(64)
	n, err := New(mustParse(t, "a.yaml", reloadYAML("info", defMB, keep, gone)), Options{Device: dev, Log: zap.New(core), Level: &level})
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

	loopThrough(t, dev, [4]byte{10, 90, 0, 2}, 50, "keep-before")
	loopThrough(t, dev, [4]byte{10, 91, 0, 2}, 20, "gone-before")
	noRoute := func() uint64 { return actorByName(n.Stats(), "router").Drops["no_route"] }
	dev.Inject(packettest.IPv4([4]byte{10, 90, 0, 1}, [4]byte{10, 92, 0, 2}, 60, nil))
	waitFor(t, "no_route for 10.92.0.2 before the reload", func() bool { return noRoute() == 1 })

	keepTarget := n.running["keep"].target
	keepPID := keepTarget.PID
	keepIn := actorByName(n.Stats(), "keep").InPackets
	routing := n.routing.Load()

	t.Run("add, remove, resize", func(t *testing.T) {
		res, err := n.Reload(mustParse(t, "b.yaml", reloadYAML("debug", defMB,
			reloadProto{"keep", pKeep, "{capacity: 128, policy: drop_oldest}", "10.90.0.0/24"}, fresh)))
		if err != nil || !res.Applied {
			t.Fatalf("Reload = %+v, %v; want applied", res, err)
		}
		kinds := changeKinds(res)
		for kind, want := range map[string]string{
			ChangeMailboxResized:  "keep",
			ChangeProtocolAdded:   "fresh",
			ChangeProtocolRemoved: "gone",
			ChangeRouteAdded:      "10.92.0.0/24",
			ChangeRouteRemoved:    "10.91.0.0/24",
			ChangeLogLevel:        "log.level",
		} {
			if got := strings.Join(kinds[kind], ","); got != want {
				t.Errorf("changes[%s] = %q, want %q (all: %v)", kind, got, want, res.Changes)
			}
		}
		if got := len(res.Changes); got != 6 {
			t.Errorf("%d changes, want 6: %v", got, res.Changes)
		}
		if len(res.Errors) != 0 {
			t.Errorf("errors: %v", res.Errors)
		}
		if level.Level() != zapcore.DebugLevel {
			t.Errorf("log level = %v, want debug", level.Level())
		}

		// The unchanged protocol: same target, same PID, same socket, no
		// restart, counters continue.
		if got := n.running["keep"].target; got != keepTarget || got.PID != keepPID {
			t.Errorf("keep's target or PID changed: %v → %v", keepPID, got.PID)
		}
		loopThrough(t, dev, [4]byte{10, 90, 0, 2}, 50, "keep-after")
		s := n.Stats()
		k := actorByName(s, "keep")
		if k.Restarts != 0 {
			t.Errorf("keep restarts = %d, want 0", k.Restarts)
		}
		if k.InPackets != keepIn+50 {
			t.Errorf("keep in_packets = %d, want %d (the counters continue)", k.InPackets, keepIn+50)
		}
		if k.Mailbox == nil || k.Mailbox.Capacity != 128 || k.Mailbox.Policy != "drop_oldest" {
			t.Errorf("keep mailbox = %+v, want 128 drop_oldest", k.Mailbox)
		}
		if got := listening(logs, "keep"); got != 1 {
			t.Errorf("keep bound its socket %d times, want 1 (never re-bound)", got)
		}

		// The added route and protocol work; the removed route does not.
		loopThrough(t, dev, [4]byte{10, 92, 0, 2}, 30, "fresh")
		waitFor(t, "fresh out_packets = 30", func() bool { return actorByName(n.Stats(), "fresh").OutPackets == 30 })
		before := noRoute()
		dev.Inject(packettest.IPv4([4]byte{10, 90, 0, 1}, [4]byte{10, 91, 0, 2}, 60, nil))
		waitFor(t, "no_route for 10.91.0.2 after the reload", func() bool { return noRoute() == before+1 })
		for _, a := range n.Stats().Actors {
			if a.Name == "gone" || a.Name == "gone.recv" {
				t.Errorf("the removed protocol's row %q is still in the stats", a.Name)
			}
		}
		if n.routing.Load() == routing {
			t.Error("the routing pointer was not swapped")
		}
		checkInvariant(t, n)
	})

	t.Run("refused", func(t *testing.T) {
		routing := n.routing.Load()
		cfg := n.Config()
		bad := strings.Replace(reloadYAML("info", defMB, reloadProto{"keep", 1, "", "10.90.0.0/24"}, fresh),
			"name: sytest0", "name: sytest1", 1)
		bad = strings.Replace(bad, `listen: "127.0.0.1:1"`, `listen: "127.0.0.1:99999"`, 1)
		res, err := n.Reload(mustParse(t, "bad.yaml", bad))
		if err == nil || res.Applied {
			t.Fatalf("Reload of a bad config = %+v, %v; want refused", res, err)
		}
		var ces config.Errors
		if !errors.As(err, &ces) {
			t.Errorf("error %T is not config.Errors", err)
		}
		joined := strings.Join(res.Errors, "\n")
		for _, want := range []string{
			"bad.yaml: tun.name: cannot change on reload (sytest0 → sytest1); restart the daemon",
			"bad.yaml:14:24: protocols[0].settings.listen:",
		} {
			if !strings.Contains(joined, want) {
				t.Errorf("errors lack %q:\n%s", want, joined)
			}
		}
		if len(res.Changes) != 0 {
			t.Errorf("a refused reload lists changes: %v", res.Changes)
		}
		if n.routing.Load() != routing || n.Config() != cfg {
			t.Error("a refused reload touched the routing or the config")
		}
		if level.Level() != zapcore.DebugLevel {
			t.Errorf("a refused reload changed the log level to %v", level.Level())
		}
		loopThrough(t, dev, [4]byte{10, 90, 0, 2}, 10, "keep-refused")
		loopThrough(t, dev, [4]byte{10, 92, 0, 2}, 10, "fresh-refused")
	})

	t.Run("settings change restarts; default mailbox resizes", func(t *testing.T) {
		freshPID := n.running["fresh"].target.PID
		pFresh2 = freePort(t)
		res, err := n.Reload(mustParse(t, "c.yaml", reloadYAML("debug", "{capacity: 300, policy: drop_newest}",
			reloadProto{"keep", pKeep, "{capacity: 128, policy: drop_oldest}", "10.90.0.0/24"},
			reloadProto{"fresh", pFresh2, "", "10.92.0.0/24"})))
		if err != nil || !res.Applied {
			t.Fatalf("Reload = %+v, %v; want applied", res, err)
		}
		kinds := changeKinds(res)
		if got := strings.Join(kinds[ChangeProtocolRestarted], ","); got != "fresh" {
			t.Errorf("restarted = %q, want fresh (all: %v)", got, res.Changes)
		}
		// fresh inherits the default mailbox: restarted with the new one;
		// keep has its own: untouched.
		if got := strings.Join(kinds[ChangeMailboxResized], ","); got != "router,injector" {
			t.Errorf("resized = %q, want router,injector (all: %v)", got, res.Changes)
		}
		if n.running["fresh"].target.PID == freshPID {
			t.Error("fresh kept its PID across a settings change")
		}
		if n.running["keep"].target.PID != keepPID {
			t.Error("keep's PID changed")
		}
		loopThrough(t, dev, [4]byte{10, 92, 0, 2}, 20, "fresh-restarted")
		s := n.Stats()
		for _, name := range []string{"router", "injector", "fresh"} {
			if m := actorByName(s, name).Mailbox; m == nil || m.Capacity != 300 {
				t.Errorf("%s mailbox = %+v, want capacity 300", name, m)
			}
		}
		if got := listening(logs, "fresh"); got != 2 {
			t.Errorf("fresh bound %d times, want 2 (added, then restarted)", got)
		}
		if got := listening(logs, "keep"); got != 1 {
			t.Errorf("keep bound its socket %d times, want 1", got)
		}
		waitFor(t, "fresh out_packets = 60 (its counters continue across a restart)", func() bool {
			return actorByName(n.Stats(), "fresh").OutPackets == 30+10+20
		})
	})

	t.Run("default mailbox resizes the protocols that inherit it", func(t *testing.T) {
		freshPID := n.running["fresh"].target.PID
		res, err := n.Reload(mustParse(t, "d.yaml", reloadYAML("debug", "{capacity: 40, policy: drop_oldest}",
			reloadProto{"keep", pKeep, "{capacity: 128, policy: drop_oldest}", "10.90.0.0/24"},
			reloadProto{"fresh", pFresh2, "", "10.92.0.0/24"})))
		if err != nil || !res.Applied {
			t.Fatalf("Reload = %+v, %v; want applied", res, err)
		}
		if got, want := strings.Join(changeKinds(res)[ChangeMailboxResized], ","), "fresh,router,injector"; got != want {
			t.Errorf("resized = %q, want %q (all: %v)", got, want, res.Changes)
		}
		if len(res.Changes) != 3 {
			t.Errorf("changes = %v, want the three resizes only", res.Changes)
		}
		if n.running["fresh"].target.PID != freshPID {
			t.Error("fresh was restarted for a mailbox change")
		}
		if m := actorByName(n.Stats(), "fresh").Mailbox; m == nil || m.Capacity != 40 || m.Policy != "drop_oldest" {
			t.Errorf("fresh mailbox = %+v, want 40 drop_oldest", m)
		}
		loopThrough(t, dev, [4]byte{10, 92, 0, 2}, 10, "fresh-resized")
	})

	t.Run("same config changes nothing", func(t *testing.T) {
		res, err := n.Reload(n.Config())
		if err != nil || !res.Applied || len(res.Changes) != 0 {
			t.Fatalf("Reload of the running config = %+v, %v; want applied with no changes", res, err)
		}
		if n.running["keep"].target.PID != keepPID {
			t.Error("keep's PID changed")
		}
	})

	n.Stop()
	stopped = true
	checkInvariant(t, n)
	if _, err := n.Reload(n.Config()); err == nil {
		t.Error("Reload after Stop was accepted")
	}
	if err := n.Pool().CheckLeaks(); err != nil {
		t.Error(err)
	}
}

// TestReloadUnderTrafficAndStop reloads back and forth while packets flow,
// then stops the node in the middle of a reload: every packet is accounted
// for, nothing leaks, nothing races.
func TestReloadUnderTrafficAndStop(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(), deadLetterThrottle)
	pA, pB := freePort(t), freePort(t)
	const defMB = "{capacity: 64, policy: drop_newest}"
	cfgs := []*config.Config{
		mustParse(t, "one.yaml", reloadYAML("info", defMB,
			reloadProto{"a", pA, "{capacity: 8}", "10.90.0.0/24"})),
		mustParse(t, "two.yaml", reloadYAML("info", defMB,
			reloadProto{"a", pA, "{capacity: 2, policy: drop_oldest}", "10.90.0.0/24"},
			reloadProto{"b", pB, "", "10.92.0.0/24"})),
	}
	dev := packettest.New(16)
	n, err := New(cfgs[0], Options{Device: dev})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // traffic to both prefixes
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			dst := [4]byte{10, 90, 0, 2}
			if i%2 == 1 {
				dst = [4]byte{10, 92, 0, 2}
			}
			dev.Inject(packettest.IPv4([4]byte{10, 90, 0, 1}, dst, 200, nil))
			if i%16 == 0 {
				time.Sleep(100 * time.Microsecond)
			}
		}
	}()
	for i := 0; i < 10; i++ {
		if res, err := n.Reload(cfgs[(i+1)%2]); err != nil || !res.Applied {
			t.Fatalf("reload %d: %+v, %v", i, res, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := n.running["a"].target.PID; got == nil {
		t.Fatal("a has no PID")
	}
	// Stop while a reload is (probably) in progress.
	reloaded := make(chan error, 1)
	go func() {
		_, err := n.Reload(cfgs[1])
		reloaded <- err
	}()
	time.Sleep(time.Millisecond)
	close(stop)
	wg.Wait()
	n.Stop()
	<-reloaded // applied before Stop, or refused after it: either is fine

	checkInvariant(t, n)
	if a := actorByName(n.Stats(), "a"); a.Restarts != 0 {
		t.Errorf("a restarted %d times, want 0 (only its mailbox changed)", a.Restarts)
	}
	if err := n.Pool().CheckLeaks(); err != nil {
		t.Error(err)
	}
}

func TestReloadNotStarted(t *testing.T) {
	n, err := New(loopConfig(t, freePort(t)), Options{Device: packettest.New(1)})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := n.Reload(n.Config()); err == nil || res.Applied {
		t.Fatalf("Reload before Start = %+v, %v; want refused", res, err)
	}
}

func TestRefused(t *testing.T) {
	_, err := config.Parse("x.yaml", []byte("routes: [{prefix: 10.0.0.0/33, to: p}]\nprotocols: []\n"))
	if err == nil {
		t.Fatal("a bad prefix parsed")
	}
	res := Refused("x.yaml", err)
	if res.Applied || len(res.Errors) == 0 || !strings.HasPrefix(res.Errors[0], "x.yaml:1:") {
		t.Fatalf("Refused = %+v, want not applied with file:line:col errors", res)
	}
}

func TestRouteChanges(t *testing.T) {
	r := func(prefix, to, action string) config.Route {
		return config.Route{Prefix: netip.MustParsePrefix(prefix), To: to, Action: action}
	}
	old := []config.Route{r("10.0.0.0/8", "a", ""), r("10.1.0.0/16", "", "drop"), r("10.2.0.0/16", "b", "")}
	cur := []config.Route{r("10.0.0.0/8", "a", ""), r("10.1.0.0/16", "b", ""), r("10.3.0.0/16", "", "reject")}
	got := routeChanges(old, cur)
	want := []Change{
		{ChangeRouteChanged, "10.1.0.0/16", "drop → to b"},
		{ChangeRouteAdded, "10.3.0.0/16", "reject"},
		{ChangeRouteRemoved, "10.2.0.0/16", "was to b"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("routeChanges = %v, want %v", got, want)
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestReloadDuringRestartBackoff: a protocol that failed is waiting out its
// restart backoff when a reload replaces it; the pending restart must not
// hit its successor, which has the same PID.
func TestReloadDuringRestartBackoff(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(), deadLetterThrottle)
	core, logs := observer.New(zapcore.InfoLevel)
	yaml := func(port int) string {
		return fmt.Sprintf(`
node: {name: backoff}
tun: {name: sytest0, mtu: 1420, addresses: [10.90.0.1/24], install_routes: false}
batch: {max_packets: 128, pool_buffers: 1024}
supervision: {max_restarts: 5, within: 10s, backoff: 300ms}
routes: [{prefix: 10.90.0.0/24, to: p}]
protocols:
  - name: p
    type: panicky
    settings: {listen: "127.0.0.1:%d", peer: "127.0.0.1:%d"}
`, port, port)
	}
	dev := packettest.New(8)
	n, err := New(mustParse(t, "p1.yaml", yaml(freePort(t))), Options{Device: dev, Log: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	dev.Inject(packettest.IPv4([4]byte{10, 90, 0, 1}, [4]byte{10, 90, 0, 2}, 100, []byte(protocoltest.DefaultMarker)))
	waitFor(t, "the panic to be counted", func() bool { return actorByName(n.Stats(), "p").Restarts == 1 })

	res, err := n.Reload(mustParse(t, "p2.yaml", yaml(freePort(t))))
	if err != nil || changeKinds(res)[ChangeProtocolRestarted] == nil {
		t.Fatalf("Reload = %+v, %v; want p restarted", res, err)
	}
	time.Sleep(600 * time.Millisecond) // past the backoff of the old instance
	if got := listening(logs, "p"); got != 2 {
		t.Errorf("p bound its socket %d times, want 2 (start, reload); the old backoff restarted the new instance", got)
	}
	if s := actorByName(n.Stats(), "p"); s.Restarts != 1 || s.State != "running" {
		t.Errorf("p: restarts %d state %s, want 1 running", s.Restarts, s.State)
	}
	loopThrough(t, dev, [4]byte{10, 90, 0, 2}, 10, "after")
}
