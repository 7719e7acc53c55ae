package main

// The plots of `make bench`, drawn with gonum.org/v1/plot:
//
//	latest.png        end-to-end TCP throughput per configuration, median
//	                  bars with min–max error bars
//	latest-sweep.png  the batch-size sweep: the in-memory pipeline's Mpps at
//	                  batch 1…128 (micro part) next to the udp tunnel end to
//	                  end at batch 1 and 128
//	latest-latency.png the RTT CDFs, idle and loaded (bench_latency.go)

import (
	"errors"
	"fmt"
	"image/color"
	"os"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"switchyard/internal/lab"
)

// Sizes of the plots.
const (
	plotWidth  = 22 * vg.Centimeter // room for six labelled bars
	plotHeight = 12 * vg.Centimeter
	plotDPI    = 110 // readable on a screen, a few tens of KiB
)

// shortLabels name the bars; the table has the long labels.
var shortLabels = map[string]string{
	"veth":              "veth (ceiling)",
	"wireguard-go":      "wireguard-go pair",
	"bare":              "bare forwarder pair",
	"udp-b128":          "sy udp b128",
	"udp-b1":            "sy udp b1",
	"wireguard-b128":    "sy wireguard b128",
	"openvpn":           "openvpn pair",
	"openvpn-sy-client": "sy ovpn client↔openvpn",
	"openvpn-sy-pair":   "sy openvpn pair",
}

func shortLabel(c lab.Case) string {
	if s, ok := shortLabels[c.Key]; ok {
		return s
	}
	return c.Key
}

// bar is one bar with its range.
type bar struct {
	label string
	s     lab.Summary
	color color.Color
}

// Colours: the kernel and the reference in greys, switchyard in blue.
var (
	colorRef = color.RGBA{R: 150, G: 150, B: 150, A: 255}
	colorSY  = color.RGBA{R: 40, G: 100, B: 180, A: 255}
)

// barPlot draws bars (median) with min–max error bars and the median
// written above each.
func barPlot(title, ylabel string, bars []bar) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = ylabel
	p.Y.Min = 0
	grid := plotter.NewGrid()
	grid.Vertical.Color = nil // only the horizontal lines: they read off the values
	p.Add(grid)
	names := make([]string, len(bars))
	pts := make(plotter.XYs, len(bars))
	errs := make(plotter.YErrors, len(bars))
	labels := make([]string, len(bars))
	top := 0.0
	for i, b := range bars {
		names[i] = b.label
		pts[i] = plotter.XY{X: float64(i), Y: b.s.Median}
		errs[i].Low, errs[i].High = b.s.Median-b.s.Min, b.s.Max-b.s.Median
		labels[i] = strconv.FormatFloat(b.s.Median, 'f', 2, 64)
		top = max(top, b.s.Max)
		vs := make(plotter.Values, len(bars)) // one series per bar, for its colour
		vs[i] = b.s.Median
		bc, err := plotter.NewBarChart(vs, vg.Centimeter*1.6)
		if err != nil {
			return nil, err
		}
		bc.Color, bc.LineStyle.Width = b.color, 0
		p.Add(bc)
	}
	eb, err := plotter.NewYErrorBars(struct {
		plotter.XYs
		plotter.YErrors
	}{pts, errs})
	if err != nil {
		return nil, err
	}
	eb.LineStyle.Width = vg.Points(1.2)
	p.Add(eb)
	lpts := make(plotter.XYs, len(bars))
	for i := range bars {
		lpts[i] = plotter.XY{X: float64(i), Y: bars[i].s.Max + top*0.02}
	}
	lb, err := plotter.NewLabels(plotter.XYLabels{XYs: lpts, Labels: labels})
	if err != nil {
		return nil, err
	}
	for i := range lb.TextStyle {
		lb.TextStyle[i].XAlign = draw.XCenter
	}
	p.Add(lb)
	p.Y.Max = top * 1.12
	p.NominalX(names...)
	p.X.Min, p.X.Max = -0.6, float64(len(bars))-0.4
	return p, nil
}

// e2eBars are the TCP rows that were measured.
func e2eBars(rep *benchReport) []bar {
	var bars []bar
	for _, r := range rep.E2E {
		if !r.ok() || r.Case.Flood || !r.Gbps.OK() {
			continue
		}
		c := colorSY
		if r.Kind == lab.KindVeth || r.Kind == lab.KindWireGuardGo || r.Kind == lab.KindBare || r.Kind == lab.KindIPsecStrongSwan {
			c = colorRef
		}
		bars = append(bars, bar{label: shortLabel(r.Case), s: r.Gbps, color: c})
	}
	return bars
}

// savePNG draws plots side by side into a PNG file.
func savePNG(path string, width vg.Length, plots ...*plot.Plot) error {
	img := vgimg.NewWith(vgimg.UseWH(width, plotHeight), vgimg.UseDPI(plotDPI))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: len(plots), PadX: vg.Centimeter, PadTop: vg.Millimeter * 3,
		PadBottom: vg.Millimeter * 3, PadLeft: vg.Millimeter * 3, PadRight: vg.Millimeter * 3}
	canvases := plot.Align([][]*plot.Plot{plots}, tiles, dc)
	for i, p := range plots {
		p.Draw(canvases[0][i])
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writePlots writes latest.png and latest-sweep.png (names given).
func writePlots(rep *benchReport, mainPath, sweepPath string) error {
	bars := e2eBars(rep)
	if len(bars) == 0 {
		return errors.New("plot: no end-to-end row was measured")
	}
	title := fmt.Sprintf("iperf3 TCP, 1 stream, %g s × %d (median, min–max) — %d cores, %s",
		rep.Settings.Seconds, rep.Settings.Runs, rep.Machine.Cores, rep.Date.UTC().Format("2006-01-02"))
	p, err := barPlot(title, "Gbit/s", bars)
	if err != nil {
		return err
	}
	if err := savePNG(mainPath, plotWidth, p); err != nil {
		return err
	}

	var sweep []*plot.Plot
	if rep.Micro != nil && len(rep.Micro.Pipeline) > 0 {
		var mb []bar
		for _, pt := range rep.Micro.Pipeline {
			mb = append(mb, bar{label: "batch " + strconv.Itoa(pt.Batch), s: pt.Mpps, color: colorSY})
		}
		mp, err := barPlot("in-memory pipeline, 1400-byte packets", "Mpps", mb)
		if err != nil {
			return err
		}
		sweep = append(sweep, mp)
	}
	var ub []bar
	for _, key := range []string{"udp-b1", "udp-b128"} {
		for _, r := range rep.E2E {
			if r.Key == key && r.ok() && r.Gbps.OK() {
				ub = append(ub, bar{label: "batch " + strconv.Itoa(r.Batch), s: r.Gbps, color: colorSY})
			}
		}
	}
	if len(ub) > 0 {
		up, err := barPlot("udp tunnel end to end, iperf3 TCP", "Gbit/s", ub)
		if err != nil {
			return err
		}
		sweep = append(sweep, up)
	}
	if len(sweep) == 0 {
		return nil
	}
	return savePNG(sweepPath, plotWidth, sweep...)
}
