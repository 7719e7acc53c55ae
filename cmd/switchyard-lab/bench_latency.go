package main

// The latency part of the report (issue 21) and the references' ratios
// (issue 14):
//
//  1. Every udp row gets "÷ bare forwarder": its median over the bare
//     forwarder pair's, from the same run.
//  2. A row run interleaved with its reference (lab.Case.Ref) gets the
//     ratio of each round to the reference's same round, summarised as
//     median (min–max): the spread of the ratio itself.
//  3. A latency row (lab.Case.Latency) gets p50/p99 of its RTTs, idle and
//     loaded, all rounds pooled; its loaded p99 over the bare forwarder's
//     and the wireguard-go pair's; its idle p50 less the bare forwarder's;
//     and per round, its loaded p99 over its reference's.
//  4. latest-latency.png: the RTT CDF of every latency row, idle and
//     loaded side by side.
//
// All of it is pure: computed from the rows, rendered from the report.

import (
	"errors"
	"fmt"
	"image/color"
	"io"
	"math"
	"sort"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"switchyard/internal/lab"
)

// rttSummary is one phase (idle or loaded) of a latency row, in µs.
type rttSummary struct {
	P50  float64 `json:"p50_us"`
	P99  float64 `json:"p99_us"`
	N    int     `json:"replies"`
	Sent int     `json:"sent"`
	// RoundP99 is the p99 of each round alone, summarised.
	RoundP99 lab.Summary `json:"round_p99_us"`
}

// latencySummary is the latency of a row and its comparisons.
type latencySummary struct {
	Idle   rttSummary `json:"idle"`
	Loaded rttSummary `json:"loaded"`
	// LoadedP99VsBare and LoadedP99VsWireGuardGo are the loaded p99 over
	// the bare forwarder pair's and the wireguard-go pair's; 0 when either
	// is missing.
	LoadedP99VsBare        float64 `json:"loaded_p99_ratio_to_bare,omitempty"`
	LoadedP99VsWireGuardGo float64 `json:"loaded_p99_ratio_to_wireguard_go,omitempty"`
	// IdleP50OverBare is the idle p50 less the bare forwarder pair's, µs;
	// HasBare says whether there was one to subtract.
	IdleP50OverBare float64 `json:"idle_p50_over_bare_us,omitempty"`
	HasBare         bool    `json:"has_bare,omitempty"`
	// LoadedP99VsRef is, per round, the loaded p99 over the reference's
	// (lab.Case.Ref) in the same round.
	LoadedP99VsRef lab.Summary `json:"loaded_p99_ratio_to_ref_per_round"`
}

// summarizeRTT summarises the samples of one phase.
func summarizeRTT(samples []lab.RTTSample) rttSummary {
	rtts, sent := lab.Pooled(samples)
	s := rttSummary{N: len(rtts), Sent: sent}
	if len(rtts) == 0 {
		return s
	}
	s.P50, s.P99 = lab.Quantile(rtts, 0.5), lab.Quantile(rtts, 0.99)
	var per []float64
	for _, r := range samples {
		if len(r.RTTs) > 0 {
			per = append(per, lab.Quantile(r.RTTs, 0.99))
		}
	}
	s.RoundP99 = lab.Summarize(per)
	return s
}

// roundRatios is, for each round both rows have, f(row's round) over
// f(ref's round), summarised; rounds where either is 0 are left out.
func roundRatios(n int, own, ref func(i int) float64) lab.Summary {
	var v []float64
	for i := range n {
		if a, b := own(i), ref(i); a > 0 && b > 0 {
			v = append(v, a/b)
		}
	}
	return lab.Summarize(v)
}

// addReferenceRatios fills VsBare, VsRef and the latency summaries (steps
// 1–3 of the file comment); addRatios calls it.
func addReferenceRatios(rows []e2eRow) {
	byKey := map[string]*e2eRow{}
	var bare, wgGo *e2eRow
	for i := range rows {
		r := &rows[i]
		if !r.ok() || r.Flood != nil {
			continue
		}
		byKey[r.Key] = r
		if r.Latency != nil {
			r.Lat = &latencySummary{Idle: summarizeRTT(r.Latency.Idle), Loaded: summarizeRTT(r.Latency.Loaded)}
		}
		switch r.Kind {
		case lab.KindBare:
			bare = r
		case lab.KindWireGuardGo:
			wgGo = r
		}
	}
	for _, r := range byKey {
		if r.Kind == lab.KindUDP && bare != nil && bare.Gbps.Median > 0 && r.Gbps.OK() {
			r.VsBare = r.Gbps.Median / bare.Gbps.Median
		}
		if ref := byKey[r.Ref]; ref != nil {
			r.VsRef = roundRatios(min(len(r.Runs), len(ref.Runs)),
				func(i int) float64 { return r.Runs[i].Gbps }, func(i int) float64 { return ref.Runs[i].Gbps })
		}
		l := r.Lat
		if l == nil {
			continue
		}
		if bare != nil && bare.Lat != nil {
			if b := bare.Lat.Loaded.P99; b > 0 && l.Loaded.N > 0 {
				l.LoadedP99VsBare = l.Loaded.P99 / b
			}
			if bare.Lat.Idle.N > 0 && l.Idle.N > 0 {
				l.IdleP50OverBare, l.HasBare = l.Idle.P50-bare.Lat.Idle.P50, true
			}
		}
		if wgGo != nil && wgGo.Lat != nil {
			if w := wgGo.Lat.Loaded.P99; w > 0 && l.Loaded.N > 0 {
				l.LoadedP99VsWireGuardGo = l.Loaded.P99 / w
			}
		}
		if ref := byKey[r.Ref]; ref != nil && ref.Latency != nil {
			own, theirs := r.Latency.Loaded, ref.Latency.Loaded
			p99 := func(s []lab.RTTSample, i int) float64 {
				if len(s[i].RTTs) == 0 {
					return 0
				}
				return lab.Quantile(s[i].RTTs, 0.99)
			}
			l.LoadedP99VsRef = roundRatios(min(len(own), len(theirs)),
				func(i int) float64 { return p99(own, i) }, func(i int) float64 { return p99(theirs, i) })
		}
	}
}

// us formats µs without decimals ("1 470"), "—" for none.
func us(v float64, n int) string {
	if n == 0 || math.IsNaN(v) {
		return "—"
	}
	return strconv.FormatFloat(math.Round(v), 'f', 0, 64)
}

// spread formats a per-round summary "1.12× (1.05–1.20)", "—" for none.
func spread(s lab.Summary) string {
	if !s.OK() {
		return "—"
	}
	return fmt.Sprintf("%.2f× (%.2f–%.2f)", s.Median, s.Min, s.Max)
}

// signedUS formats a difference in µs: "+40", "−12".
func signedUS(v float64) string {
	if v < 0 {
		return "−" + strconv.FormatFloat(math.Round(-v), 'f', 0, 64)
	}
	return "+" + strconv.FormatFloat(math.Round(v), 'f', 0, 64)
}

// renderLatency writes the latency table, if any row has latency.
func renderLatency(w io.Writer, rep *benchReport) {
	var rows []e2eRow
	for _, r := range rep.E2E {
		if r.Case.Latency {
			rows = append(rows, r)
		}
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(w, "## Latency: ICMP echo RTT (µs), %d pings %v apart, idle and under one iperf3 TCP stream (the rounds pooled: %d)\n\n",
		lab.LatencyPings, lab.LatencyInterval, rep.Settings.Runs)
	fmt.Fprintln(w, "| configuration | idle p50 | idle p99 | loaded p50 | loaded p99 | lost (idle, loaded) | loaded p99 ÷ bare forwarder | loaded p99 ÷ wireguard-go | idle p50 − bare forwarder | loaded p99 ÷ reference, per round | loaded p99 per round |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |")
	for _, r := range rows {
		if !r.ok() || r.Lat == nil {
			status := r.Status
			if r.ok() {
				status = "no latency measured"
			}
			fmt.Fprintf(w, "| %s | %s | | | | | | | | | |\n", r.Label, status)
			continue
		}
		l := r.Lat
		over := "—"
		if l.HasBare {
			over = signedUS(l.IdleP50OverBare)
		}
		roundP99 := "—"
		if s := l.Loaded.RoundP99; s.OK() {
			roundP99 = fmt.Sprintf("%s (%s–%s)", us(s.Median, 1), us(s.Min, 1), us(s.Max, 1))
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %d, %d | %s | %s | %s | %s | %s |\n", r.Label,
			us(l.Idle.P50, l.Idle.N), us(l.Idle.P99, l.Idle.N), us(l.Loaded.P50, l.Loaded.N), us(l.Loaded.P99, l.Loaded.N),
			l.Idle.Sent-l.Idle.N, l.Loaded.Sent-l.Loaded.N,
			ratio(l.LoadedP99VsBare), ratio(l.LoadedP99VsWireGuardGo), over, spread(l.LoadedP99VsRef), roundP99)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Goals (issue 21): udp loaded p99 ≤ 1.0× the bare forwarder's; wireguard loaded p99 ≤ 1.0× wireguard-go's; "+
		"udp idle p50 ≤ the bare forwarder's + 30 µs.")
	fmt.Fprintln(w)
}

// cdfColors tell the lines of the CDF apart: references grey and black,
// switchyard in blues and a red.
var cdfColors = map[lab.CaseKind]color.Color{
	lab.KindVeth:        color.RGBA{R: 170, G: 170, B: 170, A: 255},
	lab.KindBare:        color.RGBA{R: 0, G: 0, B: 0, A: 255},
	lab.KindWireGuardGo: color.RGBA{R: 120, G: 120, B: 120, A: 255},
	lab.KindUDP:         color.RGBA{R: 40, G: 100, B: 180, A: 255},
	lab.KindWireGuard:   color.RGBA{R: 200, G: 60, B: 40, A: 255},
}

// cdfPoints is the empirical CDF of v: sorted values against i/n.
func cdfPoints(v []float64) plotter.XYs {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	pts := make(plotter.XYs, 0, len(s))
	for i, x := range s {
		if x > 0 { // a log axis
			pts = append(pts, plotter.XY{X: x, Y: float64(i+1) / float64(len(s))})
		}
	}
	return pts
}

// cdfPlot draws one phase's CDF of every latency row on a log RTT axis.
func cdfPlot(title string, rep *benchReport, phase func(*lab.Latency) []lab.RTTSample) (*plot.Plot, bool, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "RTT (µs, log scale)"
	p.Y.Label.Text = "fraction of pings"
	p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
	p.Y.Min, p.Y.Max = 0, 1
	p.Legend.Top, p.Legend.Left = false, false // bottom right: the curves rise on the left
	p.Add(plotter.NewGrid())
	drawn := false
	for _, r := range rep.E2E {
		if !r.ok() || r.Latency == nil {
			continue
		}
		rtts, _ := lab.Pooled(phase(r.Latency))
		pts := cdfPoints(rtts)
		if len(pts) == 0 {
			continue
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return nil, false, err
		}
		l.Color, l.Width = cdfColors[r.Kind], vg.Points(1.5)
		if r.Kind == lab.KindVeth || r.Kind == lab.KindWireGuardGo {
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(2)}
		}
		p.Add(l)
		p.Legend.Add(shortLabel(r.Case), l)
		drawn = true
	}
	return p, drawn, nil
}

// writeLatencyPlot writes the RTT CDFs, idle and loaded, to path; nothing
// (and no error) when no row has latency.
func writeLatencyPlot(rep *benchReport, path string) error {
	idle, ok1, err := cdfPlot("RTT CDF, idle tunnel", rep, func(l *lab.Latency) []lab.RTTSample { return l.Idle })
	if err != nil {
		return err
	}
	loaded, ok2, err := cdfPlot("RTT CDF, one iperf3 TCP stream", rep, func(l *lab.Latency) []lab.RTTSample { return l.Loaded })
	if err != nil {
		return err
	}
	switch {
	case ok1 && ok2:
		return savePNG(path, plotWidth, idle, loaded)
	case ok1:
		return savePNG(path, plotWidth, idle)
	case ok2:
		return savePNG(path, plotWidth, loaded)
	}
	return errNoLatency
}

// errNoLatency: no row measured latency, so there is no latency plot.
var errNoLatency = errors.New("plot: no row measured latency")

// e2eGoal is one goal of issues 14 and 21, judged from a run.
type e2eGoal struct {
	What, Want, Got string
	Verdict         string // "met", "MISSED" or "not measured"
}

// e2eGoals judges the end-to-end goals of issues 14 and 21 on the rows:
// throughput ratios by the interleaved per-round median where the row has
// one (else the ratio of medians), latency by the pooled percentiles.
func e2eGoals(rows []e2eRow) []e2eGoal {
	byKey := map[string]e2eRow{}
	for _, r := range rows {
		if r.ok() {
			byKey[r.Key] = r
		}
	}
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "MISSED"
	}
	var goals []e2eGoal
	throughput := func(what, key string, median float64, want string, ok func(float64) bool) {
		g := e2eGoal{What: what, Want: want, Got: "—", Verdict: "not measured"}
		r, found := byKey[key]
		v := median
		if found && r.VsRef.OK() {
			v = r.VsRef.Median
		}
		if found && v > 0 {
			g.Got, g.Verdict = fmt.Sprintf("%.2f×", v), verdict(ok(v))
			if r.VsRef.OK() {
				g.Got += fmt.Sprintf(" (%.2f–%.2f, rounds: %d)", r.VsRef.Min, r.VsRef.Max, r.VsRef.N)
			}
		}
		goals = append(goals, g)
	}
	udp, wg := byKey["udp-b128"], byKey["wireguard-b128"]
	throughput("udp batch 128 ÷ bare forwarder, Gbit/s (issue 14)", "udp-b128", udp.VsBare, "≥ 0.90×",
		func(v float64) bool { return v >= 0.9 })
	throughput("wireguard ÷ wireguard-go, Gbit/s (issue 14)", "wireguard-b128", wg.VsWireGuardGo, "≥ 1.05×",
		func(v float64) bool { return v >= 1.05 })
	latency := func(what string, l *latencySummary, get func(*latencySummary) (float64, bool), format string, want string, ok func(float64) bool) {
		g := e2eGoal{What: what, Want: want, Got: "—", Verdict: "not measured"}
		if l != nil {
			if v, has := get(l); has {
				g.Got, g.Verdict = fmt.Sprintf(format, v), verdict(ok(v))
			}
		}
		goals = append(goals, g)
	}
	latency("udp loaded p99 ÷ bare forwarder's (issue 21)", udp.Lat,
		func(l *latencySummary) (float64, bool) { return l.LoadedP99VsBare, l.LoadedP99VsBare > 0 },
		"%.2f×", "≤ 1.00×", func(v float64) bool { return v <= 1 })
	latency("wireguard loaded p99 ÷ wireguard-go's (issue 21)", wg.Lat,
		func(l *latencySummary) (float64, bool) { return l.LoadedP99VsWireGuardGo, l.LoadedP99VsWireGuardGo > 0 },
		"%.2f×", "≤ 1.00×", func(v float64) bool { return v <= 1 })
	latency("udp idle p50 − bare forwarder's, µs (issue 21)", udp.Lat,
		func(l *latencySummary) (float64, bool) { return l.IdleP50OverBare, l.HasBare },
		"%+.0f", "≤ +30", func(v float64) bool { return v <= 30 })
	return goals
}

// renderGoals writes the goals of issues 14 and 21 as a table.
func renderGoals(w io.Writer, rows []e2eRow) {
	fmt.Fprintln(w, "## End-to-end goals (issues 14 and 21), this run")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| goal | this run | want | |")
	fmt.Fprintln(w, "| --- | ---: | ---: | --- |")
	for _, g := range e2eGoals(rows) {
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", g.What, g.Got, g.Want, g.Verdict)
	}
	fmt.Fprintln(w)
}
