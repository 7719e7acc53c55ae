package main

// The report of `make bench`: one struct (benchReport) holds a whole run —
// the machine, the micro benchmarks' samples, every end-to-end row — and is
// written as bench/results/latest.json, rendered as latest.md and plotted as
// latest.png and latest-sweep.png. Rendering is pure: the same struct gives
// the same text.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"switchyard/internal/lab"
)

// benchReport is one run of the benchmark harness.
type benchReport struct {
	Date     time.Time     `json:"date"`
	Machine  machineInfo   `json:"machine"`
	Quick    bool          `json:"quick"`
	Settings benchSettings `json:"settings"`
	Micro    *microReport  `json:"micro,omitempty"`
	E2E      []e2eRow      `json:"e2e"`
	Elapsed  float64       `json:"elapsed_s"`
}

// machineInfo is what the numbers were measured on.
type machineInfo struct {
	Cores       int    `json:"cores"`
	Model       string `json:"cpu_model"`
	Kernel      string `json:"kernel"`
	GoVersion   string `json:"go_version"`
	Iperf3      string `json:"iperf3,omitempty"`
	WireGuardGo string `json:"wireguard_go,omitempty"`
	LoadStart   string `json:"loadavg_start"` // /proc/loadavg's 1, 5 and 15 minute averages
	LoadEnd     string `json:"loadavg_end"`
}

// benchSettings are the knobs of the end-to-end part.
type benchSettings struct {
	Runs         int     `json:"runs"`
	Seconds      float64 `json:"seconds"`
	FloodRate    string  `json:"flood_rate"`
	FloodLen     int     `json:"flood_len"`
	FloodSeconds float64 `json:"flood_seconds"`
}

// Row statuses other than a failure message.
const (
	statusOK      = "ok"
	statusSkipped = "skipped: "
	statusFailed  = "failed: "
)

// e2eRow is one configuration of the end-to-end part.
type e2eRow struct {
	lab.CaseResult
	Status string `json:"status"` // statusOK, lab.NotBuiltReason, "skipped: …", "failed: …"
	// Ratios of the median to the wireguard-go pair's and the veth's
	// medians; 0 when either is missing.
	VsWireGuardGo float64 `json:"ratio_to_wireguard_go,omitempty"`
	VsVeth        float64 `json:"ratio_to_veth,omitempty"`
	// VsInProcess is an out-of-process row's median over its in-process
	// reference's (lab.Case.InProcess); the goal is ≥ 0.8.
	VsInProcess float64 `json:"ratio_to_in_process,omitempty"`
	// VsReference is a protocol row's median over its protocol's reference
	// pair's (lab.Case.Reference: ocserv ↔ openconnect for openconnect).
	VsReference float64 `json:"ratio_to_reference,omitempty"`
}

func (r e2eRow) ok() bool { return r.Status == statusOK }

// microReport is the micro part: every sample of every benchmark (so the
// text summary can be rendered again), their summaries, and the pipeline's
// batch sweep pulled out for the plot.
type microReport struct {
	Runs     int                               `json:"runs"`
	Order    []string                          `json:"order"`
	Samples  map[string]map[string][]float64   `json:"samples"`
	Summary  map[string]map[string]lab.Summary `json:"summary"`
	Pipeline []pipelinePoint                   `json:"pipeline_sweep"`
	NotBuilt []string                          `json:"not_built_yet,omitempty"`
}

// pipelinePoint is the in-memory pipeline at one batch size.
type pipelinePoint struct {
	Batch     int         `json:"batch"`
	Mpps      lab.Summary `json:"mpps"`
	Gbps      lab.Summary `json:"gbit_s"`
	AllocsPkt lab.Summary `json:"allocs_per_packet"`
}

// pipelineBatches are the batch sizes of BenchmarkPipeline.
var pipelineBatches = []int{1, 4, 16, 64, 128}

// newMicroReport summarises parsed go test -bench output.
func newMicroReport(r *benchResults) *microReport {
	m := &microReport{Order: r.order, Samples: r.samples, Summary: map[string]map[string]lab.Summary{}}
	for _, name := range r.order {
		m.Summary[name] = map[string]lab.Summary{}
		for unit, vs := range r.samples[name] {
			m.Summary[name][unit] = lab.Summarize(vs)
			m.Runs = max(m.Runs, len(vs))
		}
	}
	for _, b := range pipelineBatches {
		name := "BenchmarkPipeline/batch=" + strconv.Itoa(b)
		p := pipelinePoint{Batch: b, Mpps: m.Summary[name]["Mpps"], Gbps: m.Summary[name]["Gbit/s"], AllocsPkt: m.Summary[name]["allocs/pkt"]}
		if p.Mpps.OK() {
			m.Pipeline = append(m.Pipeline, p)
		}
	}
	return m
}

// results rebuilds the parsed form for printMicro.
func (m *microReport) results() *benchResults {
	return &benchResults{order: m.Order, samples: m.Samples}
}

// addRatios fills each row's ratios to the wireguard-go pair and the veth.
func addRatios(rows []e2eRow) {
	var wg, veth float64
	medians := map[string]float64{}
	for _, r := range rows {
		if !r.ok() || r.Flood != nil {
			continue
		}
		medians[r.Key] = r.Gbps.Median
		switch r.Kind {
		case lab.KindWireGuardGo:
			wg = r.Gbps.Median
		case lab.KindVeth:
			veth = r.Gbps.Median
		}
	}
	for i := range rows {
		r := &rows[i]
		if !r.ok() || r.Flood != nil || !r.Gbps.OK() {
			continue
		}
		if wg > 0 {
			r.VsWireGuardGo = r.Gbps.Median / wg
		}
		if veth > 0 {
			r.VsVeth = r.Gbps.Median / veth
		}
		r.VsInProcess = lab.InProcessRatio(r.Case, medians)
		r.VsReference = lab.ReferenceRatio(r.Case, medians)
	}
}

// readMachine describes this machine.
func readMachine() machineInfo {
	m := machineInfo{Cores: runtime.NumCPU(), GoVersion: runtime.Version(), LoadStart: loadavg()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.Model = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = "Linux " + strings.TrimSpace(string(b))
	}
	m.Iperf3 = firstLine("iperf3", "--version")
	return m
}

// loadavg returns the 1, 5 and 15 minute load averages.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// firstLine runs a command and returns the first line of its output.
func firstLine(name string, args ...string) string {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return ""
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(line)
}

func writeJSON(path string, rep *benchReport) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// gbit formats Gbit/s.
func gbit(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }

// ratio formats a ratio, "—" when missing.
func ratio(v float64) string {
	if v == 0 {
		return "—"
	}
	return strconv.FormatFloat(v, 'f', 2, 64) + "×"
}

// rssText formats a peak RSS in MiB.
func rssText(b int64) string {
	if b <= 0 {
		return "—"
	}
	return strconv.FormatFloat(float64(b)/(1<<20), 'f', 1, 64) + " MiB"
}

// procColumns renders the per-daemon CPU and memory columns of a row.
func procColumns(r e2eRow) (cpu, rss string) {
	if len(r.Procs) == 0 {
		return "—", "—"
	}
	var c, m []string
	for _, p := range r.Procs {
		who := p.Name[strings.LastIndexByte(p.Name, ' ')+1:]
		if p.CPUPerGbit.OK() {
			c = append(c, fmt.Sprintf("%s %.2f", who, p.CPUPerGbit.Median))
		}
		m = append(m, who+" "+rssText(p.PeakRSS))
	}
	if len(c) == 0 {
		c = []string{"—"}
	}
	return strings.Join(c, ", "), strings.Join(m, ", ")
}

// renderMarkdown writes the report as Markdown: the machine, the end-to-end
// table, the flood and the micro summary.
func renderMarkdown(w io.Writer, rep *benchReport) {
	fmt.Fprintf(w, "# Switchyard benchmark results\n\n")
	kind := "full run"
	if rep.Quick {
		kind = "QUICK smoke run — too short to quote"
	}
	m := rep.Machine
	fmt.Fprintf(w, "%s (%s); the end-to-end part took %s.\n\n", rep.Date.UTC().Format("2006-01-02 15:04 MST"), kind,
		time.Duration(rep.Elapsed*float64(time.Second)).Round(time.Second).String())
	fmt.Fprintf(w, "Machine: %d cores, %s, %s, %s", m.Cores, orNA(m.Model), orNA(m.Kernel), m.GoVersion)
	if m.Iperf3 != "" {
		fmt.Fprintf(w, ", %s", m.Iperf3)
	}
	fmt.Fprintf(w, ". Load average (1/5/15 min) at start %s, at end %s.\n\n", orNA(m.LoadStart), orNA(m.LoadEnd))

	s := rep.Settings
	fmt.Fprintf(w, "## End to end: iperf3 TCP, one stream, %g s, median of %d (min–max)\n\n", s.Seconds, s.Runs)
	fmt.Fprintln(w, "| configuration | Gbit/s | min–max | ÷ in-process | ÷ protocol reference | ÷ wireguard-go | ÷ veth | CPU s per Gbit (per process) | peak RSS |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |")
	for _, r := range rep.E2E {
		if r.Flood != nil || r.Case.Flood {
			continue
		}
		if !r.ok() {
			fmt.Fprintf(w, "| %s | %s | | | | | | | |\n", r.Label, r.Status)
			continue
		}
		cpu, rss := procColumns(r)
		fmt.Fprintf(w, "| %s | %s | %s–%s | %s | %s | %s | %s | %s | %s |\n", r.Label, gbit(r.Gbps.Median),
			gbit(r.Gbps.Min), gbit(r.Gbps.Max), ratio(r.VsInProcess), ratio(r.VsReference), ratio(r.VsWireGuardGo), ratio(r.VsVeth), cpu, rss)
	}
	fmt.Fprintln(w)
	for _, r := range rep.E2E {
		if !r.Case.Flood {
			continue
		}
		renderFlood(w, r, s)
	}
	if rep.Micro != nil {
		fmt.Fprintf(w, "## Micro: go test -bench, median (min–max) of %d runs\n\n```\n", rep.Micro.Runs)
		var b bytes.Buffer
		printMicro(&b, rep.Micro.results())
		fmt.Fprint(w, strings.TrimSpace(b.String()))
		fmt.Fprint(w, "\n```\n\n")
		for _, n := range rep.Micro.NotBuilt {
			fmt.Fprintf(w, "Not measured: %s — %s.\n\n", n, lab.NotBuiltReason)
		}
	}
}

func renderFlood(w io.Writer, r e2eRow, s benchSettings) {
	fmt.Fprintf(w, "## UDP flood: iperf3 -u -b %s -l %d for %g s through %s\n\n", s.FloodRate, s.FloodLen, s.FloodSeconds,
		strings.TrimSuffix(r.Label, ", UDP flood"))
	if !r.ok() {
		fmt.Fprintf(w, "%s\n\n", r.Status)
		return
	}
	f := r.Flood
	fmt.Fprintf(w, "Offered %s Gbit/s (what the iperf3 client sent), delivered %s Gbit/s (iperf3 receiver), "+
		"%d of %d datagrams lost end to end (%.1f %%).\n\n", gbit(f.SentGbps), gbit(f.Gbps), f.LostPackets, f.Packets, f.LostPercent)
	fmt.Fprintln(w, "| daemon | actor | packets in | packets out | drops (by reason) | mailbox high-water / capacity (batches) |")
	fmt.Fprintln(w, "| --- | --- | ---: | ---: | --- | --- |")
	for _, a := range f.Actors {
		if a.InPackets == 0 && a.OutPackets == 0 && a.Dropped() == 0 {
			continue // an actor the flood never reached (dead letters)
		}
		hw := "—"
		if a.Capacity > 0 {
			hw = fmt.Sprintf("%d / %d", a.HighWater, a.Capacity)
		}
		fmt.Fprintf(w, "| %s | %s | %d | %d | %s | %s |\n", a.Daemon, a.Actor, a.InPackets, a.OutPackets, dropsText(a.Drops), hw)
	}
	fmt.Fprintln(w)
	cpu, rss := procColumns(r)
	fmt.Fprintf(w, "Peak RSS (VmHWM) per daemon: %s. CPU s per delivered Gbit: %s.\n\n", rss, cpu)
}

func dropsText(d map[string]uint64) string {
	if len(d) == 0 {
		return "0"
	}
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, d[k])
	}
	return strings.Join(parts, ", ")
}

func orNA(s string) string {
	if s == "" {
		return "n/a"
	}
	return s
}
