package lab

// The WireGuard pair of the end-to-end benchmark on its own (issue 3's
// row, run by TestWireGuardBench): iperf3 TCP, one stream, between two
// namespaces through (a) two wireguard-go binaries (the reference) and (b)
// two switchyard daemons with the wireguard protocol, in the same run, the
// median of a few runs each, and the ratio b/a. `switchyard bench e2e` runs
// the same two cases among the others.

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// WGBenchOptions configure WireGuardBench.
type WGBenchOptions struct {
	Binary      string        // switchyard binary (build it without -race)
	Tools       string        // switchyard-lab binary of the traffic tools
	WireGuardGo string        // wireguard-go binary (BuildWireGuardGo)
	Runs        int           // iperf3 runs per setup; 0 means 3
	Duration    time.Duration // per run; 0 means 10 s
	// Profile, if set, is a file that receives a CPU profile of side a's
	// switchyard daemon taken during its first run (from the admin
	// endpoint's /debug/pprof/profile).
	Profile string
	// Log, if set, receives progress lines.
	Log func(format string, args ...any)
}

// WGBenchResult is the benchmark's outcome, in Gbit/s.
type WGBenchResult struct {
	WireGuardGo []float64 // each run of the reference pair
	Switchyard  []float64 // each run of the switchyard pair
	RefMedian   float64
	SYMedian    float64
	Ratio       float64 // SYMedian / RefMedian; goal ≥ 1.0
}

// String prints the row of `make bench`.
func (r WGBenchResult) String() string {
	return fmt.Sprintf("wireguard e2e (iperf3 TCP, 1 stream, median of %d): wireguard-go pair %.2f Gbit/s %v | switchyard pair %.2f Gbit/s %v | ratio %.2f (goal ≥ 1.0)",
		len(r.Switchyard), r.RefMedian, fmtRuns(r.WireGuardGo), r.SYMedian, fmtRuns(r.Switchyard), r.Ratio)
}

func fmtRuns(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.FormatFloat(x, 'f', 2, 64)
	}
	return "[" + strings.Join(s, " ") + "]"
}

// WireGuardBench runs the benchmark. It needs root, iperf3 and wg.
func WireGuardBench(ctx context.Context, o WGBenchOptions) (WGBenchResult, error) {
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	eo := E2EOptions{Binary: o.Binary, Tools: o.Tools, WireGuardGo: o.WireGuardGo, Runs: o.Runs, Duration: o.Duration, Log: o.Log}
	var r WGBenchResult
	for _, c := range Cases() {
		if c.Kind != KindWireGuardGo && c.Kind != KindWireGuard {
			continue
		}
		co := eo
		if c.Kind == KindWireGuard {
			co.Profile = o.Profile
		}
		res, err := RunCase(ctx, c, co)
		if err != nil {
			return r, fmt.Errorf("%s: %w", c.Label, err)
		}
		for i, run := range res.Runs {
			o.Log("%s, run %d: %.2f Gbit/s", c.Label, i+1, run.Gbps)
			if c.Kind == KindWireGuard {
				r.Switchyard = append(r.Switchyard, run.Gbps)
			} else {
				r.WireGuardGo = append(r.WireGuardGo, run.Gbps)
			}
		}
	}
	r.RefMedian, r.SYMedian = median(r.WireGuardGo), median(r.Switchyard)
	if r.RefMedian > 0 {
		r.Ratio = r.SYMedian / r.RefMedian
	}
	return r, nil
}
