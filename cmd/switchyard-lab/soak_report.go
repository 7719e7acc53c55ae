package main

// The soak's report: the text (soak.txt) and the plot of the samples over
// time (soak.png: RSS, goroutines and open fds per process).

import (
	"fmt"
	"image/color"
	"io"
	"sort"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// renderSoak writes the text report.
func renderSoak(w io.Writer, rep *soakReport) {
	fmt.Fprintln(w, "# switchyard soak")
	keys := make([]string, 0, len(rep.Settings))
	for k := range rep.Settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "%-15s %s\n", k, rep.Settings[k])
	}
	fmt.Fprintf(w, "load            %s\n", rep.Iperf)
	count := map[string]int{}
	for _, e := range rep.Events {
		count[e.What]++
	}
	fmt.Fprintf(w, "events          %d reloads, %d kills (%d opens of the instance), %d SIGSTOPs, %d transfers\n",
		count["reload"], rep.Kills, rep.Opens, count["sigstop"], rep.Transfers)
	fmt.Fprintln(w, "\n## a→b, packets")
	writeCounts(w, rep.AtoB, []string{"handed_to_host", "completed_by_host", "host_lost", "host_protocol_dropped", "kernel_udp_errors", "received_by_b", "uncounted", "overcounted"})
	fmt.Fprintln(w, "\n## b→a, packets (reported: a killed host's socket buffer dies uncounted)")
	writeCounts(w, rep.BtoA, []string{"sent_by_b", "received_by_host", "a_no_port", "a_rcvbuf_errors", "b_sndbuf_errors"})
	if n := len(rep.Samples); n > 0 {
		first, last := rep.Samples[0], rep.Samples[n-1]
		fmt.Fprintln(w, "\n## processes, first → last sample")
		fmt.Fprintf(w, "%-5s %-24s %-12s %-10s %-16s %s\n", "", "rss MiB", "goroutines", "fds", "heap MiB", "pool high-water")
		for _, p := range []string{"a", "b", "host"} {
			pool := ""
			if n, ok := last.PoolMade[p]; ok {
				pool = fmt.Sprintf("%d → %d buffers, %.1f MiB", first.PoolMade[p], n, float64(n)*float64(last.BufBytes)/(1<<20))
			}
			fmt.Fprintf(w, "%-5s %-24s %-12s %-10s %-16s %s\n", p,
				fmt.Sprintf("%.1f → %.1f (max %.1f)", mibf(first.RSS[p]), mibf(last.RSS[p]), mibf(maxRSS(rep.Samples, p))),
				fmt.Sprintf("%.0f → %.0f", first.Goroutines[p], last.Goroutines[p]),
				fmt.Sprintf("%d → %d", first.FDs[p], last.FDs[p]),
				fmt.Sprintf("%.1f → %.1f", first.HeapInuse[p]/(1<<20), last.HeapInuse[p]/(1<<20)), pool)
		}
	}
	fmt.Fprintln(w, "\n## checks")
	for _, c := range rep.Checks {
		mark := "ok  "
		if !c.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(w, "%s  %s: %s\n", mark, c.Name, c.Got)
	}
	var bad []string
	for _, e := range rep.Events {
		if !e.OK {
			bad = append(bad, fmt.Sprintf("%.1fs %s: %s", e.T, e.What, e.Note))
		}
	}
	if len(bad) > 0 {
		fmt.Fprintln(w, "\n## failed events")
		fmt.Fprintln(w, strings.Join(bad, "\n"))
	}
}

func writeCounts(w io.Writer, m map[string]uint64, order []string) {
	for _, k := range order {
		fmt.Fprintf(w, "%-22s %d\n", k, m[k])
	}
}

func mibf(b int64) float64 { return float64(b) / (1 << 20) }

func maxRSS(samples []soakSample, p string) int64 {
	var m int64
	for _, s := range samples {
		m = max(m, s.RSS[p])
	}
	return m
}

// soakPlot draws RSS (MiB), goroutines and open fds over time, one line per
// process, side by side.
func soakPlot(rep *soakReport, path string) error {
	type series struct {
		title, ylabel string
		value         func(s soakSample, p string) (float64, bool)
		procs         []string
	}
	all := []series{
		{"resident memory", "MiB", func(s soakSample, p string) (float64, bool) { v, ok := s.RSS[p]; return mibf(v), ok }, []string{"a", "b", "host"}},
		{"goroutines", "goroutines", func(s soakSample, p string) (float64, bool) { v, ok := s.Goroutines[p]; return v, ok }, []string{"a", "b"}},
		{"open file descriptors", "fds", func(s soakSample, p string) (float64, bool) { v, ok := s.FDs[p]; return float64(v), ok }, []string{"a", "b", "host"}},
	}
	colors := map[string]color.Color{"a": color.RGBA{0x1f, 0x77, 0xb4, 0xff}, "b": color.RGBA{0xff, 0x7f, 0x0e, 0xff}, "host": color.RGBA{0x2c, 0xa0, 0x2c, 0xff}}
	var plots []*plot.Plot
	for _, se := range all {
		p := plot.New()
		p.Title.Text = se.title
		p.X.Label.Text = "seconds"
		p.Y.Label.Text = se.ylabel
		p.Y.Min = 0
		for _, proc := range se.procs {
			var xy plotter.XYs
			for _, s := range rep.Samples {
				if v, ok := se.value(s, proc); ok {
					xy = append(xy, plotter.XY{X: s.T, Y: v})
				}
			}
			if len(xy) == 0 {
				continue
			}
			line, err := plotter.NewLine(xy)
			if err != nil {
				return err
			}
			line.Color = colors[proc]
			line.Width = vg.Points(1.5)
			p.Add(line)
			p.Legend.Add(proc, line)
		}
		p.Legend.Top = true
		plots = append(plots, p)
	}
	return savePNG(path, 3*plotWidth/2, plots...)
}
