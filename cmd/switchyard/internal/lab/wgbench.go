package lab

// The end-to-end WireGuard benchmark of `make bench`: iperf3 TCP, one
// stream, between two namespaces through (a) two wireguard-go binaries (the
// reference) and (b) two switchyard daemons with the wireguard protocol, in
// the same run, the median of a few runs each, and the ratio b/a.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"time"
)

// WGBenchOptions configure WireGuardBench.
type WGBenchOptions struct {
	Binary      string        // switchyard binary (build it without -race)
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
	if o.Runs <= 0 {
		o.Runs = 3
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	for _, tool := range []string{"iperf3", "wg"} {
		if _, err := exec.LookPath(tool); err != nil {
			return WGBenchResult{}, fmt.Errorf("wireguard bench: %s is not installed", tool)
		}
	}
	var r WGBenchResult
	var err error
	if r.WireGuardGo, err = wgBenchSetup(ctx, o, false); err != nil {
		return r, fmt.Errorf("wireguard-go pair: %w", err)
	}
	if r.Switchyard, err = wgBenchSetup(ctx, o, true); err != nil {
		return r, fmt.Errorf("switchyard pair: %w", err)
	}
	r.RefMedian, r.SYMedian = median(r.WireGuardGo), median(r.Switchyard)
	if r.RefMedian > 0 {
		r.Ratio = r.SYMedian / r.RefMedian
	}
	return r, nil
}

// wgBenchSetup builds one lab with two WireGuard ends (switchyard daemons or
// wireguard-go) and returns the throughput of each iperf3 run from a to b.
func wgBenchSetup(ctx context.Context, o WGBenchOptions, switchyard bool) (_ []float64, err error) {
	l, err := New(ctx, Options{Binary: o.Binary})
	if err != nil {
		return nil, err
	}
	var stops []func()
	defer func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
		if cerr := l.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	ka, err := NewWGKey()
	if err != nil {
		return nil, err
	}
	kb, err := NewWGKey()
	if err != nil {
		return nil, err
	}
	fa, err := l.WriteKeyFile("a.key", ka)
	if err != nil {
		return nil, err
	}
	fb, err := l.WriteKeyFile("b.key", kb)
	if err != nil {
		return nil, err
	}
	peers := map[*Side]WGPeer{
		l.A: {PublicKey: kb.Public, Endpoint: endpointOf(l.B)},
		l.B: {PublicKey: ka.Public, Endpoint: endpointOf(l.A)},
	}
	keys := map[*Side]string{l.A: fa, l.B: fb}
	for _, s := range []*Side{l.A, l.B} {
		if switchyard {
			if _, err := l.StartDaemonYAML(ctx, s, l.WireGuardYAML(s, keys[s], peers[s], "warn")); err != nil {
				return nil, err
			}
		} else {
			g, err := l.StartWireGuardGo(ctx, o.WireGuardGo, s, keys[s], peers[s])
			if err != nil {
				return nil, err
			}
			stops = append(stops, g.Stop)
		}
	}
	if err := l.PingUntil(ctx, l.A, l.B.TUN4, 10*time.Second); err != nil {
		return nil, err
	}
	server, err := l.Command(ctx, l.B, "iperf3", "-s", "-B", l.B.TUN4.String())
	if err != nil {
		return nil, err
	}
	if err := server.Start(); err != nil {
		l.Done(server)
		return nil, fmt.Errorf("start iperf3 server: %w", err)
	}
	stops = append(stops, func() { _ = server.Process.Kill(); _ = server.Wait(); l.Done(server) })

	what := "wireguard-go"
	if switchyard {
		what = "switchyard"
	}
	var runs []float64
	for i := range o.Runs {
		var prof chan error
		if switchyard && i == 0 && o.Profile != "" {
			prof = make(chan error, 1)
			go func() {
				secs := strconv.Itoa(int(o.Duration.Seconds()) - 2)
				_, _, err := l.Exec(ctx, l.A, "curl", "-sf", "-o", o.Profile,
					"http://"+l.A.Admin+"/debug/pprof/profile?seconds="+secs)
				prof <- err
			}()
		}
		gbps, err := iperf3Run(ctx, l, o.Duration)
		if err != nil {
			return nil, err
		}
		if prof != nil {
			if err := <-prof; err != nil {
				o.Log("profile: %v", err)
			} else {
				o.Log("profile of side a's daemon written to %s", o.Profile)
			}
		}
		o.Log("%s pair, run %d: %.2f Gbit/s", what, i+1, gbps)
		runs = append(runs, gbps)
	}
	return runs, nil
}

func endpointOf(s *Side) netip.AddrPort { return netip.AddrPortFrom(s.Veth4, WGPort) }

// iperf3Run runs one iperf3 client from a to b's TUN address and returns
// the receiver's throughput in Gbit/s. It retries while the server is not
// listening yet.
func iperf3Run(ctx context.Context, l *Lab, d time.Duration) (float64, error) {
	secs := strconv.Itoa(int(d.Seconds()))
	var lastErr error
	for attempt := 0; attempt < 20; attempt++ {
		rctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
		out, _, err := l.Exec(rctx, l.A, "iperf3", "-c", l.B.TUN4.String(), "-t", secs, "-J")
		cancel()
		if err != nil {
			lastErr = fmt.Errorf("%w: %s", err, tail(out, 512))
			time.Sleep(200 * time.Millisecond)
			continue
		}
		var rep struct {
			End struct {
				SumReceived struct {
					BitsPerSecond float64 `json:"bits_per_second"`
				} `json:"sum_received"`
			} `json:"end"`
			Error string `json:"error"`
		}
		if err := json.Unmarshal(out, &rep); err != nil {
			return 0, fmt.Errorf("iperf3 output: %w", err)
		}
		if rep.Error != "" {
			return 0, errors.New("iperf3: " + rep.Error)
		}
		return rep.End.SumReceived.BitsPerSecond / 1e9, nil
	}
	return 0, fmt.Errorf("iperf3 client: %w", lastErr)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
