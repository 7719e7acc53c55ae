package lab

// iperf3 in the lab: one server in namespace b, clients from namespace a,
// their JSON reports (-J) read into the few numbers the benchmark needs.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Limits of the iperf3 runs, each with its unit and reason.
const (
	// IperfConnectAttempts (20, 200 ms apart) is how often a client retries
	// while the server it was started with is not listening yet.
	IperfConnectAttempts = 20

	// iperfRetryPause (200 ms) is the pause between two attempts.
	iperfRetryPause = 200 * time.Millisecond

	// IperfSlack (30 s) is how long a client may take beyond its test time
	// (connect, the final exchange of results) before it is killed.
	IperfSlack = 30 * time.Second
)

// IperfResult is what one iperf3 client run measured, from its JSON report.
type IperfResult struct {
	// Receiver side (what arrived): bytes, seconds, bit/s.
	Bytes   int64   `json:"bytes"`
	Seconds float64 `json:"seconds"`
	Gbps    float64 `json:"gbit_s"`
	// Sender side: for UDP the offered rate the client achieved.
	SentBytes int64   `json:"sent_bytes"`
	SentGbps  float64 `json:"sent_gbit_s"`
	// TCP: retransmits at the sender. UDP: datagrams sent and lost.
	Retransmits int64   `json:"retransmits,omitempty"`
	Packets     int64   `json:"packets,omitempty"`
	LostPackets int64   `json:"lost_packets,omitempty"`
	LostPercent float64 `json:"lost_percent,omitempty"`
}

type iperfSum struct {
	Seconds       float64 `json:"seconds"`
	Bytes         int64   `json:"bytes"`
	BitsPerSecond float64 `json:"bits_per_second"`
	Retransmits   int64   `json:"retransmits"`
	Packets       int64   `json:"packets"`
	LostPackets   int64   `json:"lost_packets"`
	LostPercent   float64 `json:"lost_percent"`
}

// ParseIperf3 reads the JSON report of an iperf3 client (3.12 and later
// print end.sum_sent and end.sum_received for TCP and UDP alike; for UDP
// the receiver's view is also end.sum, which older versions have alone).
func ParseIperf3(out []byte) (IperfResult, error) {
	var rep struct {
		End struct {
			Sum         *iperfSum `json:"sum"`
			SumSent     *iperfSum `json:"sum_sent"`
			SumReceived *iperfSum `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		return IperfResult{}, fmt.Errorf("iperf3 output: %w", err)
	}
	if rep.Error != "" {
		return IperfResult{}, errors.New("iperf3: " + rep.Error)
	}
	recv := rep.End.SumReceived
	if recv == nil {
		recv = rep.End.Sum
	}
	if recv == nil {
		return IperfResult{}, errors.New("iperf3 output: no end.sum_received or end.sum")
	}
	r := IperfResult{Bytes: recv.Bytes, Seconds: recv.Seconds, Gbps: recv.BitsPerSecond / 1e9,
		Packets: recv.Packets, LostPackets: recv.LostPackets, LostPercent: recv.LostPercent}
	if s := rep.End.SumSent; s != nil {
		r.SentBytes, r.SentGbps, r.Retransmits = s.Bytes, s.BitsPerSecond/1e9, s.Retransmits
	}
	return r, nil
}

// IperfServer starts `iperf3 -s -B addr` in side's namespace, logging to
// a file in the lab's directory, and returns a function that stops it.
// Clients retry while it comes up.
func (l *Lab) IperfServer(ctx context.Context, side *Side, addr netip.Addr) (stop func(), err error) {
	server, err := l.Command(ctx, side, "iperf3", "-s", "-B", addr.String())
	if err != nil {
		return nil, err
	}
	logFile, err := os.Create(filepath.Join(l.Dir, "iperf3-server-"+side.Label+".log"))
	if err != nil {
		l.Done(server)
		return nil, fmt.Errorf("lab: iperf3 server log: %w", err)
	}
	server.Stdout, server.Stderr = logFile, logFile
	if err := server.Start(); err != nil {
		l.Done(server)
		logFile.Close()
		return nil, fmt.Errorf("start iperf3 server in %s: %w", side.NS, err)
	}
	return func() { _ = server.Process.Kill(); _ = server.Wait(); l.Done(server); logFile.Close() }, nil
}

// IperfClient runs one iperf3 client in side's namespace against addr for d
// with the extra arguments (e.g. "-u", "-b", "4G", "-l", "1392") and returns
// its report. It retries while the server is not listening yet.
func (l *Lab) IperfClient(ctx context.Context, side *Side, addr netip.Addr, d time.Duration, extra ...string) (IperfResult, error) {
	secs := strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
	args := append([]string{"-c", addr.String(), "-t", secs, "-J"}, extra...)
	var lastErr error
	for range IperfConnectAttempts {
		rctx, cancel := context.WithTimeout(ctx, d+IperfSlack)
		out, _, err := l.Exec(rctx, side, "iperf3", args...)
		cancel()
		if ctx.Err() != nil {
			return IperfResult{}, ctx.Err()
		}
		if err != nil {
			lastErr = fmt.Errorf("%w: %s", err, tail(out, 512))
			time.Sleep(iperfRetryPause)
			continue
		}
		r, err := ParseIperf3(out)
		if err != nil && strings.Contains(err.Error(), "unable to connect") {
			// -J reports a refused connection in the JSON, exit code 0.
			lastErr = err
			time.Sleep(iperfRetryPause)
			continue
		}
		return r, err
	}
	if b, err := os.ReadFile(filepath.Join(l.Dir, "iperf3-server-"+l.Peer(side).Label+".log")); err == nil && len(b) > 0 {
		lastErr = fmt.Errorf("%w (server log: %s)", lastErr, tail(b, 512))
	}
	return IperfResult{}, fmt.Errorf("iperf3 client: %w", lastErr)
}
