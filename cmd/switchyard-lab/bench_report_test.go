package main

import (
	"bytes"
	"encoding/json"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
		return e2eRow{CaseResult: lab.CaseResult{Case: cases[key], Gbps: lab.Summarize(gbps), Procs: p}, Status: statusOK}
	}
	rows := []e2eRow{
		row("veth", []float64{9, 10, 11}, nil),
		row("wireguard-go", []float64{1.9, 2.0, 2.2}, procs("wireguard-go", 0.5, 0.6)),
		row("udp-b128", []float64{2.9, 3.0, 3.5}, procs("switchyard", 0.3, 0.4)),
		row("udp-b1", []float64{0.4, 0.5, 0.6}, procs("switchyard", 1.5, 1.6)),
		row("udp-oop-b128", []float64{2.1, 2.4, 2.5}, procs("switchyard", 0.5, 0.6)),
		row("udp-oop-b1", []float64{0.3, 0.3, 0.3}, procs("switchyard", 2.5, 2.6)),
		{CaseResult: lab.CaseResult{Case: cases["wireguard-oop-b128"]}, Status: statusFailed + "run 1: iperf3: boom"},
		{CaseResult: lab.CaseResult{Case: cases["wireguard-b128"]}, Status: statusFailed + "run 1: iperf3: boom"},
		{CaseResult: lab.CaseResult{Case: cases["udp-flood"], Gbps: lab.Summarize([]float64{1.5}), Procs: procs("switchyard", 0.7, 0.8),
			Flood: &lab.FloodResult{Rate: "4G", Len: 1392, Duration: 5,
				IperfResult: lab.IperfResult{Gbps: 1.5, SentGbps: 2.5, Packets: 1000, LostPackets: 400, LostPercent: 40},
				Actors: []lab.ActorDrops{
					{Daemon: "switchyard a", Actor: "router", InPackets: 1000, OutPackets: 700, Drops: map[string]uint64{"mailbox_full": 300}, HighWater: 256, Capacity: 256},
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

func TestAddRatios(t *testing.T) {
	rep := fixedReport(t)
	want := map[string][3]float64{ // key → (÷ wireguard-go, ÷ veth, ÷ in-process)
		"veth":         {5, 1, 0},
		"wireguard-go": {1, 0.2, 0},
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

// TestReferenceRatio: a protocol row against its reference pair.
func TestReferenceRatio(t *testing.T) {
	medians := map[string]float64{"openconnect-ref": 0.5, "openconnect-pair": 1.5}
	for _, c := range lab.Cases() {
		got := lab.ReferenceRatio(c, medians)
		want := 0.0
		if c.Key == "openconnect-pair" {
			want = 3
		}
		if !near(got, want) {
			t.Errorf("%s: ratio to its reference %v, want %v", c.Key, got, want)
		}
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
		"| configuration | Gbit/s | min–max | ÷ in-process | ÷ protocol reference | ÷ wireguard-go | ÷ veth | CPU s per Gbit (per process) | peak RSS |",
		"| kernel veth alone (ceiling) | 10.00 | 9.00–11.00 | — | — | 5.00× | 1.00× | — | — |",
		"| wireguard-go pair (reference) | 2.00 | 1.90–2.20 | — | — | 1.00× | 0.20× | a 0.50, b 0.60 | a 40.0 MiB, b 50.0 MiB |",
		"| switchyard udp, in-process, batch 128 | 3.00 | 2.90–3.50 | — | — | 1.50× | 0.30× | a 0.30, b 0.40 | a 40.0 MiB, b 50.0 MiB |",
		"| switchyard udp, in-process, batch 1 | 0.50 | 0.40–0.60 | — | — | 0.25× | 0.05× |",
		"| switchyard udp, out of process (shm), batch 128 | 2.40 | 2.10–2.50 | 0.80× | — | 1.20× | 0.24× |",
		"| switchyard udp, out of process (shm), batch 1 | 0.30 | 0.30–0.30 | 0.60× | — | 0.15× | 0.03× |",
		"| switchyard wireguard, in-process, batch 128 | failed: run 1: iperf3: boom | | | | | | | |",
		"| switchyard wireguard, out of process (shm), batch 128 | failed: run 1: iperf3: boom | | | | | | | |",
		"## UDP flood: iperf3 -u -b 4G -l 1392 for 5 s through switchyard udp, in-process, batch 128",
		"Offered 2.50 Gbit/s (what the iperf3 client sent), delivered 1.50 Gbit/s (iperf3 receiver), 400 of 1000 datagrams lost end to end (40.0 %).",
		"| switchyard a | router | 1000 | 700 | mailbox_full 300 | 256 / 256 |",
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
	if len(back.E2E) != len(rep.E2E) || back.E2E[2].Key != "udp-b128" || back.E2E[2].Gbps != rep.E2E[2].Gbps ||
		back.E2E[2].VsWireGuardGo != 1.5 || back.Micro.Pipeline[1].Mpps.Median != 11 {
		t.Errorf("latest.json does not round-trip:\n%s", b)
	}
	for _, name := range []string{"latest.png", "latest-sweep.png"} {
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
	cases := lab.Cases()[:3] // veth, wireguard-go, udp-b128
	p := &progress{cases: cases, runs: 3, run: 11 * time.Second, flood: 6 * time.Second, index: -1}
	// Before any case: 3 × (3 × 11 s + the 5 s guess).
	if got, want := p.remaining(time.Now()), 3*(33*time.Second+benchSetupGuess); got != want {
		t.Errorf("remaining before start = %v, want %v", got, want)
	}
	// In the second case, 10 s in, with one measured overhead of 3 s.
	now := time.Now()
	p.index, p.caseStart, p.overheads = 1, now.Add(-10*time.Second), []time.Duration{3 * time.Second}
	if got, want := p.remaining(now), 2*(33*time.Second+3*time.Second)-10*time.Second; got != want {
		t.Errorf("remaining in case 2 = %v, want %v", got, want)
	}
}
