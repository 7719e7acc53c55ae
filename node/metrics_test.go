package node

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"switchyard/config"
	"switchyard/packet/packettest"
	"switchyard/stats"
)

// testSource is a metricsSource over reg with a fixed pool and clock.
func testSource(reg *stats.Registry, now time.Time) metricsSource {
	return metricsSource{
		actors: reg.All,
		pool:   func() (PoolSnapshot, bool) { return PoolSnapshot{LimitBuffers: 4096, OutstandingBuffers: 7}, true },
		now:    func() time.Time { return now },
	}
}

// series flattens metric families into "name{k=v,…}" → value, labels
// sorted; histograms as name_bucket{le=…}, name_count and name_sum.
func series(mfs []*dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := make([]string, 0, len(m.GetLabel()))
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			sort.Strings(labels)
			key := func(name string, extra ...string) string {
				ls := append(append([]string(nil), labels...), extra...)
				sort.Strings(ls)
				return name + "{" + strings.Join(ls, ",") + "}"
			}
			switch {
			case m.Counter != nil:
				out[key(mf.GetName())] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[key(mf.GetName())] = m.GetGauge().GetValue()
			case m.Histogram != nil:
				h := m.GetHistogram()
				for _, b := range h.GetBucket() {
					out[key(mf.GetName()+"_bucket", fmt.Sprintf("le=%g", b.GetUpperBound()))] = float64(b.GetCumulativeCount())
				}
				out[key(mf.GetName()+"_count")] = float64(h.GetSampleCount())
				out[key(mf.GetName()+"_sum")] = h.GetSampleSum()
			case m.Untyped != nil:
				out[key(mf.GetName())] = m.GetUntyped().GetValue()
			}
		}
	}
	return out
}

func gather(t *testing.T, cs ...prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			t.Fatalf("register: %v", err)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	return series(mfs)
}

// knownRegistry holds actors with known counters: a router with a
// mailbox, and a protocol that restarted and is waiting to restart again.
func knownRegistry() *stats.Registry {
	var reg stats.Registry
	rt := reg.Row("router", "router")
	rt.SetMailbox(256, "drop_newest")
	rt.In(47, 47*1400)
	rt.In(1, 84)
	rt.In(128, 128*100)
	rt.Out(47, 47*1400)
	rt.Out(1, 84)
	rt.Drop(stats.NoRoute, 3)
	rt.Drop(stats.Malformed, 2)
	rt.Queued(1, 128)
	rt.Queued(1, 5)
	rt.Queued(-1, -5)
	rt.QueueDelay(800)       // ≤ 1.024 µs
	rt.QueueDelay(3_000_000) // 3 ms: ≤ 4.194304 ms
	rt.QueueDelay(2e9)       // above every bound

	p := reg.Row("peer-b", "udp")
	p.SetMailbox(512, "drop_oldest")
	p.In(1, 100)
	p.Out(1, 100)
	p.Restarted()
	p.Restarted()
	p.SetState(stats.Restarting)
	return &reg
}

func TestCountersCollector(t *testing.T) {
	got := gather(t, newCountersCollector(testSource(knownRegistry(), time.Now())))
	want := map[string]float64{
		"switchyard_packets_total{actor=router,direction=in}":   176,
		"switchyard_packets_total{actor=router,direction=out}":  48,
		"switchyard_bytes_total{actor=router,direction=in}":     47*1400 + 84 + 12800,
		"switchyard_bytes_total{actor=router,direction=out}":    47*1400 + 84,
		"switchyard_batches_total{actor=router,direction=in}":   3,
		"switchyard_batches_total{actor=router,direction=out}":  2,
		"switchyard_drops_total{actor=router,reason=no_route}":  3,
		"switchyard_drops_total{actor=router,reason=malformed}": 2,
		"switchyard_drops_total{actor=router,reason=rejected}":  0, // zeros are served
		"switchyard_restarts_total{actor=router}":               0,
		"switchyard_actor_up{actor=router}":                     1,
		"switchyard_actor_info{actor=router,kind=router}":       1,
		"switchyard_mailbox_depth{actor=router}":                1,
		"switchyard_mailbox_depth_packets{actor=router}":        128,
		"switchyard_mailbox_high_water{actor=router}":           2,
		"switchyard_mailbox_capacity{actor=router}":             256,
		"switchyard_batch_packets_bucket{actor=router,le=1}":    1,
		"switchyard_batch_packets_bucket{actor=router,le=2}":    1,
		"switchyard_batch_packets_bucket{actor=router,le=32}":   1,
		"switchyard_batch_packets_bucket{actor=router,le=64}":   2,
		"switchyard_batch_packets_bucket{actor=router,le=128}":  3,
		"switchyard_batch_packets_count{actor=router}":          3,
		"switchyard_batch_packets_sum{actor=router}":            176,

		"switchyard_queue_delay_seconds_bucket{actor=router,le=1.024e-06}":   1,
		"switchyard_queue_delay_seconds_bucket{actor=router,le=0.002097152}": 1,
		"switchyard_queue_delay_seconds_bucket{actor=router,le=0.004194304}": 2,
		"switchyard_queue_delay_seconds_bucket{actor=router,le=1.073741824}": 2,
		"switchyard_queue_delay_seconds_count{actor=router}":                 3,
		"switchyard_queue_delay_seconds_sum{actor=router}":                   2.0030008,
		"switchyard_queue_delay_seconds_count{actor=peer-b}":                 0,

		"switchyard_packets_total{actor=peer-b,direction=in}": 1,
		"switchyard_restarts_total{actor=peer-b}":             2,
		"switchyard_actor_up{actor=peer-b}":                   0,
		"switchyard_actor_info{actor=peer-b,kind=udp}":        1,
		"switchyard_mailbox_capacity{actor=peer-b}":           512,
		"switchyard_mailbox_depth{actor=peer-b}":              0,

		"switchyard_pool_buffers{state=in_use}": 7,
		"switchyard_pool_buffers{state=limit}":  4096,
	}
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("%s: missing", k)
			continue
		}
		if g != w {
			t.Errorf("%s = %v, want %v", k, g, w)
		}
	}
	// Every reason for every actor, and nothing else with the reason label.
	drops := 0
	for k := range got {
		if strings.HasPrefix(k, "switchyard_drops_total{") {
			drops++
		}
	}
	if want := 2 * len(stats.Reasons()); drops != want {
		t.Errorf("drops_total series = %d, want %d (every reason of 2 actors)", drops, want)
	}
}

// TestCountersCollectorText checks the exposition text of the histogram and
// the mailbox gauges exactly, and that the metrics pass promlint.
func TestCountersCollectorText(t *testing.T) {
	var reg stats.Registry
	a := reg.Row("injector", "injector")
	a.SetMailbox(256, "drop_newest")
	a.In(1, 60)
	a.In(3, 180)
	a.In(300, 1000) // above every bound: only +Inf
	c := newCountersCollector(testSource(&reg, time.Now()))
	want := `
# HELP switchyard_batch_packets Packets per batch arriving at the actor.
# TYPE switchyard_batch_packets histogram
switchyard_batch_packets_bucket{actor="injector",le="1"} 1
switchyard_batch_packets_bucket{actor="injector",le="2"} 1
switchyard_batch_packets_bucket{actor="injector",le="4"} 2
switchyard_batch_packets_bucket{actor="injector",le="8"} 2
switchyard_batch_packets_bucket{actor="injector",le="16"} 2
switchyard_batch_packets_bucket{actor="injector",le="32"} 2
switchyard_batch_packets_bucket{actor="injector",le="64"} 2
switchyard_batch_packets_bucket{actor="injector",le="128"} 2
switchyard_batch_packets_bucket{actor="injector",le="+Inf"} 3
switchyard_batch_packets_sum{actor="injector"} 304
switchyard_batch_packets_count{actor="injector"} 3
# HELP switchyard_mailbox_capacity The bound of the actor's mailbox, in batches; past it the drop policy applies.
# TYPE switchyard_mailbox_capacity gauge
switchyard_mailbox_capacity{actor="injector"} 256
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "switchyard_batch_packets", "switchyard_mailbox_capacity"); err != nil {
		t.Error(err)
	}
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

// TestCountersMonotonicAcrossRestart: a restarted actor gets its counters
// back by name, so the served counters never go down.
func TestCountersMonotonicAcrossRestart(t *testing.T) {
	var reg stats.Registry
	c := newCountersCollector(testSource(&reg, time.Now()))
	reg.Row("peer", "udp").In(10, 1000)
	before := gather(t, c)["switchyard_packets_total{actor=peer,direction=in}"]
	again := reg.Row("peer", "udp") // what a restart does
	again.Restarted()
	again.In(5, 500)
	after := gather(t, c)
	if got := after["switchyard_packets_total{actor=peer,direction=in}"]; got != before+5 {
		t.Errorf("packets in after the restart = %v, want %v + 5", got, before)
	}
	if got := after["switchyard_restarts_total{actor=peer}"]; got != 1 {
		t.Errorf("restarts = %v, want 1", got)
	}
}

type fakeGauges []stats.Gauge

func (f fakeGauges) Gauges() []stats.Gauge { return f }

func TestProtocolCollector(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	var reg stats.Registry
	reg.Row("capture", "capture") // no info
	reg.Row("custom", "udp").SetInfo(func() any {
		return fakeGauges{
			{Name: "udp_peer_rtt_seconds", Help: "RTT.", Labels: map[string]string{"peer": "10.0.0.2:7000"}, Value: 0.25},
		}
	})
	reg.Row("odd", "udp").SetInfo(func() any { return map[string]int{"x": 1} }) // no Gauges method: nothing

	got := gather(t, protocolCollector{testSource(&reg, now)})
	want := map[string]float64{
		"switchyard_udp_peer_rtt_seconds{actor=custom,peer=10.0.0.2:7000}": 0.25,
	}
	if len(got) != len(want) {
		t.Errorf("got %d series, want %d: %v", len(got), len(want), got)
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, w)
		}
	}
}

// TestMetricsHandlerBadGauge: a protocol gauge that breaks the rules is
// left out; the rest of the scrape is served.
func TestMetricsHandlerBadGauge(t *testing.T) {
	var reg stats.Registry
	reg.Row("router", "router").In(3, 300)
	reg.Row("bad", "udp").SetInfo(func() any {
		return fakeGauges{{Name: "bad name", Value: 1}, {Name: "ok_gauge", Labels: map[string]string{"actor": "x"}, Value: 1}}
	})
	pr := prometheus.NewRegistry()
	pr.MustRegister(newCountersCollector(testSource(&reg, time.Now())), protocolCollector{testSource(&reg, time.Now())})
	srv := httptest.NewServer(metricsHandler(pr, zap.NewNop()))
	defer srv.Close()
	body := get(t, srv.URL, "")
	if !strings.Contains(body, `switchyard_packets_total{actor="router",direction="in"} 3`) {
		t.Errorf("scrape lacks the router's counters:\n%s", body)
	}
	if strings.Contains(body, "bad name") || strings.Contains(body, "ok_gauge") {
		t.Errorf("scrape serves an invalid gauge:\n%s", body)
	}
}

func get(t *testing.T, url, token string) string {
	t.Helper()
	code, body := getStatus(t, url, token)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, code, body)
	}
	return body
}

func getStatus(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

const adminTestToken = "s3cr3t-t0ken-0123456789abcdef"

// adminConfig is loopConfig with admin.listen and, if token, a token file.
func adminConfig(t *testing.T, listen string, token bool) *config.Config {
	t.Helper()
	dir := t.TempDir()
	src := fmt.Sprintf("node: {name: adm}\nadmin:\n  listen: %q\n", listen)
	if token {
		if err := os.WriteFile(filepath.Join(dir, "admin.token"), []byte(adminTestToken+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		src += "  token_file: admin.token\n"
	}
	cfg, err := config.Parse(filepath.Join(dir, "gw.yaml"), []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestAdminToken(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	cfg := adminConfig(t, "127.0.0.1:0", true)
	n, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := n.ServeAdmin("127.0.0.1:0", "switchyard test")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	base := "http://" + a.Addr()
	tests := []struct {
		path, auth string
		want       int
	}{
		{"/stats", "", http.StatusUnauthorized},
		{"/metrics", "", http.StatusUnauthorized},
		{"/debug/pprof/", "", http.StatusUnauthorized},
		{"/stats", "Bearer wrong", http.StatusUnauthorized},
		{"/stats", "Bearer " + adminTestToken + "x", http.StatusUnauthorized},
		{"/stats", "Bearer " + adminTestToken[:10], http.StatusUnauthorized},
		{"/stats", "Basic " + adminTestToken, http.StatusUnauthorized},
		{"/stats", adminTestToken, http.StatusUnauthorized},
		{"/stats", "Bearer " + adminTestToken, http.StatusOK},
		{"/stats", "bearer " + adminTestToken, http.StatusOK},
		{"/metrics", "Bearer " + adminTestToken, http.StatusOK},
		{"/nope", "Bearer " + adminTestToken, http.StatusNotFound},
	}
	for _, tt := range tests {
		code, body := getStatus(t, base+tt.path, tt.auth)
		if code != tt.want {
			t.Errorf("GET %s with Authorization %q: got %d, want %d (%s)", tt.path, tt.auth, code, tt.want, body)
		}
	}
}

func TestAdminNonLoopbackNeedsToken(t *testing.T) {
	// A config built in code can skip Validate; ServeAdmin refuses anyway,
	// before it binds anything.
	cfg := adminConfig(t, "127.0.0.1:0", false)
	n, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"0.0.0.0:0", "[::]:0"} {
		a, err := n.ServeAdmin(addr, "switchyard test")
		if err == nil {
			a.Close()
			t.Errorf("ServeAdmin(%s) without a token: no error", addr)
		} else if !strings.Contains(err.Error(), ErrAdminNeedsToken.Error()) {
			t.Errorf("ServeAdmin(%s): %v, want %v", addr, err, ErrAdminNeedsToken)
		}
	}
	// With a token it serves on any address.
	n2, err := New(adminConfig(t, "0.0.0.0:0", true), Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := n2.ServeAdmin("0.0.0.0:0", "switchyard test")
	if err != nil {
		t.Fatalf("ServeAdmin(0.0.0.0:0) with a token: %v", err)
	}
	defer a.Close()
	port := a.Addr()[strings.LastIndexByte(a.Addr(), ':'):]
	if code, _ := getStatus(t, "http://127.0.0.1"+port+"/stats", ""); code != http.StatusUnauthorized {
		t.Errorf("GET /stats without a token: %d, want 401", code)
	}
}

// TestMetricsMatchStats runs a node on an in-memory TUN, pushes packets
// through it, and checks that GET /metrics and GET /stats agree.
func TestMetricsMatchStats(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dev := packettest.New(64)
	n, err := New(loopConfig(t, freePort(t)), Options{Device: dev})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	a, err := n.ServeAdmin("127.0.0.1:0", "switchyard v1.2.3 abcdef012345 go1.26 linux/amd64")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()

	const count = 300
	src, dst := [4]byte{10, 90, 0, 1}, [4]byte{10, 90, 0, 2}
	for i := 0; i < count; i++ {
		dev.Inject(packettest.IPv4(src, dst, 200, nil))
	}
	dev.Inject(packettest.IPv4(src, [4]byte{192, 0, 2, 1}, 60, nil)) // no route
	deadline := time.Now().Add(5 * time.Second)
	for len(dev.Written()) < count && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // let the counters settle

	body := get(t, "http://"+a.Addr()+"/metrics", "")
	mfs, err := new(expfmt.TextParser).TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse the exposition: %v\n%s", err, body)
	}
	got := series(valuesOf(mfs))
	s := n.Stats()
	if len(s.Actors) == 0 {
		t.Fatal("no actors")
	}
	for _, act := range s.Actors {
		checks := map[string]uint64{
			"switchyard_packets_total{actor=" + act.Name + ",direction=in}":  act.InPackets,
			"switchyard_packets_total{actor=" + act.Name + ",direction=out}": act.OutPackets,
			"switchyard_bytes_total{actor=" + act.Name + ",direction=in}":    act.InBytes,
			"switchyard_batches_total{actor=" + act.Name + ",direction=out}": act.OutBatches,
			"switchyard_batch_packets_count{actor=" + act.Name + "}":         act.InBatches,
			"switchyard_restarts_total{actor=" + act.Name + "}":              act.Restarts,
		}
		for _, r := range stats.Reasons() {
			checks["switchyard_drops_total{actor="+act.Name+",reason="+r.String()+"}"] = act.Drops[r.String()]
		}
		for k, w := range checks {
			if g, ok := got[k]; !ok || g != float64(w) {
				t.Errorf("%s = %v (present %v), /stats says %d", k, g, ok, w)
			}
		}
	}
	if got := got["switchyard_packets_total{actor=capture,direction=in}"]; got < count {
		t.Errorf("capture packets in = %v, want ≥ %d", got, count)
	}
	if got := got["switchyard_drops_total{actor=router,reason=no_route}"]; got != 1 {
		t.Errorf("router no_route drops = %v, want 1", got)
	}
	for _, name := range []string{"switchyard_build_info", "go_goroutines", "process_resident_memory_bytes", "switchyard_pool_buffers"} {
		if _, ok := mfs[name]; !ok {
			t.Errorf("scrape lacks %s", name)
		}
	}
	if !strings.Contains(body, `switchyard_build_info{goversion="`) || !strings.Contains(body, `version="v1.2.3"`) {
		t.Errorf("build info: %s", grepLines(body, "switchyard_build_info"))
	}
}

func valuesOf(m map[string]*dto.MetricFamily) []*dto.MetricFamily {
	out := make([]*dto.MetricFamily, 0, len(m))
	for _, mf := range m {
		out = append(out, mf)
	}
	return out
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
