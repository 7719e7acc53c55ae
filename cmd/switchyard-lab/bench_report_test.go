package main

import (
	"bytes"
	"encoding/json"
	"image/png"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gonum.org/v1/plot/plotter"

	"switchyard/internal/lab"
)

// microSample is go test -bench output of two runs of a few benchmarks.
const microSample = `goos: linux
BenchmarkLookupVerdict/routes=10000/v4-2   	 1000000	        20.0 ns/op
BenchmarkLookupVerdict/routes=10000/v4-2   	 1000000	        22.0 ns/op
BenchmarkPipeline/batch=1-2         	  100000	      1000 ns/op	         1.00 Mpps	        11.2 Gbit/s	         0.01 allocs/pkt
BenchmarkPipeline/batch=1-2         	  100000	      1000 ns/op	         1.20 Mpps	        13.4 Gbit/s	         0.01 allocs/pkt
BenchmarkPipeline/batch=128-2       	 1000000	       100 ns/op	        10.0 Mpps	       112 Gbit/s	         0.000002 allocs/pkt
BenchmarkPipeline/batch=128-2       	 1000000	       100 ns/op	        12.0 Mpps	       134 Gbit/s	         0.000002 allocs/pkt
BenchmarkEnvelope/batch=47-2         	   15960	     19799 ns/op	3370.91 MB/s	         3.371 GB/s	   73728 B/op	       1 allocs/op
BenchmarkEnvelope/batch=47-2         	   10000	     46681 ns/op	1429.70 MB/s	         1.430 GB/s	   73728 B/op	       1 allocs/op
PASS
`

// fixedReport is a report with every kind of row, as a run would leave it.
func fixedReport(t *testing.T) *benchReport {
	t.Helper()
	res, err := parseBench(strings.NewReader(microSample))
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]lab.Case{}
	for _, c := range lab.Cases() {
		cases[c.Key] = c
	}
	procs := func(name string, a, b float64) []lab.ProcResult {
		return []lab.ProcResult{
			{Name: name + " a", CPUPerGbit: lab.Summarize([]float64{a}), PeakRSS: 40 << 20},
			{Name: name + " b", CPUPerGbit: lab.Summarize([]float64{b}), PeakRSS: 50 << 20},
		}
	}
	row := func(key string, gbps []float64, p []lab.ProcResult) e2eRow {
		var runs []lab.RunResult
		for _, g := range gbps {
			runs = append(runs, lab.RunResult{IperfResult: lab.IperfResult{Gbps: g}})
		}
		return e2eRow{CaseResult: lab.CaseResult{Case: cases[key], Runs: runs, Gbps: lab.Summarize(gbps), Procs: p}, Status: statusOK}
	}
	withLatency := func(r e2eRow, idle, loaded []float64, lostLoaded int) e2eRow {
		r.Latency = &lab.Latency{}
		for _, base := range idle {
			r.Latency.Idle = append(r.Latency.Idle, rttSample(base, 0))
		}
		for _, base := range loaded {
			r.Latency.Loaded = append(r.Latency.Loaded, rttSample(base, lostLoaded))
		}
		return r
	}
	rows := []e2eRow{
		withLatency(row("veth", []float64{9, 10, 11}, nil), []float64{20, 20, 20}, []float64{15, 15, 15}, 0),
		withLatency(row("wireguard-go", []float64{1.9, 2.0, 2.2}, procs("wireguard-go", 0.5, 0.6)), []float64{300, 300, 300}, []float64{2000, 2000, 2000}, 0),
		withLatency(row("bare", []float64{3.0, 4.0, 5.0}, procs("forward", 0.1, 0.1)), []float64{200, 200, 200}, []float64{1000, 1100, 1200}, 0),
		withLatency(row("udp-b128", []float64{2.9, 3.0, 3.5}, procs("switchyard", 0.3, 0.4)), []float64{230, 230, 230}, []float64{1200, 1300, 1400}, 1),
		row("udp-b1", []float64{0.4, 0.5, 0.6}, procs("switchyard", 1.5, 1.6)),
		row("udp-oop-b128", []float64{2.1, 2.4, 2.5}, procs("switchyard", 0.5, 0.6)),
		row("udp-oop-b1", []float64{0.3, 0.3, 0.3}, procs("switchyard", 2.5, 2.6)),
		{CaseResult: lab.CaseResult{Case: cases["wireguard-oop-b128"]}, Status: statusFailed + "run 1: iperf3: boom"},
		{CaseResult: lab.CaseResult{Case: cases["wireguard-b128"]}, Status: statusFailed + "run 1: iperf3: boom"},
		{CaseResult: lab.CaseResult{Case: cases["udp-flood"], Gbps: lab.Summarize([]float64{1.5}), Procs: procs("switchyard", 0.7, 0.8),
			Flood: &lab.FloodResult{Rate: "4G", Len: 1392, Duration: 5,
				IperfResult: lab.IperfResult{Gbps: 1.5, SentGbps: 2.5, Packets: 1000, LostPackets: 400, LostPercent: 40},
				Actors: []lab.ActorDrops{
					{Daemon: "switchyard a", Actor: "router", InPackets: 1000, OutPackets: 700, Drops: map[string]uint64{"mailbox_full": 300}, HighWater: 256, Capacity: 256,
						WaitP50: 1 << 20, WaitP99: 1 << 26},
					{Daemon: "switchyard a", Actor: "dead_letters"},
				}}}, Status: statusOK},
	}
	addRatios(rows)
	return &benchReport{
		Date:     time.Date(2026, 11, 25, 19, 0, 0, 0, time.UTC),
		Machine:  machineInfo{Cores: 2, Model: "AMD EPYC", Kernel: "Linux 6.18", GoVersion: "go1.26.8", LoadStart: "0.10 0.20 0.30", LoadEnd: "1.00 1.10 1.20"},
		Settings: benchSettings{Runs: 3, Seconds: 10, FloodRate: "4G", FloodLen: 1392, FloodSeconds: 5},
		Micro:    newMicroReport(res),
		E2E:      rows,
		Elapsed:  421,
	}
}

// rttSample is 100 replies of base … base+99 µs, in a shuffled order, and
// lost more requests sent.
func rttSample(base float64, lost int) lab.RTTSample {
	s := lab.RTTSample{Sent: 100 + lost}
	for i := range 100 {
		s.RTTs = append(s.RTTs, base+float64((i*37)%100))
	}
	return s
}

func TestAddRatios(t *testing.T) {
	rep := fixedReport(t)
	want := map[string][3]float64{ // key → (÷ wireguard-go, ÷ veth, ÷ in-process)
		"veth":         {5, 1, 0},
		"wireguard-go": {1, 0.2, 0},
		"bare":         {2, 0.4, 0},
		"udp-b128":     {1.5, 0.3, 0},
		"udp-b1":       {0.25, 0.05, 0},
		"udp-oop-b128": {1.2, 0.24, 0.8},
		"udp-oop-b1":   {0.15, 0.03, 0.6},
	}
	for _, r := range rep.E2E {
		w, ok := want[r.Key]
		if !ok {
			if r.VsWireGuardGo != 0 || r.VsVeth != 0 || r.VsInProcess != 0 {
				t.Errorf("%s (%s): ratios %v, %v, %v, want none", r.Key, r.Status, r.VsWireGuardGo, r.VsVeth, r.VsInProcess)
			}
			continue
		}
		if !near(r.VsWireGuardGo, w[0]) || !near(r.VsVeth, w[1]) || !near(r.VsInProcess, w[2]) {
			t.Errorf("%s: ratios %.4f, %.4f, %.4f, want %v", r.Key, r.VsWireGuardGo, r.VsVeth, r.VsInProcess, w)
		}
	}
}

func TestReferenceRatios(t *testing.T) {
	rep := fixedReport(t)
	rows := map[string]e2eRow{}
	for _, r := range rep.E2E {
		rows[r.Key] = r
	}
	tests := []struct {
		key    string
		vsBare float64
		vsRef  lab.Summary
	}{
		{"udp-b128", 0.75, lab.Summary{Median: 0.75, Min: 0.7, Max: 2.9 / 3, N: 3}},
		{"udp-b1", 0.125, lab.Summary{Median: 0.125, Min: 0.12, Max: 0.4 / 3, N: 3}},
		{"udp-oop-b128", 0.6, lab.Summary{}}, // no reference of its own: not interleaved
		{"bare", 0, lab.Summary{}},
		{"veth", 0, lab.Summary{}},
	}
	for _, tt := range tests {
		r := rows[tt.key]
		if !near(r.VsBare, tt.vsBare) {
			t.Errorf("%s: ÷ bare = %v, want %v", tt.key, r.VsBare, tt.vsBare)
		}
		if g, w := r.VsRef, tt.vsRef; !near(g.Median, w.Median) || !near(g.Min, w.Min) || !near(g.Max, w.Max) || g.N != w.N {
			t.Errorf("%s: ÷ reference per round = %+v, want %+v", tt.key, g, w)
		}
	}
	if l := rows["udp-b128"].Lat; l == nil || l.Loaded.P99 != 1496 || l.Loaded.Sent != 303 || l.Loaded.N != 300 || !l.HasBare {
		t.Errorf("udp-b128 latency = %+v", l)
	}
	if rows["udp-oop-b128"].Lat != nil {
		t.Error("a row without latency has a latency summary")
	}
}

func TestQuantileAndCDF(t *testing.T) {
	v := []float64{5, 1, 4, 2, 3}
	tests := []struct {
		q    float64
		want float64
	}{{0, 1}, {0.2, 1}, {0.21, 2}, {0.5, 3}, {0.99, 5}, {1, 5}}
	for _, tt := range tests {
		if got := lab.Quantile(v, tt.q); got != tt.want {
			t.Errorf("Quantile(%v) = %v, want %v", tt.q, got, tt.want)
		}
	}
	if got := lab.Quantile(nil, 0.5); !math.IsNaN(got) {
		t.Errorf("Quantile of nothing = %v, want NaN", got)
	}
	pts := cdfPoints([]float64{3, 0, 1, 2})
	want := plotter.XYs{{X: 1, Y: 0.5}, {X: 2, Y: 0.75}, {X: 3, Y: 1}} // 0 is left off the log axis
	if !reflect.DeepEqual(pts, want) {
		t.Errorf("cdfPoints = %v, want %v", pts, want)
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

func TestMicroReport(t *testing.T) {
	m := fixedReport(t).Micro
	if m.Runs != 2 {
		t.Errorf("runs = %d, want 2", m.Runs)
	}
	if len(m.Pipeline) != 2 || m.Pipeline[0].Batch != 1 || m.Pipeline[1].Batch != 128 {
		t.Fatalf("pipeline sweep = %+v, want batches 1 and 128", m.Pipeline)
	}
	if got, want := m.Pipeline[1].Mpps, (lab.Summary{Median: 11, Min: 10, Max: 12, N: 2}); got != want {
		t.Errorf("batch 128 Mpps = %+v, want %+v", got, want)
	}
	if got := m.Summary["BenchmarkLookupVerdict/routes=10000/v4"]["ns/op"].Median; got != 21 {
		t.Errorf("lookup median = %v, want 21", got)
	}
}

func TestRenderMarkdown(t *testing.T) {
	var b bytes.Buffer
	renderMarkdown(&b, fixedReport(t))
	md := b.String()
	for _, want := range []string{
		"2026-11-25 19:00 UTC (full run); the end-to-end part took 7m1s.",
		"Machine: 2 cores, AMD EPYC, Linux 6.18, go1.26.8. Load average (1/5/15 min) at start 0.10 0.20 0.30, at end 1.00 1.10 1.20.",
		"## End to end: iperf3 TCP, one stream, 10 s, median of 3 (min–max)",
		"| configuration | Gbit/s | min–max | ÷ in-process | ÷ bare forwarder | ÷ wireguard-go | ÷ veth | ÷ reference, per round (interleaved) | CPU s per Gbit (per process) | peak RSS |",
		"| kernel veth alone (ceiling) | 10.00 | 9.00–11.00 | — | — | 5.00× | 1.00× | — | — | — |",
		"| wireguard-go pair (reference) | 2.00 | 1.90–2.20 | — | — | 1.00× | 0.20× | — | a 0.50, b 0.60 | a 40.0 MiB, b 50.0 MiB |",
		"| bare TUN↔UDP forwarder pair (reference) | 4.00 | 3.00–5.00 | — | — | 2.00× | 0.40× | — | a 0.10, b 0.10 |",
		// 2.9/3, 3/4, 3.5/5 round by round.
		"| switchyard udp, in-process, batch 128 | 3.00 | 2.90–3.50 | — | 0.75× | 1.50× | 0.30× | 0.75× (0.70–0.97) | a 0.30, b 0.40 | a 40.0 MiB, b 50.0 MiB |",
		"| switchyard udp, in-process, batch 1 | 0.50 | 0.40–0.60 | — | 0.12× | 0.25× | 0.05× | 0.12× (0.12–0.13) |",
		"| switchyard udp, out of process (shm), batch 128 | 2.40 | 2.10–2.50 | 0.80× | 0.60× | 1.20× | 0.24× | — |",
		"| switchyard udp, out of process (shm), batch 1 | 0.30 | 0.30–0.30 | 0.60× | 0.07× | 0.15× | 0.03× | — |",
		"| switchyard wireguard, in-process, batch 128 | failed: run 1: iperf3: boom | | | | | | | | |",
		"| switchyard wireguard, out of process (shm), batch 128 | failed: run 1: iperf3: boom | | | | | | | | |",
		"## Latency: ICMP echo RTT (µs), 300 pings 10ms apart, idle and under one iperf3 TCP stream (the rounds pooled: 3)",
		// Pooled: 3 × base…base+99; p50 is the 150th value, p99 the 297th.
		"| bare TUN↔UDP forwarder pair (reference) | 249 | 298 | 1149 | 1296 | 0, 0 | 1.00× | 0.62× | +0 | — | 1198 (1098–1298) |",
		// Loaded p99 1496 ÷ 1296 and ÷ 2098; idle p50 279 − 249; round
		// by round 1298/1098, 1398/1198, 1498/1298; one reply lost a round.
		"| switchyard udp, in-process, batch 128 | 279 | 328 | 1349 | 1496 | 0, 3 | 1.15× | 0.71× | +30 | 1.17× (1.15–1.18) | 1398 (1298–1498) |",
		"| kernel veth alone (ceiling) | 69 | 118 | 64 | 113 | 0, 0 | 0.09× | 0.05× | −180 | — | 113 (113–113) |",
		"| switchyard wireguard, in-process, batch 128 | failed: run 1: iperf3: boom | | | | | | | | | |",
		"Goals (issue 21): udp loaded p99 ≤ 1.0× the bare forwarder's",
		"| goal | this run | want | |",
		"| udp batch 128 ÷ bare forwarder, Gbit/s (issue 14) | 0.75× (0.70–0.97, rounds: 3) | ≥ 0.90× | MISSED |",
		"| wireguard ÷ wireguard-go, Gbit/s (issue 14) | — | ≥ 1.05× | not measured |",
		"| udp loaded p99 ÷ bare forwarder's (issue 21) | 1.15× | ≤ 1.00× | MISSED |",
		"| wireguard loaded p99 ÷ wireguard-go's (issue 21) | — | ≤ 1.00× | not measured |",
		"| udp idle p50 − bare forwarder's, µs (issue 21) | +30 | ≤ +30 | met |",
		"## UDP flood: iperf3 -u -b 4G -l 1392 for 5 s through switchyard udp, in-process, batch 128",
		"Offered 2.50 Gbit/s (what the iperf3 client sent), delivered 1.50 Gbit/s (iperf3 receiver), 400 of 1000 datagrams lost end to end (40.0 %).",
		"| switchyard a | router | 1000 | 700 | mailbox_full 300 | 256 / 256 | ≤ 1.0 ms / ≤ 67.1 ms |",
		"Peak RSS (VmHWM) per daemon: a 40.0 MiB, b 50.0 MiB.",
		"## Micro: go test -bench, median (min–max) of 2 runs",
		"  128      11.0 (10.0–12.0)",
		"envelope encode+decode (issue 4)",
		"  47       2.40 (1.43–3.37)         19.2 (11.4–27.0)         1.00 (1.00–1.00)",
		"  128      n/a",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q\n%s", want, md)
		}
	}
	if strings.Contains(md, "Not measured") || strings.Contains(md, lab.NotBuiltReason) {
		t.Error("the report says something is not measured or not built")
	}
	if strings.Contains(md, "dead_letters") {
		t.Error("an actor the flood never reached is listed")
	}
	if strings.Count(md, "UDP flood") != 1 {
		t.Error("the flood row appears in the TCP table")
	}
	// Rendering is pure: twice the same text.
	var again bytes.Buffer
	renderMarkdown(&again, fixedReport(t))
	if again.String() != md {
		t.Error("two renderings of the same report differ")
	}
}

func TestWriteReport(t *testing.T) {
	dir := t.TempDir()
	rep := fixedReport(t)
	if err := writeReport(dir, rep); err != nil {
		t.Fatal(err)
	}
	var back benchReport
	b, err := os.ReadFile(filepath.Join(dir, "latest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.E2E) != len(rep.E2E) || back.E2E[3].Key != "udp-b128" || back.E2E[3].Gbps != rep.E2E[3].Gbps ||
		back.E2E[3].VsWireGuardGo != 1.5 || back.E2E[3].Lat == nil || back.E2E[3].Latency == nil || back.Micro.Pipeline[1].Mpps.Median != 11 {
		t.Errorf("latest.json does not round-trip:\n%s", b)
	}
	for _, name := range []string{"latest.png", "latest-sweep.png", "latest-latency.png"} {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if r := img.Bounds(); r.Dx() < 600 || r.Dy() < 300 {
			t.Errorf("%s is %v, too small to read", name, r)
		}
	}
}

func TestProgressRemaining(t *testing.T) {
	cases := []lab.Case{
		{Key: "veth", Label: "veth"},
		{Key: "udp", Label: "udp", Latency: true},
		{Key: "flood", Label: "flood", Flood: true},
	}
	p := &progress{w: io.Discard, cases: cases, runs: 3, run: 11 * time.Second, flood: 6 * time.Second, state: map[string]*caseState{}}
	for _, c := range cases {
		p.state[c.Key] = &caseState{}
	}
	// A latency round adds the idle pings (300 × 10 ms) and an overhead.
	latencyRound := 11*time.Second + lab.LatencyPings*lab.LatencyInterval + benchRunOverhead
	tests := []struct {
		name   string
		events []lab.Event
		want   time.Duration
	}{
		{"before any case", nil, 3*11*time.Second + 3*latencyRound + 6*time.Second + 3*benchSetupGuess},
		{"veth done, udp in its second round", []lab.Event{
			{Case: cases[0], Phase: lab.PhaseSetup}, {Case: cases[0], Phase: lab.PhaseDone},
			{Case: cases[1], Phase: lab.PhaseSetup}, {Case: cases[1], Phase: lab.PhaseRun, Run: 2, Runs: 3},
		}, 2*latencyRound + 6*time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, e := range tt.events {
				p.event(e)
			}
			// The measured setups are near 0 s here: the flood's
			// setup is their mean.
			if got := p.remaining(); got < tt.want || got > tt.want+time.Second {
				t.Errorf("remaining = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestE2EGoals(t *testing.T) {
	cases := map[string]lab.Case{}
	for _, c := range lab.Cases() {
		cases[c.Key] = c
	}
	rows := []e2eRow{
		{CaseResult: lab.CaseResult{Case: cases["udp-b128"]}, Status: statusOK, VsBare: 0.5,
			VsRef: lab.Summary{Median: 0.95, Min: 0.9, Max: 1.0, N: 3}, // the interleaved ratio wins over the medians'
			Lat:   &latencySummary{LoadedP99VsBare: 0.9, HasBare: true, IdleP50OverBare: 31}},
		{CaseResult: lab.CaseResult{Case: cases["wireguard-b128"]}, Status: statusOK, VsWireGuardGo: 1.06,
			Lat: &latencySummary{LoadedP99VsWireGuardGo: 1.2}},
	}
	want := []e2eGoal{
		{"udp batch 128 ÷ bare forwarder, Gbit/s (issue 14)", "≥ 0.90×", "0.95× (0.90–1.00, rounds: 3)", "met"},
		{"wireguard ÷ wireguard-go, Gbit/s (issue 14)", "≥ 1.05×", "1.06×", "met"},
		{"udp loaded p99 ÷ bare forwarder's (issue 21)", "≤ 1.00×", "0.90×", "met"},
		{"wireguard loaded p99 ÷ wireguard-go's (issue 21)", "≤ 1.00×", "1.20×", "MISSED"},
		{"udp idle p50 − bare forwarder's, µs (issue 21)", "≤ +30", "+31", "MISSED"},
	}
	if got := e2eGoals(rows); !reflect.DeepEqual(got, want) {
		t.Errorf("e2eGoals =\n%+v\nwant\n%+v", got, want)
	}
	// A failed row is not measured.
	rows[0].Status = statusFailed + "boom"
	if got := e2eGoals(rows); got[0].Verdict != "not measured" || got[2].Verdict != "not measured" {
		t.Errorf("failed udp row: goals %+v", got)
	}
}
