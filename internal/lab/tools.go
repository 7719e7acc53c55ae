package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// PingResult is what one run of ping reported.
type PingResult struct {
	Transmitted, Received int
	Loss                  float64 // percent
	AvgRTT                time.Duration
	Output                string
}

// RejectReplies are the phrases ping prints (iputils, and the built-in one
// after it) for the ICMP errors a reject route sends back: ICMPv4 type 3
// code 13 (communication administratively prohibited) is "Packet filtered",
// ICMPv6 type 1 code 1 (administratively prohibited) is "Administratively
// prohibited".
var RejectReplies = map[bool]string{false: "Packet filtered", true: "Administratively prohibited"}

// RejectReply returns the phrase ping prints for a reject of addr's family.
func RejectReply(addr netip.Addr) string { return RejectReplies[addr.Is6()] }

var (
	pingSummary = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received,.* ([\d.]+)% packet loss`)
	pingRTT     = regexp.MustCompile(`rtt min/avg/max/mdev = [\d.]+/([\d.]+)/`)
)

// Ping's pacing: one echo request every PingInterval, and PingTimeout for
// the last answers.
const (
	PingInterval = 200 * time.Millisecond
	PingTimeout  = time.Second
)

// Ping runs the built-in ping (`switchyard-lab ping`, Echo: no ping binary
// needed) count times to addr in side's namespace. A ping that gets no
// reply is not an error: the result says so. The error is for a ping that
// could not run or whose summary could not be read.
func (l *Lab) Ping(ctx context.Context, side *Side, addr netip.Addr, count int) (PingResult, error) {
	ctx, cancel := context.WithTimeout(ctx, CommandTimeout+time.Duration(count)*time.Second)
	defer cancel()
	out, stderr, err := l.Exec(ctx, side, l.Tools, "ping", "--count", strconv.Itoa(count),
		"--interval", PingInterval.String(), "--timeout", PingTimeout.String(), addr.String())
	return parsePing(addr, side, string(out)+string(stderr), err)
}

// parsePing reads ping's summary (iputils' or the built-in one's).
func parsePing(addr netip.Addr, side *Side, output string, err error) (PingResult, error) {
	r := PingResult{Output: strings.TrimSpace(output)}
	m := pingSummary.FindStringSubmatch(r.Output)
	if m == nil {
		if err == nil {
			err = errors.New("no summary line")
		}
		return r, fmt.Errorf("ping %s from %s: %w\n%s", addr, side.NS, err, r.Output)
	}
	r.Transmitted, _ = strconv.Atoi(m[1])
	r.Received, _ = strconv.Atoi(m[2])
	r.Loss, _ = strconv.ParseFloat(m[3], 64)
	if m := pingRTT.FindStringSubmatch(r.Output); m != nil {
		ms, _ := strconv.ParseFloat(m[1], 64)
		r.AvgRTT = time.Duration(ms * float64(time.Millisecond))
	}
	return r, nil
}

// PingRTTs (latency.go) runs the built-in ping count times, interval apart, from side to
// addr and returns every reply's RTT. No reply is not an error.
func (l *Lab) PingRTTs(ctx context.Context, side *Side, addr netip.Addr, count int, interval time.Duration) (RTTSample, error) {
	ctx, cancel := context.WithTimeout(ctx, CommandTimeout+time.Duration(count)*interval+latencyReplyWait)
	defer cancel()
	out, stderr, err := l.Exec(ctx, side, l.Tools, "ping", "--count", strconv.Itoa(count),
		"--interval", interval.String(), "--timeout", latencyReplyWait.String(), addr.String())
	s, perr := parseRTTs(string(out) + string(stderr))
	if perr != nil {
		if err != nil {
			return s, fmt.Errorf("ping %s from %s: %w", addr, side.NS, err)
		}
		return s, fmt.Errorf("ping %s from %s: %w", addr, side.NS, perr)
	}
	return s, nil
}

// PingUntil pings addr once a time until a reply comes or timeout passes (a
// warm-up: the first packets of a fresh tunnel may meet neighbour discovery).
func (l *Lab) PingUntil(ctx context.Context, side *Side, addr netip.Addr, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		r, err := l.Ping(ctx, side, addr, 1)
		if err == nil && r.Received == 1 {
			return nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("no reply:\n%s", r.Output)
			}
			return fmt.Errorf("ping %s from %s: no reply within %v: %w", addr, side.NS, timeout, err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// TransferReport is the JSON line of `switchyard lab tcp-send` and
// `tcp-recv`.
type TransferReport struct {
	Bytes   int64   `json:"bytes"`
	SHA256  string  `json:"sha256"`
	Seconds float64 `json:"seconds"`
	Gbps    float64 `json:"gbps,omitempty"`
}

// Transfer is the two ends of one TCP transfer.
type Transfer struct {
	Sent, Received TransferReport
}

// Match reports whether the receiver got exactly what the sender sent.
func (t Transfer) Match() bool {
	return t.Sent.Bytes == t.Received.Bytes && t.Sent.SHA256 == t.Received.SHA256 && t.Sent.SHA256 != ""
}

// Gbps is the receiver's throughput: bytes received over the time from
// accept to end of stream, in Gbit/s.
func (t Transfer) Gbps() float64 {
	if t.Received.Seconds <= 0 {
		return 0
	}
	return float64(t.Received.Bytes) * 8 / t.Received.Seconds / 1e9
}

// TransferTimeout (2 min) bounds one TCP transfer: 100 MB at the slowest
// rate seen with a race-enabled daemon (~100 Mbit/s) takes ~8 s.
const TransferTimeout = 2 * time.Minute

// TCPTransfer sends up to size bytes (or for at most maxTime, if > 0) of
// deterministic pseudo-random data over TCP from side from to `to`'s TUN
// address on port, with the built-in `lab tcp-send` and `lab tcp-recv`, and
// returns both reports.
func (l *Lab) TCPTransfer(ctx context.Context, from, to *Side, port int, size int64, maxTime time.Duration) (Transfer, error) {
	ctx, cancel := context.WithTimeout(ctx, TransferTimeout)
	defer cancel()
	addr := netip.AddrPortFrom(to.TUN4, uint16(port)).String()
	recv, err := l.Command(ctx, to, l.Tools, "tcp-recv", "--listen", addr, "--timeout", TransferTimeout.String())
	if err != nil {
		return Transfer{}, err
	}
	defer l.Done(recv)
	var rOut, rErr bytes.Buffer
	recv.Stdout, recv.Stderr = &rOut, &rErr
	if err := recv.Start(); err != nil {
		return Transfer{}, fmt.Errorf("start tcp-recv in %s: %w", to.NS, err)
	}
	args := []string{"tcp-send", "--to", addr, "--bytes", strconv.FormatInt(size, 10)}
	if maxTime > 0 {
		args = append(args, "--seconds", strconv.FormatFloat(maxTime.Seconds(), 'f', -1, 64))
	}
	sOut, _, sErr := l.Exec(ctx, from, l.Tools, args...)
	rWait := recv.Wait()
	var t Transfer
	if sErr != nil {
		return t, fmt.Errorf("tcp-send: %w (tcp-recv: %v %s)", sErr, rWait, strings.TrimSpace(rErr.String()))
	}
	if rWait != nil {
		return t, fmt.Errorf("tcp-recv in %s: %w: %s", to.NS, rWait, strings.TrimSpace(rErr.String()))
	}
	if err := decodeLast(sOut, &t.Sent); err != nil {
		return t, fmt.Errorf("tcp-send report: %w", err)
	}
	if err := decodeLast(rOut.Bytes(), &t.Received); err != nil {
		return t, fmt.Errorf("tcp-recv report: %w", err)
	}
	return t, nil
}

// decodeLast decodes the last non-empty line of out as JSON into v.
func decodeLast(out []byte, v any) error {
	lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
	last := lines[len(lines)-1]
	if err := json.Unmarshal(last, v); err != nil {
		return fmt.Errorf("%w in %q", err, last)
	}
	return nil
}

// Flood describes a run of `switchyard lab udp-flood`.
type Flood struct {
	To      netip.AddrPort
	From    netip.AddrPort // optional local address and port
	PPS     int            // datagrams per second
	Seconds float64        // how long; 0 with Count
	Count   int            // stop after this many; 0 = no limit
	Size    int            // datagram payload bytes; 0 = len(Payload)
	Payload string         // text at the start of each datagram (the rest is 'x')
	Hex     string         // or: the exact payload, hex
}

// FloodReport is the JSON line of `switchyard lab udp-flood`.
type FloodReport struct {
	Sent    int64   `json:"sent"`
	Errors  int64   `json:"errors"`
	Seconds float64 `json:"seconds"`
}

// UDPFlood runs `switchyard lab udp-flood` in side's namespace.
func (l *Lab) UDPFlood(ctx context.Context, side *Side, f Flood) (FloodReport, error) {
	args := []string{"udp-flood", "--to", f.To.String(), "--pps", strconv.Itoa(f.PPS)}
	if f.From.IsValid() {
		args = append(args, "--from", f.From.String())
	}
	if f.Seconds > 0 {
		args = append(args, "--seconds", strconv.FormatFloat(f.Seconds, 'f', -1, 64))
	}
	if f.Count > 0 {
		args = append(args, "--count", strconv.Itoa(f.Count))
	}
	if f.Size > 0 {
		args = append(args, "--size", strconv.Itoa(f.Size))
	}
	if f.Payload != "" {
		args = append(args, "--payload", f.Payload)
	}
	if f.Hex != "" {
		args = append(args, "--hex", f.Hex)
	}
	limit := CommandTimeout + time.Duration(f.Seconds*float64(time.Second))
	if f.Count > 0 && f.PPS > 0 {
		limit += time.Duration(f.Count) * time.Second / time.Duration(f.PPS)
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	out, _, err := l.Exec(ctx, side, l.Tools, args...)
	var r FloodReport
	if err != nil {
		return r, err
	}
	return r, decodeLast(out, &r)
}

// TUNInject writes each packet (hex) to side's TUN device from the kernel
// side, with `switchyard lab tun-inject`: the daemon reads them as if the
// host had routed them into the tunnel, whatever they contain.
func (l *Lab) TUNInject(ctx context.Context, side *Side, packets []string) error {
	ctx, cancel := context.WithTimeout(ctx, CommandTimeout)
	defer cancel()
	_, _, err := l.Exec(ctx, side, l.Tools, "tun-inject", "--dev", side.TUNDev, "--hex", strings.Join(packets, ","))
	return err
}

// Run runs a command in side's namespace and returns its combined output.
func (l *Lab) Run(ctx context.Context, side *Side, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, CommandTimeout)
	defer cancel()
	out, stderr, err := l.Exec(ctx, side, name, args...)
	return string(out) + string(stderr), err
}

// HostileReport is the JSON line `switchyard-lab hostile` prints.
type HostileReport struct {
	Case     string `json:"case"`
	Addr     string `json:"addr"`
	Target   string `json:"target,omitempty"`
	Messages int    `json:"messages"` // envelopes in the batch, or RPCs called
	Bytes    int    `json:"bytes"`    // envelope data sent
	Outcome  string `json:"outcome"`  // how the server answered
}

// HostileGarbage are the payloads of garbage-msgpack, each a malformed
// batch that the receiver must drop without taking a buffer, with the
// packets it claims to hold (the receiver counts those as dropped).
var HostileGarbage = []struct {
	Payload []byte
	Claims  int
}{
	{[]byte{0xc1}, 1},                         // a byte msgpack never uses
	{[]byte{0x93, 0xc4, 0xff, 0x01}, 3},       // 3 packets; the first claims 255 bytes and has 1
	{[]byte{0x90}, 1},                         // an empty batch
	{[]byte{0x91, 0xc4, 0x01, 0x45, 0xff}, 1}, // 1 packet of 1 byte, then a trailing byte
}

// HostileGarbagePackets is the packets the garbage-msgpack envelopes claim.
func HostileGarbagePackets() int {
	n := 0
	for _, g := range HostileGarbage {
		n += g.Claims
	}
	return n
}

// DecodeJSONLine decodes the last line of a tool's output (the lab tools and
// `stats --json` print one JSON line) into v.
func DecodeJSONLine(out string, v any) error {
	line := strings.TrimSpace(out)
	if i := strings.LastIndexByte(line, '\n'); i >= 0 {
		line = line[i+1:]
	}
	if err := json.Unmarshal([]byte(line), v); err != nil {
		return fmt.Errorf("decode %q: %w", line, err)
	}
	return nil
}

// FreeTCPPort returns a TCP port free on loopback at the time of the call.
func FreeTCPPort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port), nil
}

// Forwarder is a bare forwarder (`switchyard-lab forward`, Forward) running
// in one side's namespace, its TUN configured as a daemon's would be.
type Forwarder struct {
	Side    *Side
	LogPath string

	cmd    *exec.Cmd
	lab    *Lab
	exited chan struct{}
}

// forwarderStartPoll (20 ms) is how often StartForwarder looks for the
// forwarder's TUN: it appears in milliseconds.
const forwarderStartPoll = 20 * time.Millisecond

// StartForwarder runs the bare forwarder in side's namespace with peer's
// forwarder as its peer (UDP DefaultUDPPort on the veth), waits for its
// TUN, gives it side's TUN addresses and brings it up. Stop ends it; Close
// kills it if it is still running.
func (l *Lab) StartForwarder(ctx context.Context, side, peer *Side) (*Forwarder, error) {
	logPath := filepath.Join(l.Dir, "forward-"+side.Label+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd, err := l.Command(context.Background(), side, l.Tools, "forward", "--tun", side.TUNDev,
		"--listen", strconv.Itoa(DefaultUDPPort), "--peer", netip.AddrPortFrom(peer.Veth4, DefaultUDPPort).String())
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		l.Done(cmd)
		return nil, fmt.Errorf("start the forwarder in %s: %w", side.NS, err)
	}
	f := &Forwarder{Side: side, LogPath: logPath, cmd: cmd, lab: l, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); l.Done(cmd); close(f.exited) }()

	deadline := time.Now().Add(DaemonStartTimeout)
	for l.ip(ctx, "-n", side.NS, "link", "show", "dev", side.TUNDev) != nil {
		select {
		case <-f.exited:
			b, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("the forwarder in %s exited at start: %s", side.NS, tail(b, LogTailBytes))
		case <-ctx.Done():
			f.Stop()
			return nil, ctx.Err()
		case <-time.After(forwarderStartPoll):
		}
		if time.Now().After(deadline) {
			f.Stop()
			return nil, fmt.Errorf("the forwarder in %s: no TUN %s within %v", side.NS, side.TUNDev, DaemonStartTimeout)
		}
	}
	for _, args := range [][]string{
		{"-n", side.NS, "addr", "add", side.TUN4.String() + "/24", "dev", side.TUNDev},
		{"-n", side.NS, "addr", "add", side.TUN6.String() + "/64", "dev", side.TUNDev, "nodad"},
		{"-n", side.NS, "link", "set", side.TUNDev, "up"},
	} {
		if err := l.ip(ctx, args...); err != nil {
			f.Stop()
			return nil, err
		}
	}
	return f, nil
}

// Pid is the forwarder's process id.
func (f *Forwarder) Pid() int { return f.cmd.Process.Pid }

// Stop ends the forwarder (SIGTERM, then SIGKILL after DaemonStopTimeout).
func (f *Forwarder) Stop() {
	if f.cmd.Process != nil {
		_ = f.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-f.exited:
	case <-time.After(DaemonStopTimeout):
		_ = f.cmd.Process.Kill()
		<-f.exited
	}
}
