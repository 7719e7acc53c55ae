package main

// `switchyard-lab tcp-recv|tcp-send|udp-flood|tun-inject|ping`: traffic tools for the demo and
// the namespace tests. They run inside a lab namespace (`ip netns exec NS
// switchyard-lab …`) and print one JSON line each (ping prints what iputils
// ping prints), so no extra packages are needed.
//
//	ping      [--count N] [--interval D] [--timeout D] ADDR
//	tcp-recv  --listen ADDR [--expect BYTES] [--timeout D]
//	tcp-send  --to ADDR --bytes N [--seconds S] [--seed S]
//	udp-flood --to ADDR [--from ADDR] --pps N (--seconds S | --count N) [--size B] [--payload TEXT | --hex HEX]
//	tun-inject --dev NAME --hex HEX[,HEX…]

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"switchyard/internal/lab"
)

// Limits of the lab tools. Every number has its unit and its reason.
const (
	// labChunkBytes (256 KiB) is the unit tcp-send generates, hashes and
	// writes, and tcp-recv reads: large enough that per-call costs vanish
	// next to the copy, small enough to stay in L2 cache.
	labChunkBytes = 256 << 10

	// labDialTimeout (5 s) is how long tcp-send keeps retrying to connect:
	// the receiver is started at the same moment in another namespace.
	labDialTimeout = 5 * time.Second

	// labDialRetry (50 ms) is the pause between two connection attempts.
	labDialRetry = 50 * time.Millisecond

	// labDrainTimeout (30 s) bounds how long tcp-send waits, after its last
	// byte, for the receiver to confirm by closing: the data in flight is a
	// few MiB of socket buffers.
	labDrainTimeout = 30 * time.Second

	// labFloodTick (1 ms) is udp-flood's pacing step; each step sends what
	// the rate owes since the start, so sleep overshoot does not lower it.
	labFloodTick = time.Millisecond

	// labDefaultRecvTimeout (2 min) bounds tcp-recv's wait for a connection
	// and between reads, so a failed sender cannot leave it behind forever.
	labDefaultRecvTimeout = 2 * time.Minute
)

const labUsage = `switchyard-lab — traffic tools for the demo and the namespace tests

  ping       [--count N] [--interval D] [--timeout D] ADDR
  tcp-recv   --listen ADDR [--expect BYTES] [--timeout D]
  tcp-send   --to ADDR --bytes N [--seconds S] [--seed S]
  udp-flood  --to ADDR [--from ADDR] --pps N (--seconds S | --count N) [--size B] [--payload TEXT | --hex HEX]
  tun-inject --dev NAME --hex HEX[,HEX...]
`

func runLab(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, labUsage)
		return 2
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "ping":
		err = labPing(rest)
	case "tcp-recv":
		err = labTCPRecv(rest)
	case "tcp-send":
		err = labTCPSend(rest)
	case "udp-flood":
		err = labUDPFlood(rest)
	case "tun-inject":
		err = labTUNInject(rest)
	default:
		fmt.Fprintf(os.Stderr, "switchyard-lab: unknown command %q\n\n%s", cmd, labUsage)
		return 2
	}
	switch {
	case errors.Is(err, flag.ErrHelp), errors.Is(err, errUsage):
		return 2
	case errors.Is(err, errNoReply):
		return 1
	case err != nil:
		fmt.Fprintf(os.Stderr, "switchyard-lab %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

var errUsage = errors.New("usage")

// labPing is the built-in ping (lab.Echo): ICMP echo over a raw socket,
// with iputils' output. It exits 1 when no reply came, as iputils does.
func labPing(args []string) error {
	fs := flag.NewFlagSet("ping", flag.ContinueOnError)
	count := fs.Int("count", 1, "echo requests to send")
	interval := fs.Duration("interval", 200*time.Millisecond, "time between two requests")
	timeout := fs.Duration("timeout", time.Second, "time to wait for the last answers")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errUsage
	}
	addr, err := netip.ParseAddr(fs.Arg(0))
	if err != nil {
		return err
	}
	r, err := lab.Echo(context.Background(), lab.EchoOptions{
		Addr: addr.Unmap(), Count: *count, Interval: *interval, Timeout: *timeout,
	}, os.Stdout)
	if err != nil {
		return err
	}
	if r.Received == 0 {
		return errNoReply
	}
	return nil
}

// errNoReply makes ping exit 1 without a message: the summary says it.
var errNoReply = errors.New("no reply")

// transferReport is the JSON line tcp-send and tcp-recv print
// (lab.TransferReport reads it).
type transferReport struct {
	Bytes   int64   `json:"bytes"`
	SHA256  string  `json:"sha256"`
	Seconds float64 `json:"seconds"`
	Gbps    float64 `json:"gbps,omitempty"`
}

func printJSON(v any) error { return json.NewEncoder(os.Stdout).Encode(v) }

func labTCPRecv(args []string) error {
	fs := flag.NewFlagSet("tcp-recv", flag.ContinueOnError)
	listen := fs.String("listen", "", "ip:port to accept one connection on")
	expect := fs.Int64("expect", -1, "fail unless exactly this many bytes arrive")
	timeout := fs.Duration("timeout", labDefaultRecvTimeout, "give up after this long without a connection or data")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *listen == "" {
		fs.Usage()
		return errUsage
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	defer ln.Close()
	_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(*timeout))
	conn, err := ln.Accept()
	if err != nil {
		return fmt.Errorf("accept: %w", err)
	}
	defer conn.Close()
	start := time.Now()
	h := sha256.New()
	buf := make([]byte, labChunkBytes)
	var n int64
	for {
		_ = conn.SetReadDeadline(time.Now().Add(*timeout))
		k, err := conn.Read(buf)
		if k > 0 {
			h.Write(buf[:k])
			n += int64(k)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read after %d bytes: %w", n, err)
		}
	}
	secs := time.Since(start).Seconds()
	_ = conn.Close() // tells the sender everything arrived
	if err := printJSON(transferReport{Bytes: n, SHA256: hex.EncodeToString(h.Sum(nil)), Seconds: secs}); err != nil {
		return err
	}
	if *expect >= 0 && n != *expect {
		return fmt.Errorf("got %d bytes, want %d", n, *expect)
	}
	return nil
}

func labTCPSend(args []string) error {
	fs := flag.NewFlagSet("tcp-send", flag.ContinueOnError)
	to := fs.String("to", "", "ip:port of a tcp-recv")
	size := fs.Int64("bytes", 0, "bytes to send")
	seconds := fs.Float64("seconds", 0, "stop after this many seconds even if fewer bytes were sent (0: no limit)")
	seed := fs.Uint64("seed", 1, "seed of the pseudo-random data")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *to == "" || *size <= 0 {
		fs.Usage()
		return errUsage
	}
	conn, err := dialRetry(*to)
	if err != nil {
		return err
	}
	defer conn.Close()

	gen := newXorshift4(*seed)
	h := sha256.New()
	buf := make([]byte, labChunkBytes)
	limit := time.Duration(*seconds * float64(time.Second))
	start := time.Now()
	var sent int64
	for sent < *size && (limit <= 0 || time.Since(start) < limit) {
		chunk := buf[:min(int64(len(buf)), *size-sent)]
		gen.fill(chunk)
		h.Write(chunk)
		k, err := conn.Write(chunk)
		sent += int64(k)
		if err != nil {
			return fmt.Errorf("write after %d bytes: %w", sent, err)
		}
	}
	// Wait for the receiver to close: then every byte has arrived and the
	// time covers the whole transfer, not just filling socket buffers.
	if err := conn.CloseWrite(); err != nil {
		return fmt.Errorf("close write: %w", err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(labDrainTimeout))
	if _, err := io.Copy(io.Discard, conn); err != nil {
		return fmt.Errorf("waiting for the receiver to confirm: %w", err)
	}
	secs := time.Since(start).Seconds()
	return printJSON(transferReport{
		Bytes: sent, SHA256: hex.EncodeToString(h.Sum(nil)), Seconds: secs,
		Gbps: float64(sent) * 8 / secs / 1e9,
	})
}

// xorshift4 is four interleaved xorshift64 generators: deterministic
// pseudo-random bytes at ~13 GB/s on one core (ChaCha8 from math/rand/v2 does
// ~1.5 GB/s, which would cost the sender as much CPU as its sha256).
type xorshift4 [4]uint64

func newXorshift4(seed uint64) *xorshift4 {
	var g xorshift4
	for i := range g {
		// splitmix64, so that nearby seeds give unrelated, non-zero states.
		seed += 0x9e3779b97f4a7c15
		z := seed
		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		g[i] = z ^ z>>31 | 1
	}
	return &g
}

// fill overwrites p with the next len(p) bytes of the stream; a tail shorter
// than 32 bytes takes the first bytes of one more step.
func (g *xorshift4) fill(p []byte) {
	a, b, c, d := g[0], g[1], g[2], g[3]
	for len(p) > 0 {
		a ^= a << 13
		a ^= a >> 7
		a ^= a << 17
		b ^= b << 13
		b ^= b >> 7
		b ^= b << 17
		c ^= c << 13
		c ^= c >> 7
		c ^= c << 17
		d ^= d << 13
		d ^= d >> 7
		d ^= d << 17
		if len(p) >= 32 {
			binary.LittleEndian.PutUint64(p[0:], a)
			binary.LittleEndian.PutUint64(p[8:], b)
			binary.LittleEndian.PutUint64(p[16:], c)
			binary.LittleEndian.PutUint64(p[24:], d)
			p = p[32:]
			continue
		}
		var last [32]byte
		binary.LittleEndian.PutUint64(last[0:], a)
		binary.LittleEndian.PutUint64(last[8:], b)
		binary.LittleEndian.PutUint64(last[16:], c)
		binary.LittleEndian.PutUint64(last[24:], d)
		p = p[copy(p, last[:]):]
	}
	g[0], g[1], g[2], g[3] = a, b, c, d
}

func dialRetry(addr string) (*net.TCPConn, error) {
	deadline := time.Now().Add(labDialTimeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Until(deadline))
		if err == nil {
			return c.(*net.TCPConn), nil
		}
		if time.Now().Add(labDialRetry).After(deadline) {
			return nil, fmt.Errorf("connect to %s for %v: %w", addr, labDialTimeout, err)
		}
		time.Sleep(labDialRetry)
	}
}

// floodReport is the JSON line udp-flood prints (lab.FloodReport reads it).
type floodReport struct {
	Sent    int64   `json:"sent"`
	Errors  int64   `json:"errors"`
	Seconds float64 `json:"seconds"`
}

func labUDPFlood(args []string) error {
	fs := flag.NewFlagSet("udp-flood", flag.ContinueOnError)
	to := fs.String("to", "", "destination ip:port")
	from := fs.String("from", "", "local ip:port to send from (default: any)")
	pps := fs.Int("pps", 1000, "datagrams per second")
	seconds := fs.Float64("seconds", 0, "how long to send")
	count := fs.Int64("count", 0, "stop after this many datagrams (0: no limit)")
	size := fs.Int("size", 0, "payload bytes per datagram (default: the payload's length, or 64)")
	payload := fs.String("payload", "", "text at the start of every datagram; the rest is 'x'")
	hexPayload := fs.String("hex", "", "the exact payload of every datagram, in hex")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dst, err := netip.ParseAddrPort(*to)
	if err != nil || *pps <= 0 || (*seconds <= 0 && *count <= 0) {
		fs.Usage()
		return errUsage
	}
	data, err := floodPayload(*payload, *hexPayload, *size)
	if err != nil {
		return err
	}
	var local *net.UDPAddr
	if *from != "" {
		src, err := netip.ParseAddrPort(*from)
		if err != nil {
			return fmt.Errorf("--from: %w", err)
		}
		local = net.UDPAddrFromAddrPort(src)
	}
	network := "udp4"
	if dst.Addr().Is6() {
		network = "udp6"
	}
	// Unconnected, so ICMP errors coming back do not fail the sends.
	conn, err := net.ListenUDP(network, local)
	if err != nil {
		return err
	}
	defer conn.Close()

	var r floodReport
	limit := time.Duration(*seconds * float64(time.Second))
	start := time.Now()
	for {
		elapsed := time.Since(start)
		if limit > 0 && elapsed >= limit {
			break
		}
		due := int64(elapsed.Seconds()*float64(*pps)) + 1
		if *count > 0 {
			due = min(due, *count)
		}
		for r.Sent+r.Errors < due {
			if _, err := conn.WriteToUDPAddrPort(data, dst); err != nil {
				r.Errors++
			} else {
				r.Sent++
			}
		}
		if *count > 0 && r.Sent+r.Errors >= *count {
			break
		}
		time.Sleep(labFloodTick)
	}
	r.Seconds = time.Since(start).Seconds()
	return printJSON(r)
}

func floodPayload(text, hexText string, size int) ([]byte, error) {
	if hexText != "" {
		if text != "" {
			return nil, errors.New("--payload and --hex exclude each other")
		}
		return hex.DecodeString(hexText)
	}
	if size <= 0 {
		size = max(len(text), 64)
	}
	if len(text) > size {
		return nil, fmt.Errorf("--payload of %d bytes does not fit --size %d", len(text), size)
	}
	data := make([]byte, size)
	copy(data, text)
	for i := len(text); i < size; i++ {
		data[i] = 'x'
	}
	return data, nil
}

// labTUNInject writes raw packets into a TUN device from the kernel side,
// through an AF_PACKET socket bound to it: the kernel hands them to the TUN
// reader (the daemon's capture) without looking at what they contain, so
// truncated and garbage "IP packets" reach the data path as they are.
func labTUNInject(args []string) error {
	fs := flag.NewFlagSet("tun-inject", flag.ContinueOnError)
	dev := fs.String("dev", "", "TUN device name")
	hexList := fs.String("hex", "", "comma-separated packets in hex")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dev == "" || *hexList == "" {
		fs.Usage()
		return errUsage
	}
	ifi, err := net.InterfaceByName(*dev)
	if err != nil {
		return err
	}
	var pkts [][]byte
	for _, h := range strings.Split(*hexList, ",") {
		p, err := hex.DecodeString(strings.TrimSpace(h))
		if err != nil {
			return fmt.Errorf("--hex %q: %w", h, err)
		}
		if len(p) == 0 {
			return errors.New("--hex: empty packet")
		}
		pkts = append(pkts, p)
	}
	if err := sendToDevice(ifi.Index, *dev, pkts); err != nil { // packet_*.go
		return err
	}
	return printJSON(map[string]int{"sent": len(pkts)})
}
