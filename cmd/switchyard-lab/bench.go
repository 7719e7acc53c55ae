package main

// switchyard-lab bench micro: summarise `go test -bench` output (read from stdin
// or a file) into medians with min–max, and check the goals side by
// side. The machine is shared and noisy: medians and ratios, not single runs.
// switchyard-lab bench e2e (bench_e2e.go) is the end-to-end part and writes the
// report of both.

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

const benchUsage = `usage:
  switchyard-lab bench micro [FILE]   summarise go test -bench output (stdin if no FILE)
  switchyard-lab bench e2e [--quick] [--runs N] [--seconds S] [--out DIR] [--micro FILE]
                                  end-to-end part (root): iperf3 through every configuration,
                                  writes DIR/latest.{json,md,png} (see BENCHMARKS.md)
`

func runBench(args []string) int {
	if len(args) > 0 && args[0] == "e2e" {
		return runBenchE2E(args[1:])
	}
	if len(args) == 0 || args[0] != "micro" {
		fmt.Fprint(os.Stderr, benchUsage)
		return 2
	}
	fs := flag.NewFlagSet("bench micro", flag.ContinueOnError)
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	in := io.Reader(os.Stdin)
	if fs.NArg() > 0 {
		f, err := os.Open(fs.Arg(0))
		if err != nil {
			fmt.Fprintf(os.Stderr, "switchyard-lab bench: %v\n", err)
			return 1
		}
		defer f.Close()
		in = f
	}
	res, err := parseBench(in)
	if err != nil {
		fmt.Fprintf(os.Stderr, "switchyard-lab bench: %v\n", err)
		return 1
	}
	if len(res.order) == 0 {
		fmt.Fprintln(os.Stderr, "switchyard-lab bench: no benchmark results in the input")
		return 1
	}
	printMicro(os.Stdout, res)
	return 0
}

// benchResults holds every sample of every metric of every benchmark.
type benchResults struct {
	order   []string                        // benchmark names, first-seen order
	samples map[string]map[string][]float64 // name → unit → values
}

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)

func parseBench(r io.Reader) (*benchResults, error) {
	res := &benchResults{samples: map[string]map[string][]float64{}}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		name, fields := m[1], strings.Fields(m[2])
		if _, ok := res.samples[name]; !ok {
			res.samples[name] = map[string][]float64{}
			res.order = append(res.order, name)
		}
		for i := 0; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				continue
			}
			res.samples[name][fields[i+1]] = append(res.samples[name][fields[i+1]], v)
		}
	}
	return res, sc.Err()
}

// stat is the median and range of one metric.
type stat struct {
	med, min, max float64
	n             int
	ok            bool
}

func (r *benchResults) stat(name, unit string) stat {
	vs := append([]float64(nil), r.samples[name][unit]...)
	if len(vs) == 0 {
		return stat{}
	}
	sort.Float64s(vs)
	med := vs[len(vs)/2]
	if len(vs)%2 == 0 {
		med = (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2
	}
	return stat{med: med, min: vs[0], max: vs[len(vs)-1], n: len(vs), ok: true}
}

// scale multiplies the median and the range by f (a change of unit).
func (s stat) scale(f float64) stat {
	s.med, s.min, s.max = s.med*f, s.min*f, s.max*f
	return s
}

func (s stat) String() string {
	if !s.ok {
		return "n/a"
	}
	return fmt.Sprintf("%s (%s–%s)", num(s.med), num(s.min), num(s.max))
}

func num(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v < 0.01:
		return strconv.FormatFloat(v, 'g', 2, 64)
	case v < 10:
		return strconv.FormatFloat(v, 'f', 2, 64)
	case v < 1000:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

func printMicro(w io.Writer, r *benchResults) {
	runs := 0
	for _, name := range r.order {
		for _, vs := range r.samples[name] {
			runs = max(runs, len(vs))
		}
	}
	fmt.Fprintf(w, "\nmicro benchmarks — median (min–max) of %d runs each\n\n", runs)

	fmt.Fprintln(w, "router lookup on the data path (address → verdict), ns per packet, random destinations")
	fmt.Fprintf(w, "  %-14s %-26s %-26s\n", "routes", "IPv4", "IPv6")
	for _, n := range []string{"10", "1000", "10000"} {
		fmt.Fprintf(w, "  %-14s %-26s %-26s\n", n,
			r.stat("BenchmarkLookupVerdict/routes="+n+"/v4", "ns/op"), r.stat("BenchmarkLookupVerdict/routes="+n+"/v6", "ns/op"))
	}
	fmt.Fprintln(w, "Table.Lookup returning the whole Route (control path; one more cache miss), ns")
	for _, n := range []string{"10", "10000"} {
		fmt.Fprintf(w, "  %-14s %-26s %-26s\n", n,
			r.stat("BenchmarkLookup/routes="+n+"/v4", "ns/op"), r.stat("BenchmarkLookup/routes="+n+"/v6", "ns/op"))
	}
	fmt.Fprintln(w, "classify (header check + destination + lookup), ns per packet")
	for _, n := range []string{"10", "10000"} {
		fmt.Fprintf(w, "  %-14s %-26s %-26s\n", n,
			r.stat("BenchmarkClassify/routes="+n+"/v4", "ns/op"), r.stat("BenchmarkClassify/routes="+n+"/v6", "ns/op"))
	}

	fmt.Fprintln(w, "\nmailbox enqueue+dequeue, ns per batch:", r.stat("BenchmarkEnqueueDequeue", "ns/op"))
	fmt.Fprintln(w, "router split, ns per packet (128-packet batch, 4 targets):", r.stat("BenchmarkSplit/batch=128", "ns/pkt"))

	fmt.Fprintln(w, "\nin-memory pipeline: capture → router → udp actor → sink, 1400-byte packets (source writes headers only)")
	fmt.Fprintf(w, "  %-8s %-24s %-24s %-22s\n", "batch", "Mpps", "Gbit/s", "allocs/packet")
	for _, b := range []string{"1", "4", "16", "64", "128"} {
		name := "BenchmarkPipeline/batch=" + b
		if !r.stat(name, "Mpps").ok {
			continue
		}
		fmt.Fprintf(w, "  %-8s %-24s %-24s %-22s\n", b, r.stat(name, "Mpps"), r.stat(name, "Gbit/s"), r.stat(name, "allocs/pkt"))
	}
	fmt.Fprintln(w, "the same with a source that copies all 1400 bytes per packet (as a TUN read does, in the kernel)")
	for _, b := range []string{"1", "128"} {
		name := "BenchmarkPipelineCopy/batch=" + b
		if !r.stat(name, "Mpps").ok {
			continue
		}
		fmt.Fprintf(w, "  %-8s %-24s %-24s %-22s\n", b, r.stat(name, "Mpps"), r.stat(name, "Gbit/s"), r.stat(name, "allocs/pkt"))
	}
	fmt.Fprintln(w, "udp actor send to a loopback socket (kernel included), ns per packet")
	for _, b := range []string{"1", "128"} {
		fmt.Fprintf(w, "  batch=%-4s %s\n", b, r.stat("BenchmarkSendBatch/batch="+b, "ns/pkt"))
	}

	fmt.Fprintln(w, "\nenvelope encode+decode (issue 4): a batch of 1420-byte packets to msgpack in a protobuf envelope and back")
	fmt.Fprintln(w, "into pooled buffers (sealed in place, marshalled and unmarshalled without copies), transport excluded; packet bytes per second")
	fmt.Fprintf(w, "  %-8s %-24s %-24s %-22s\n", "batch", "GB/s", "Gbit/s", "allocs/op")
	for _, b := range []string{"47", "128"} {
		name := "BenchmarkEnvelope/batch=" + b
		gb := r.stat(name, "GB/s")
		fmt.Fprintf(w, "  %-8s %-24s %-24s %-22s\n", b, gb, gb.scale(8), r.stat(name, "allocs/op"))
	}

	fmt.Fprintln(w, "\nthe crossing alone (issue 13): a batch of 128 × 1400-byte packets daemon → host → daemon through shared memory,")
	fmt.Fprintln(w, "and the floors under any crossing, in the same run; process CPU seconds per Gbit per crossing (one way)")
	for _, row := range []struct{ what, name string }{
		{"shared memory, one goroutine (copies and rings only)", "BenchmarkCrossing/slot=pool-buffer"},
		{"shared memory, sender, waiter and host on their own goroutines", "BenchmarkCrossingThreaded"},
		{"floor: one memcpy of the batch", "BenchmarkCopyFloor"},
		{"floor: a Unix stream socket", "BenchmarkSocketFloor/unix"},
		{"floor: loopback TCP", "BenchmarkSocketFloor/tcp-loopback"},
	} {
		fmt.Fprintf(w, "  %-64s %-26s allocs/op %s\n", row.what, r.stat(row.name, "cpu-s/Gbit/crossing"), r.stat(row.name, "allocs/op"))
	}

	fmt.Fprintln(w, "\ngoals (issue 2)")
	goal := func(what string, got stat, ok bool, want string) {
		verdict := "MISSED"
		if ok {
			verdict = "met"
		}
		if !got.ok {
			verdict = "not measured"
		}
		fmt.Fprintf(w, "  %-44s %-12s want %-10s %s\n", what, num(got.med), want, verdict)
	}
	l4, l6 := r.stat("BenchmarkLookupVerdict/routes=10000/v4", "ns/op"), r.stat("BenchmarkLookupVerdict/routes=10000/v6", "ns/op")
	goal("data-path lookup, 10 000 routes, IPv4 (ns)", l4, l4.med <= 25, "≤ 25")
	goal("data-path lookup, 10 000 routes, IPv6 (ns)", l6, l6.med <= 25, "≤ 25")
	p128, p1 := r.stat("BenchmarkPipeline/batch=128", "Mpps"), r.stat("BenchmarkPipeline/batch=1", "Mpps")
	goal("pipeline at batch 128 (Mpps)", p128, p128.med >= 3, "≥ 3")
	ratio := stat{}
	if p128.ok && p1.ok && p1.med > 0 {
		ratio = stat{med: p128.med / p1.med, ok: true}
	}
	goal("batch 128 ÷ batch 1 (×)", ratio, ratio.med >= 10, "≥ 10")
	a := r.stat("BenchmarkPipeline/batch=128", "allocs/pkt")
	goal("allocations per packet, batch 128", a, a.med < 0.001, "0")
	x := r.stat("BenchmarkCrossing/slot=pool-buffer", "cpu-s/Gbit/crossing")
	goal("shm crossing, CPU s/Gbit/crossing (issue 13)", x, x.med <= 0.015, "≤ 0.015")
	xa := r.stat("BenchmarkCrossing/slot=pool-buffer", "allocs/op")
	goal("shm crossing, allocations per batch", xa, xa.med < 0.001, "0")
}
