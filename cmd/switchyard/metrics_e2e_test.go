package main

// Namespace tests of the operator's views: GET /metrics scraped during and
// after real traffic and checked against `switchyard stats --json` and what
// the test sent, and `switchyard top` run in a real terminal (tmux).

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"reflect"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/vishvananda/netns"

	"switchyard/internal/lab"
	"switchyard/node"
	"switchyard/stats"
)

// Parameters of the metrics and top tests.
const (
	// metricsPings (20 pings, 4 s at 0.2 s) are the echo requests the
	// metrics test counts a→b.
	metricsPings = 20

	// metricsTransferBytes (48 MiB) is the TCP transfer the metrics test
	// scrapes during: long enough (≥ 0.5 s even at 1 Gbit/s) for scrapes
	// in the middle of it.
	metricsTransferBytes = 48 << 20

	// topSettle (2.5 s) is how long top runs before the pane is read: two
	// refreshes at its 1 s interval, so the rates are there.
	topSettle = 2500 * time.Millisecond

	// topExitTimeout (3 s) bounds top's exit after q.
	topExitTimeout = 3 * time.Second
)

// scrapeMetrics fetches GET /metrics from the admin endpoint inside side's
// namespace (the socket is made there) and returns its series as
// "name{k=v,…}" → value (see metricSeries).
func scrapeMetrics(t *testing.T, side *lab.Side) (map[string]float64, string) {
	t.Helper()
	c := http.Client{
		Timeout:   statsTimeout,
		Transport: &http.Transport{DialContext: dialInNetns(side.NS), DisableKeepAlives: true},
	}
	resp, err := c.Get("http://" + side.Admin + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics in %s: %v", side.NS, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics in %s: %s %v", side.NS, resp.Status, err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("GET /metrics: Content-Type %q, want text/plain (the exposition format)", ct)
	}
	mfs, err := new(expfmt.TextParser).TextToMetricFamilies(strings.NewReader(string(b)))
	if err != nil {
		t.Fatalf("parse /metrics of %s: %v", side.NS, err)
	}
	return metricSeries(mfs), string(b)
}

// dialInNetns returns a dialer whose sockets are created in network
// namespace ns: the dialing goroutine's thread switches to ns and back.
func dialInNetns(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		orig, err := netns.Get()
		if err != nil {
			return nil, err
		}
		defer orig.Close()
		target, err := netns.GetFromName(ns)
		if err != nil {
			return nil, fmt.Errorf("namespace %s: %w", ns, err)
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			return nil, err
		}
		defer func() { _ = netns.Set(orig) }() // before the thread is unlocked
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
}

// metricSeries flattens metric families into "name{k=v,…}" → value with
// the labels sorted; a histogram gives name_count and name_sum.
func metricSeries(mfs map[string]*dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			key := func(n string) string { return n + "{" + strings.Join(sortedCopy(labels), ",") + "}" }
			switch {
			case m.Counter != nil:
				out[key(name)] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[key(name)] = m.GetGauge().GetValue()
			case m.Untyped != nil:
				out[key(name)] = m.GetUntyped().GetValue()
			case m.Histogram != nil:
				out[key(name+"_count")] = float64(m.GetHistogram().GetSampleCount())
				out[key(name+"_sum")] = m.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}

func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	sort.Strings(c)
	return c
}

// metricKey is the metricSeries key of name with label pairs k, v, ….
func metricKey(name string, kv ...string) string {
	var labels []string
	for i := 0; i+1 < len(kv); i += 2 {
		labels = append(labels, kv[i]+"="+kv[i+1])
	}
	return name + "{" + strings.Join(sortedCopy(labels), ",") + "}"
}

// actorCounters lists, for an actor of a stats snapshot, every series of
// /metrics that must equal a /stats number once traffic has stopped.
func actorCounters(a stats.Row) map[string]uint64 {
	m := map[string]uint64{
		metricKey("switchyard_packets_total", "actor", a.Name, "direction", "in"):  a.InPackets,
		metricKey("switchyard_packets_total", "actor", a.Name, "direction", "out"): a.OutPackets,
		metricKey("switchyard_bytes_total", "actor", a.Name, "direction", "in"):    a.InBytes,
		metricKey("switchyard_bytes_total", "actor", a.Name, "direction", "out"):   a.OutBytes,
		metricKey("switchyard_batches_total", "actor", a.Name, "direction", "in"):  a.InBatches,
		metricKey("switchyard_batches_total", "actor", a.Name, "direction", "out"): a.OutBatches,
		metricKey("switchyard_restarts_total", "actor", a.Name):                    a.Restarts,
		metricKey("switchyard_batch_packets_count", "actor", a.Name):               a.InBatches,
		metricKey("switchyard_batch_packets_sum", "actor", a.Name):                 a.InPackets,
	}
	for _, r := range stats.Reasons() {
		m[metricKey("switchyard_drops_total", "actor", a.Name, "reason", r.String())] = a.Drops[r.String()]
	}
	if mb := a.Mailbox; mb != nil {
		m[metricKey("switchyard_mailbox_depth", "actor", a.Name)] = uint64(mb.DepthBatches)
		m[metricKey("switchyard_mailbox_depth_packets", "actor", a.Name)] = uint64(mb.DepthPackets)
		m[metricKey("switchyard_mailbox_high_water", "actor", a.Name)] = uint64(mb.HighWaterBatches)
		m[metricKey("switchyard_mailbox_capacity", "actor", a.Name)] = uint64(mb.Capacity)
	}
	return m
}

// stableScrape scrapes d's metrics between two equal `stats --json`
// snapshots (a stray packet, such as an IPv6 router solicitation, can move
// the counters of an idle daemon; then it tries again) and returns the
// snapshot and the scrape.
func stableScrape(t *testing.T, ctx context.Context, d *lab.Daemon) (node.Snapshot, map[string]float64, string) {
	t.Helper()
	for range 5 {
		before := snapshot(t, ctx, d)
		got, text := scrapeMetrics(t, d.Side)
		after := snapshot(t, ctx, d)
		if reflect.DeepEqual(countersOf(before), countersOf(after)) {
			return after, got, text
		}
		time.Sleep(lab.PollInterval)
	}
	t.Fatalf("%s: the counters kept moving; no stable scrape", d.Side.NS)
	return node.Snapshot{}, nil, ""
}

// countersOf is every /metrics-comparable number of a snapshot.
func countersOf(s node.Snapshot) map[string]uint64 {
	out := map[string]uint64{}
	for _, a := range s.Actors {
		for k, v := range actorCounters(a) {
			out[k] = v
		}
	}
	return out
}

// TestMetrics scrapes /metrics during a ping run and a TCP transfer through
// the tunnel, and after; it checks the counters against `switchyard stats
// --json` (between two stats calls during traffic, equal after) and against
// what the test sent.
func TestMetrics(t *testing.T) {
	l, ctx := newLab(t)
	da := startDaemon(t, ctx, l, l.A, l.DefaultConfig(l.A))
	db := startDaemon(t, ctx, l, l.B, l.DefaultConfig(l.B))
	mustPing(t, ctx, l, l.A, l.B.TUN4)

	// Traffic: pings and a TCP transfer a→b, at the same time.
	type pingDone struct {
		r   lab.PingResult
		err error
	}
	pings := make(chan pingDone, 1)
	go func() {
		r, err := l.Ping(ctx, l.A, l.B.TUN4, metricsPings)
		pings <- pingDone{r, err}
	}()
	transfer := make(chan error, 1)
	var tr lab.Transfer
	go func() {
		var err error
		tr, err = l.TCPTransfer(ctx, l.A, l.B, e2eTCPPort, metricsTransferBytes, 0)
		transfer <- err
	}()

	// During traffic: stats ≤ metrics ≤ stats, and the counters grow
	// between scrapes.
	t.Run("during traffic", func(t *testing.T) {
		var prevCapture float64
		for i := range 3 {
			time.Sleep(300 * time.Millisecond)
			before := snapshot(t, ctx, da)
			got, _ := scrapeMetrics(t, l.A)
			after := snapshot(t, ctx, da)
			for _, name := range []string{"capture", "router", "peer", "peer.recv", "injector"} {
				lo, hi := actor(t, before, name), actor(t, after, name)
				for _, dir := range []struct {
					dir    string
					lo, hi uint64
				}{{"in", lo.InPackets, hi.InPackets}, {"out", lo.OutPackets, hi.OutPackets}} {
					k := metricKey("switchyard_packets_total", "actor", name, "direction", dir.dir)
					v, ok := got[k]
					if !ok || v < float64(dir.lo) || v > float64(dir.hi) {
						t.Errorf("scrape %d: %s = %v (present %v), want between the stats before (%d) and after (%d)",
							i, k, v, ok, dir.lo, dir.hi)
					}
				}
			}
			c := got[metricKey("switchyard_packets_total", "actor", "capture", "direction", "in")]
			if c < prevCapture {
				t.Errorf("scrape %d: capture packets in went down: %v after %v", i, c, prevCapture)
			}
			prevCapture = c
		}
	})

	p := <-pings
	if err := <-transfer; err != nil {
		t.Fatalf("TCP transfer: %v", err)
	}
	if p.err != nil {
		t.Fatalf("ping: %v", p.err)
	}
	if !tr.Match() || tr.Received.Bytes != metricsTransferBytes {
		t.Fatalf("TCP a→b: received %d bytes (sha256 match %v), want %d", tr.Received.Bytes, tr.Match(), metricsTransferBytes)
	}
	if p.r.Received != metricsPings {
		t.Fatalf("ping: %d/%d replies, want all", p.r.Received, p.r.Transmitted)
	}
	// One reject, for an exact drop count.
	if _, err := l.Ping(ctx, l.A, lab.RejectAddr4, 1); err != nil {
		t.Fatal(err)
	}

	t.Run("after traffic", func(t *testing.T) {
		for _, d := range []*lab.Daemon{da, db} {
			checkAccounting(t, ctx, d)
			s, got, text := stableScrape(t, ctx, d)
			for _, a := range s.Actors {
				for k, want := range actorCounters(a) {
					if v, ok := got[k]; !ok || v != float64(want) {
						t.Errorf("%s: %s = %v (present %v), switchyard stats --json says %d", d.Side.NS, k, v, ok, want)
					}
				}
				up := got[metricKey("switchyard_actor_up", "actor", a.Name)]
				if want := a.State == "running"; (up == 1) != want {
					t.Errorf("%s: actor_up{%s} = %v, state %s", d.Side.NS, a.Name, up, a.State)
				}
			}
			for _, k := range []string{
				metricKey("switchyard_pool_buffers", "state", "limit"),
				metricKey("switchyard_pool_buffers", "state", "in_use"),
			} {
				if _, ok := got[k]; !ok {
					t.Errorf("%s: no %s", d.Side.NS, k)
				}
			}
			for _, family := range []string{"switchyard_build_info", "go_goroutines", "process_resident_memory_bytes"} {
				if !strings.Contains(text, "\n"+family) {
					t.Errorf("%s: /metrics lacks %s", d.Side.NS, family)
				}
			}
		}
	})

	t.Run("against what was sent", func(t *testing.T) {
		ma, _ := scrapeMetrics(t, l.A)
		mb, _ := scrapeMetrics(t, l.B)
		pkts := func(m map[string]float64, actor, dir string) float64 {
			return m[metricKey("switchyard_packets_total", "actor", actor, "direction", dir)]
		}
		byts := func(m map[string]float64, actor, dir string) float64 {
			return m[metricKey("switchyard_bytes_total", "actor", actor, "direction", dir)]
		}
		// Every echo request went a→b through a's capture and b's injector;
		// every reply came back through a's peer.recv.
		checks := []struct {
			name       string
			got, least float64
		}{
			{"a capture packets in ≥ pings sent", pkts(ma, "capture", "in"), metricsPings},
			{"a peer packets out ≥ pings sent", pkts(ma, "peer", "out"), metricsPings},
			{"b injector packets out ≥ pings sent", pkts(mb, "injector", "out"), metricsPings},
			{"a peer.recv packets in ≥ replies", pkts(ma, "peer.recv", "in"), float64(p.r.Received)},
			// The TCP payload, headers not counted, is a lower bound on the bytes.
			{"a capture bytes in ≥ TCP bytes sent", byts(ma, "capture", "in"), metricsTransferBytes},
			{"a peer bytes out ≥ TCP bytes sent", byts(ma, "peer", "out"), metricsTransferBytes},
			{"b injector bytes out ≥ TCP bytes received", byts(mb, "injector", "out"), float64(tr.Received.Bytes)},
		}
		for _, c := range checks {
			if c.got < c.least {
				t.Errorf("%s: got %v, want ≥ %v", c.name, c.got, c.least)
			}
		}
		if got := ma[metricKey("switchyard_drops_total", "actor", "router", "reason", "rejected")]; got != 1 {
			t.Errorf("a router drops rejected = %v, want 1 (one ping to %s)", got, lab.RejectAddr4)
		}
		// The bulk transfer read full batches: some batches above 16 packets.
		if n, sum := ma[metricKey("switchyard_batch_packets_count", "actor", "router")], ma[metricKey("switchyard_batch_packets_sum", "actor", "router")]; n == 0 || sum/n <= 1 {
			t.Errorf("a router batches: %v batches of %v packets, want a mean above 1 packet per batch", n, sum)
		}
	})
}

// tmux runs tmux on its own server socket, so the test neither sees nor
// touches anyone else's sessions.
func tmux(ctx context.Context, socket string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "tmux", append([]string{"-L", socket}, args...)...).CombinedOutput()
	return string(out), err
}

// TestTopInTmux runs `switchyard top` in a real terminal (a detached tmux
// session of 200×50), reads the screen, checks the actor rows and rates,
// stops the daemon underneath it (top must stay up and say so), and quits
// with q.
func TestTopInTmux(t *testing.T) {
	needTool(t, "tmux")
	l, ctx := newLab(t)
	da := startDaemon(t, ctx, l, l.A, l.DefaultConfig(l.A))
	startDaemon(t, ctx, l, l.B, l.DefaultConfig(l.B))
	mustPing(t, ctx, l, l.A, l.B.TUN4)

	socket := "sy-top-" + l.Suffix
	session := "top"
	t.Cleanup(func() { _, _ = tmux(context.Background(), socket, "kill-server") })
	// Traffic while top watches: a ping every 0.2 s for up to 8 s, ended
	// before the lab is closed.
	pingCtx, stopPing := context.WithCancel(ctx)
	pingDone := make(chan struct{})
	go func() {
		defer close(pingDone)
		_, _ = l.Ping(pingCtx, l.A, l.B.TUN4, 40)
	}()
	t.Cleanup(func() { stopPing(); <-pingDone })

	cmdline := fmt.Sprintf("ip netns exec %s %s top --admin %s --interval 1s", l.A.NS, e2eCLI.get(t), l.A.Admin)
	if out, err := tmux(ctx, socket, "new-session", "-d", "-s", session, "-x", "200", "-y", "50", cmdline); err != nil {
		t.Fatalf("tmux new-session: %v: %s", err, out)
	}
	time.Sleep(topSettle)
	screen, err := tmux(ctx, socket, "capture-pane", "-p", "-t", session)
	if err != nil {
		t.Fatalf("tmux capture-pane: %v: %s", err, screen)
	}
	t.Logf("switchyard top after %v:\n%s", topSettle, screen)

	for _, want := range []string{"switchyard top", "node gw-a", "ACTOR", "IN PPS", "IN MBIT/S", "OUT PPS", "DROPS/S", "MAILBOX", "RESTARTS"} {
		if !strings.Contains(screen, want) {
			t.Errorf("screen lacks %q", want)
		}
	}
	// The actor table ends where the drops by reason begin: their lines
	// start with an actor's name too ("router no_route 1.00/s" when a
	// packet meets no route in the window, such as the kernel's own IPv6
	// multicast from the TUN).
	rows := map[string][]string{}
	for _, line := range strings.Split(screen, "\n") {
		if strings.HasPrefix(line, "drops/s by reason") {
			break
		}
		f := strings.Fields(line)
		if len(f) > 0 {
			rows[f[0]] = f
		}
	}
	for _, name := range []string{"capture", "router", "peer", "peer.recv", "injector"} {
		f, ok := rows[name]
		if !ok {
			t.Errorf("screen has no row for actor %s", name)
			continue
		}
		// ACTOR STATE IN-PPS IN-MBIT/S OUT-PPS …: rates, not "…".
		if len(f) < 7 || f[1] != "running" || f[2] == "…" {
			t.Errorf("row %s: %q, want state running and rates", name, f)
		}
	}
	if f := rows["capture"]; len(f) > 2 && f[2] == "0" {
		t.Errorf("capture in pps is 0 while ping runs: %q", f)
	}
	if f := rows["router"]; len(f) > 7 && !strings.HasPrefix(f[7], "[") {
		t.Errorf("router row lacks the mailbox bar: %q", f)
	}

	// The daemon goes away: top stays, shows the error and the last data.
	code, err := da.Stop()
	checkExit(t, da, code, err)
	time.Sleep(1500 * time.Millisecond)
	screen, _ = tmux(ctx, socket, "capture-pane", "-p", "-t", session)
	if !strings.Contains(screen, "retrying every 1s") || !strings.Contains(screen, "router") {
		t.Errorf("after the daemon stopped, want the error and the last rows:\n%s", screen)
	}

	if out, err := tmux(ctx, socket, "send-keys", "-t", session, "q"); err != nil {
		t.Fatalf("tmux send-keys: %v: %s", err, out)
	}
	deadline := time.Now().Add(topExitTimeout)
	for {
		if _, err := tmux(ctx, socket, "has-session", "-t", session); err != nil {
			break // the session ended with top
		}
		if time.Now().After(deadline) {
			screen, _ = tmux(ctx, socket, "capture-pane", "-p", "-t", session)
			t.Fatalf("top still running %v after q:\n%s", topExitTimeout, screen)
		}
		time.Sleep(lab.PollInterval)
	}
}
