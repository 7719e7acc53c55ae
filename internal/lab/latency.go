package lab

// Latency of the end-to-end cases (issue 21): the round-trip time of ICMP
// echo through a case's tunnel, idle and while one iperf3 TCP stream fills
// it.
//
//  1. Idle: LatencyPings echo requests LatencyInterval apart (the built-in
//     ping, `switchyard-lab ping`) from a to the target, nothing else
//     running.
//  2. Loaded: the same pings, started LatencyWarmup into a TCP run, so the
//     stream has left slow start and the queues on the path are as full as
//     the stream keeps them; a short run sends fewer (what fits before its
//     end).
//  3. Every reply's RTT (µs, from the tool's "time=… ms" lines) is kept, per
//     round, so that the report can give p50/p99 of all rounds together,
//     each round's, and the CDF.

import (
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"time"
)

// Limits of the latency measurement, each with its unit and reason.
const (
	// LatencyPings (300 requests) per phase: p99 is then the 3rd-worst, a
	// tail that is measured rather than guessed.
	LatencyPings = 300

	// LatencyInterval (10 ms) between two requests: 100 a second stays far
	// below any tunnel's capacity, and 300 take 3 s.
	LatencyInterval = 10 * time.Millisecond

	// LatencyWarmup (1 s) into a TCP run before the loaded pings start:
	// the stream is past slow start on a veth of any speed.
	LatencyWarmup = time.Second

	// latencyTail (500 ms) is kept free at a run's end: the stream's last
	// moments (the final exchange of results) are not "loaded".
	latencyTail = 500 * time.Millisecond

	// latencyReplyWait (1 s) is how long the ping waits for the last
	// replies: a reply later than that is a loss here.
	latencyReplyWait = time.Second

	// minLoadedPings (10 requests): a run too short for that many has no
	// loaded latency.
	minLoadedPings = 10
)

// RTTSample is one phase (idle or loaded) of one round: the RTTs of the
// replies, in µs, in the order they came, and the requests sent.
type RTTSample struct {
	Sent int       `json:"sent"`
	RTTs []float64 `json:"rtt_us"`
}

// Lost reports the requests that got no reply.
func (s RTTSample) Lost() int { return max(s.Sent-len(s.RTTs), 0) }

// Latency is a case's latency over every round.
type Latency struct {
	Idle   []RTTSample `json:"idle"`   // one per round
	Loaded []RTTSample `json:"loaded"` // one per round
}

// Pooled returns the RTTs of every sample together, and the requests sent.
func Pooled(samples []RTTSample) (rtts []float64, sent int) {
	for _, s := range samples {
		rtts = append(rtts, s.RTTs...)
		sent += s.Sent
	}
	return rtts, sent
}

// Quantile is the q-quantile (0 ≤ q ≤ 1) of v by the nearest-rank method:
// the smallest value with at least q of them at or below it. NaN when v is
// empty. v is not changed.
func Quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	rank := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(rank, 0), len(s)-1)]
}

// pingReply matches a reply line of the built-in ping (and of iputils).
var pingReply = regexp.MustCompile(`icmp_seq=(\d+) (?:ttl=\d+ )?time=([\d.]+) ms`)

// parseRTTs reads the RTTs (µs) of a ping's output and the requests sent
// (from its summary).
func parseRTTs(output string) (RTTSample, error) {
	m := pingSummary.FindStringSubmatch(output)
	if m == nil {
		return RTTSample{}, fmt.Errorf("no summary line in:\n%s", tail([]byte(output), LogTailBytes))
	}
	var s RTTSample
	s.Sent, _ = strconv.Atoi(m[1])
	for _, r := range pingReply.FindAllStringSubmatch(output, -1) {
		ms, err := strconv.ParseFloat(r[2], 64)
		if err != nil {
			continue
		}
		s.RTTs = append(s.RTTs, ms*1000)
	}
	return s, nil
}

// loadedPings is how many pings fit in a TCP run of d after the warm-up
// and before the tail: at most LatencyPings, 0 when fewer than
// minLoadedPings fit.
func loadedPings(d time.Duration) int {
	n := int((d - LatencyWarmup - latencyTail) / LatencyInterval)
	if n < minLoadedPings {
		return 0
	}
	return min(n, LatencyPings)
}
