package main

// switchyard-lab bench e2e: the end-to-end part of `make bench` (root). It runs
// every case of lab.Cases() — iperf3 between two namespaces over the veth
// alone, a wireguard-go pair and the switchyard configurations that exist —
// each in a lab of its own that it removes before the next, prints a
// progress line while it runs, and writes the report of the whole run
// (merging the micro part from --micro FILE):
//
//	OUT/latest.json       every number, every run
//	OUT/latest.md         the tables
//	OUT/latest.png        end-to-end throughput per configuration
//	OUT/latest-latency.png the RTT CDFs, idle and loaded
//	OUT/latest-sweep.png  the batch-size sweep

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"switchyard/internal/lab"
)

// Defaults of bench e2e, each with its reason.
const (
	// benchRuns (3) TCP runs per configuration: the median of three is
	// robust to one outlier on a shared machine.
	benchRuns = 3

	// benchSeconds (10 s) per TCP run: long enough for TCP to leave slow
	// start and for CPU accounting in 10 ms ticks to be precise to 0.1 %.
	benchSeconds = 10

	// quickRuns and quickSeconds make the smoke run (--quick): one run of
	// 2 s per configuration, the flood 2 s.
	quickRuns    = 1
	quickSeconds = 2

	// benchSetupGuess (5 s) is the first guess, for the remaining-time
	// estimate, of one configuration's setup and teardown (namespaces,
	// daemons, first ping, iperf3 server); replaced by the measured mean.
	benchSetupGuess = 5 * time.Second

	// benchRunOverhead (1 s) is what one iperf3 run takes beyond its test
	// time (start, connect, the final exchange).
	benchRunOverhead = time.Second

	// progressTick (1 s) is how often the progress line is redrawn on a
	// terminal.
	progressTick = time.Second
)

func runBenchE2E(args []string) int {
	fs := flag.NewFlagSet("bench e2e", flag.ContinueOnError)
	quick := fs.Bool("quick", false, "smoke run: 1 run of 2 s per configuration")
	runs := fs.Int("runs", benchRuns, "TCP runs per configuration (median, min–max)")
	seconds := fs.Float64("seconds", benchSeconds, "seconds per TCP run")
	out := fs.String("out", "bench/results", "directory for latest.{json,md,png}")
	micro := fs.String("micro", "", "go test -bench output of the micro part to merge into the report")
	daemonBin := fs.String("switchyard", "", "the switchyard daemon binary (default: next to this one)")
	wgGo := fs.String("wireguard-go", "", "wireguard-go binary (default: build it from go.mod's version)")
	floodRate := fs.String("flood-rate", lab.DefaultFloodRate, "iperf3 -b of the UDP flood")
	floodLen := fs.Int("flood-len", lab.DefaultFloodLen, "iperf3 -l of the UDP flood (bytes)")
	floodSeconds := fs.Float64("flood-seconds", lab.DefaultFloodDuration.Seconds(), "seconds of the UDP flood")
	only := fs.String("cases", "", "comma-separated case keys to run (default: all): "+caseKeys())
	profile := fs.String("profile", "", "directory for a CPU profile of side a's daemon per case (<case>.pprof, taken in the first run)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *quick {
		if !set["runs"] {
			*runs = quickRuns
		}
		if !set["seconds"] {
			*seconds = quickSeconds
		}
		if !set["flood-seconds"] {
			*floodSeconds = quickSeconds
		}
	}
	if *runs < 1 || *seconds < 1 || *floodSeconds < 1 {
		fmt.Fprintln(os.Stderr, "switchyard-lab bench e2e: --runs, --seconds and --flood-seconds must be at least 1")
		return 2
	}
	cases, err := selectCases(*only)
	if err != nil {
		fmt.Fprintf(os.Stderr, "switchyard-lab bench e2e: %v\n", err)
		return 2
	}

	start := time.Now()
	rep := &benchReport{
		Date:    start,
		Machine: readMachine(),
		Quick:   *quick,
		Settings: benchSettings{Runs: *runs, Seconds: *seconds, FloodRate: *floodRate, FloodLen: *floodLen,
			FloodSeconds: *floodSeconds},
	}
	if *micro != "" {
		f, err := os.Open(*micro)
		if err != nil {
			fmt.Fprintf(os.Stderr, "switchyard-lab bench e2e: %v\n", err)
			return 1
		}
		res, err := parseBench(f)
		f.Close()
		if err != nil || len(res.order) == 0 {
			fmt.Fprintf(os.Stderr, "switchyard-lab bench e2e: %s: no benchmark results (%v)\n", *micro, err)
			return 1
		}
		rep.Micro = newMicroReport(res)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintf(os.Stderr, "switchyard-lab bench e2e: %v\n", err)
		return 1
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	failed := false
	if err := lab.Preflight(); err != nil {
		fmt.Fprintf(os.Stderr, "switchyard-lab bench e2e: the end-to-end part %v\n", err)
		for _, c := range cases {
			rep.E2E = append(rep.E2E, e2eRow{CaseResult: lab.CaseResult{Case: c}, Status: statusSkipped + err.Error()})
		}
		failed = true
	} else {
		opts, cleanup, err := e2eOptions(ctx, *daemonBin, *wgGo, *runs, *seconds, *floodRate, *floodLen, *floodSeconds)
		if err != nil {
			fmt.Fprintf(os.Stderr, "switchyard-lab bench e2e: %v\n", err)
			return 1
		}
		defer cleanup()
		if v := firstLine(opts.WireGuardGo, "--version"); v != "" {
			rep.Machine.WireGuardGo = v
		}
		fmt.Printf("end to end: %d configurations, iperf3 TCP %d × %g s each, UDP flood %g s (Ctrl-C stops and cleans up)\n",
			len(cases), *runs, *seconds, *floodSeconds)
		rep.E2E, failed = runCases(ctx, cases, opts, *profile, newProgress(os.Stdout, cases, *runs, *seconds, *floodSeconds))
		if ctx.Err() != nil {
			fmt.Fprintln(os.Stderr, "switchyard-lab bench e2e: interrupted; every namespace and process it made is removed")
			return 130
		}
	}
	addRatios(rep.E2E)
	rep.Machine.LoadEnd = loadavg()
	rep.Elapsed = time.Since(start).Seconds()

	if err := writeReport(*out, rep); err != nil {
		fmt.Fprintf(os.Stderr, "switchyard-lab bench e2e: %v\n", err)
		return 1
	}
	fmt.Println()
	renderMarkdown(os.Stdout, rep)
	fmt.Printf("written: %s\n", strings.Join([]string{
		filepath.Join(*out, "latest.json"), filepath.Join(*out, "latest.md"),
		filepath.Join(*out, "latest.png"), filepath.Join(*out, "latest-sweep.png"),
		filepath.Join(*out, "latest-latency.png")}, ", "))
	if failed {
		return 1
	}
	return 0
}

func caseKeys() string {
	var keys []string
	for _, c := range lab.Cases() {
		keys = append(keys, c.Key)
	}
	return strings.Join(keys, ",")
}

func selectCases(only string) ([]lab.Case, error) {
	all := lab.Cases()
	if only == "" {
		return all, nil
	}
	var out []lab.Case
	for _, key := range strings.Split(only, ",") {
		found := false
		for _, c := range all {
			if c.Key == strings.TrimSpace(key) {
				out, found = append(out, c), true
			}
		}
		if !found {
			return nil, fmt.Errorf("--cases: unknown case %q (known: %s)", key, caseKeys())
		}
	}
	return out, nil
}

// e2eOptions finds the binaries: this one for the daemons (make builds it
// without -race) and wireguard-go, built into a temporary directory when
// not given.
func e2eOptions(ctx context.Context, daemonBin, wgGo string, runs int, seconds float64, rate string, length int, floodSeconds float64) (lab.E2EOptions, func(), error) {
	daemon, err := lab.DaemonBinary(daemonBin)
	if err != nil {
		return lab.E2EOptions{}, nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return lab.E2EOptions{}, nil, fmt.Errorf("find own binary: %w", err)
	}
	cleanup := func() {}
	if wgGo == "" {
		dir, err := os.MkdirTemp("", "switchyard-bench-")
		if err != nil {
			return lab.E2EOptions{}, nil, err
		}
		cleanup = func() { os.RemoveAll(dir) }
		fmt.Println("building wireguard-go from go.mod's version …")
		if wgGo, err = lab.BuildWireGuardGo(ctx, dir); err != nil {
			cleanup()
			return lab.E2EOptions{}, nil, err
		}
	}
	return lab.E2EOptions{
		Binary:        daemon,
		Tools:         self,
		WireGuardGo:   wgGo,
		Runs:          runs,
		Duration:      time.Duration(seconds * float64(time.Second)),
		FloodRate:     rate,
		FloodLen:      length,
		FloodDuration: time.Duration(floodSeconds * float64(time.Second)),
	}, cleanup, nil
}

// runCases runs the cases by group (lab.Groups): the labs of a group's
// cases are all up at once and their rounds interleaved — reference,
// case, case, reference, case, case, … — so that a ratio compares runs
// that met the same load; each lab is removed when its group is done. A
// CPU profile of side a's daemon per case goes to profileDir if set. A
// failed case becomes a "failed: …" row and the run goes on; an interrupt
// stops it. The rows come back in the order of cases.
func runCases(ctx context.Context, cases []lab.Case, o lab.E2EOptions, profileDir string, p *progress) (rows []e2eRow, failed bool) {
	o.Progress = p.event
	o.Log = p.note
	defer p.stop()
	byKey := map[string]e2eRow{}
	for _, g := range lab.Groups(cases) {
		runs := make([]*lab.CaseRun, len(g))
		errs := make([]error, len(g))
		for i, c := range g {
			co := o
			if profileDir != "" {
				co.Profile = filepath.Join(profileDir, c.Key+".pprof")
			}
			runs[i], errs[i] = lab.StartCase(ctx, c, co)
			if ctx.Err() != nil {
				break
			}
		}
		for round := 0; ctx.Err() == nil; round++ {
			more := false
			for i, r := range runs {
				if r == nil || errs[i] != nil || round >= r.Rounds() {
					continue
				}
				more = true
				errs[i] = r.Round(ctx)
			}
			if !more {
				break
			}
		}
		for i, c := range g {
			res := lab.CaseResult{Case: c}
			if r := runs[i]; r != nil {
				res = r.Result()
				if err := r.Close(); err != nil && errs[i] == nil {
					errs[i] = err
				}
			}
			if ctx.Err() != nil {
				continue
			}
			row := e2eRow{CaseResult: res, Status: statusOK}
			if err := errs[i]; err != nil {
				row.Status = statusFailed + firstLineOf(err.Error())
				failed = true
				p.note("%s: FAILED: %v", c.Label, err)
			} else {
				p.note("%s", resultLine(row))
			}
			byKey[c.Key] = row
		}
		if ctx.Err() != nil {
			return rows, true
		}
	}
	for _, c := range cases {
		rows = append(rows, byKey[c.Key])
	}
	return rows, failed
}

func firstLineOf(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// resultLine is the one line printed when a case is done.
func resultLine(r e2eRow) string {
	if f := r.Flood; f != nil {
		var drops uint64
		for _, a := range f.Actors {
			drops += a.Dropped()
		}
		return fmt.Sprintf("%s: offered %.2f Gbit/s, delivered %.2f Gbit/s, %d packets dropped by the daemons",
			r.Label, f.SentGbps, f.Gbps, drops)
	}
	return fmt.Sprintf("%s: %.2f Gbit/s (%.2f–%.2f, %d runs)", r.Label, r.Gbps.Median, r.Gbps.Min, r.Gbps.Max, r.Gbps.N)
}

// writeReport writes latest.json, latest.md and the plots into dir.
func writeReport(dir string, rep *benchReport) error {
	if err := writeJSON(filepath.Join(dir, "latest.json"), rep); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "latest.md"))
	if err != nil {
		return err
	}
	renderMarkdown(f, rep)
	if err := f.Close(); err != nil {
		return err
	}
	err = writePlots(rep, filepath.Join(dir, "latest.png"), filepath.Join(dir, "latest-sweep.png"))
	if err != nil && len(e2eBars(rep)) == 0 {
		// Nothing measured end to end (not root): the JSON and Markdown
		// still hold the micro part.
		fmt.Fprintf(os.Stderr, "switchyard-lab bench e2e: no plot: %v\n", err)
		return nil
	}
	if err != nil {
		return err
	}
	if err := writeLatencyPlot(rep, filepath.Join(dir, "latest-latency.png")); err != nil && !errors.Is(err, errNoLatency) {
		return err
	}
	return nil
}

// progress is the status line: the case, run i/N, elapsed and an estimate
// of the time remaining. On a terminal it is one line redrawn in place
// (with \r) every second; otherwise one plain line per event. The cases of
// a group run interleaved, so it keeps each case's state by key.
type progress struct {
	w     io.Writer
	tty   bool
	start time.Time

	mu        sync.Mutex
	cases     []lab.Case
	runs      int
	run       time.Duration // one TCP run
	flood     time.Duration
	started   int                   // cases set up so far
	cur       lab.Case              // the case of the last event
	state     map[string]*caseState // by key
	setupAt   time.Time             // the last PhaseSetup, until the next event
	overheads []time.Duration
	status    string
	done      chan struct{}
	stopOnce  sync.Once
}

// caseState is what progress knows of one case.
type caseState struct {
	setUp    bool
	runsDone int
	done     bool
}

func newProgress(w *os.File, cases []lab.Case, runs int, seconds, floodSeconds float64) *progress {
	p := &progress{
		w: w, tty: isTerminal(w), start: time.Now(), cases: cases, runs: runs, state: map[string]*caseState{},
		run:   time.Duration(seconds*float64(time.Second)) + benchRunOverhead,
		flood: time.Duration(floodSeconds*float64(time.Second)) + benchRunOverhead,
		done:  make(chan struct{}),
	}
	for _, c := range cases {
		p.state[c.Key] = &caseState{}
	}
	if p.tty {
		go func() {
			t := time.NewTicker(progressTick)
			defer t.Stop()
			for {
				select {
				case <-p.done:
					return
				case <-t.C:
					p.mu.Lock()
					p.draw()
					p.mu.Unlock()
				}
			}
		}()
	}
	return p
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// roundTime is one round of case c: a TCP run, and for a latency case its
// idle pings before it.
func (p *progress) roundTime(c lab.Case) time.Duration {
	if c.Flood {
		return p.flood
	}
	if c.Latency {
		return p.run + lab.LatencyPings*lab.LatencyInterval + benchRunOverhead
	}
	return p.run
}

// work is the iperf3 (and ping) time of case c.
func (p *progress) work(c lab.Case) time.Duration {
	if c.Flood {
		return p.flood
	}
	return time.Duration(p.runs) * p.roundTime(c)
}

// overhead is the mean measured setup of a case so far.
func (p *progress) overhead() time.Duration {
	if len(p.overheads) == 0 {
		return benchSetupGuess
	}
	var sum time.Duration
	for _, o := range p.overheads {
		sum += o
	}
	return sum / time.Duration(len(p.overheads))
}

// remaining estimates the time left: the rounds every case has still to
// run, and the setup of those not set up yet.
func (p *progress) remaining() time.Duration {
	var left time.Duration
	for _, c := range p.cases {
		st := p.state[c.Key]
		if st.done {
			continue
		}
		if !st.setUp {
			left += p.overhead()
		}
		rounds := p.runs
		if c.Flood {
			rounds = 1
		}
		left += time.Duration(max(rounds-st.runsDone, 0)) * p.roundTime(c)
	}
	return left
}

func (p *progress) event(e lab.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if !p.setupAt.IsZero() {
		p.overheads = append(p.overheads, now.Sub(p.setupAt))
		p.setupAt = time.Time{}
	}
	st := p.state[e.Case.Key]
	if st == nil {
		st = &caseState{}
		p.state[e.Case.Key] = st
	}
	p.cur = e.Case
	switch e.Phase {
	case lab.PhaseSetup:
		p.started++
		st.setUp = true
		p.setupAt = now
		p.status = "setting up"
	case lab.PhaseRun:
		st.runsDone = e.Run - 1
		p.status = fmt.Sprintf("run %d/%d", e.Run, e.Runs)
	case lab.PhaseFlood:
		p.status = "UDP flood"
	case lab.PhaseDone:
		st.done = true
		p.status = "done"
	}
	if p.tty || e.Phase != lab.PhaseDone {
		p.draw()
	}
}

// draw prints the status line; the caller holds mu.
func (p *progress) draw() {
	if p.started == 0 {
		return
	}
	line := fmt.Sprintf("[%d/%d] %s — %s · elapsed %s · remaining ~%s", p.started, len(p.cases),
		p.cur.Label, p.status, time.Since(p.start).Round(time.Second), p.remaining().Round(time.Second))
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
	} else {
		fmt.Fprintln(p.w, line)
	}
}

// note prints a line of its own, above the status line on a terminal.
func (p *progress) note(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		fmt.Fprint(p.w, "\r\033[K")
	}
	fmt.Fprintf(p.w, "  "+format+"\n", args...)
	if p.tty {
		p.draw()
	}
}

func (p *progress) stop() {
	p.stopOnce.Do(func() {
		close(p.done)
		if p.tty {
			fmt.Fprint(p.w, "\r\033[K")
		}
	})
}
