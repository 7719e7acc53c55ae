package lab

// The built-in ping (`switchyard-lab ping`), so that the demo needs no ping
// binary:
//
//  1. One raw ICMP socket for addr's family (root, or CAP_NET_RAW: a lab
//     namespace runs its commands as root).
//  2. Echo requests with a random identifier and sequence numbers 1…count,
//     one every interval; a reader goroutine takes the replies.
//  3. A reply counts when it is an echo reply from addr with our identifier,
//     or a destination-unreachable that quotes one of our requests (an
//     error, as iputils counts it).
//  4. It ends when every request is answered, or timeout after the last one
//     was sent, and prints iputils' lines and summary, so that Ping and the
//     demo read it as they read iputils ping.

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// EchoOptions is one run of the built-in ping.
type EchoOptions struct {
	Addr     netip.Addr
	Count    int           // echo requests to send
	Interval time.Duration // between two requests
	Timeout  time.Duration // how long to wait for the last answers
}

// Limits of the built-in ping. Every number has its unit and its reason.
const (
	// echoDataBytes (56 bytes) is the payload of each request, as iputils
	// sends: with the 8-byte header, "64 bytes from".
	echoDataBytes = 56

	// echoReadBytes (1500 bytes) is the receive buffer: an echo reply of 64
	// bytes or an ICMP error quoting the request, well under an MTU.
	echoReadBytes = 1500

	// echoPoll (100 ms) is how often the reader wakes to see whether the
	// run is over.
	echoPoll = 100 * time.Millisecond
)

// unreachable4 and unreachable6 are iputils' words for the codes of ICMP
// destination unreachable (RejectReplies are among them).
var (
	unreachable4 = map[int]string{
		0: "Destination Net Unreachable", 1: "Destination Host Unreachable",
		2: "Destination Protocol Unreachable", 3: "Destination Port Unreachable",
		9: "Destination Net Prohibited", 10: "Destination Host Prohibited",
		13: "Packet filtered",
	}
	unreachable6 = map[int]string{
		0: "Destination unreachable: No route", 1: "Destination unreachable: Administratively prohibited",
		2: "Destination unreachable: Beyond scope", 3: "Destination unreachable: Address unreachable",
		4: "Destination unreachable: Port unreachable",
	}
)

// Echo pings o.Addr and writes iputils-style lines to out. The error is
// for a ping that could not run (no raw socket, a send that failed): no
// reply is not an error, the result says so.
func Echo(ctx context.Context, o EchoOptions, out io.Writer) (PingResult, error) {
	if o.Count <= 0 {
		o.Count = 1
	}
	network, listen, proto := "ip4:icmp", "0.0.0.0", 1
	var reqType, replyType, unreachType icmp.Type = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply, ipv4.ICMPTypeDestinationUnreachable
	if o.Addr.Is6() {
		network, listen, proto = "ip6:ipv6-icmp", "::", 58
		reqType, replyType, unreachType = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply, ipv6.ICMPTypeDestinationUnreachable
	}
	c, err := icmp.ListenPacket(network, listen)
	if err != nil {
		return PingResult{}, fmt.Errorf("raw ICMP socket (%s): %w", network, err)
	}
	defer c.Close()
	var idb [2]byte
	_, _ = rand.Read(idb[:])
	id := int(binary.BigEndian.Uint16(idb[:]))
	fmt.Fprintf(out, "PING %s (%s) %d data bytes\n", o.Addr, o.Addr, echoDataBytes)

	e := &echoRun{out: out, sent: map[int]time.Time{}, answered: map[int]bool{}}
	dst := &net.IPAddr{IP: o.Addr.AsSlice()}
	done := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		e.read(c, proto, id, o.Addr, replyType, unreachType, done)
	}()
	start := time.Now()
	var sendErr error
	for seq := 1; seq <= o.Count && sendErr == nil; seq++ {
		if seq > 1 {
			select {
			case <-time.After(o.Interval):
			case <-ctx.Done():
				sendErr = ctx.Err()
				continue
			}
		}
		data := make([]byte, echoDataBytes)
		binary.BigEndian.PutUint64(data, uint64(time.Now().UnixNano()))
		msg := icmp.Message{Type: reqType, Body: &icmp.Echo{ID: id, Seq: seq, Data: data}}
		b, err := msg.Marshal(nil) // ICMPv6: the kernel fills the checksum of a raw socket
		if err != nil {
			sendErr = err
			continue
		}
		e.mu.Lock()
		e.sent[seq] = time.Now()
		e.mu.Unlock()
		if _, err := c.WriteTo(b, dst); err != nil {
			sendErr = fmt.Errorf("send echo request %d to %s: %w", seq, o.Addr, err)
		}
	}
	// Wait for the last answers.
	deadline := time.Now().Add(o.Timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil && !e.allAnswered() {
		time.Sleep(10 * time.Millisecond)
	}
	close(done)
	<-readerDone
	r := e.result(o.Addr, time.Since(start))
	if sendErr != nil {
		return r, sendErr
	}
	return r, nil
}

// echoRun is the state of one Echo shared by the sender and the reader.
type echoRun struct {
	out io.Writer

	mu       sync.Mutex
	sent     map[int]time.Time // seq → when
	answered map[int]bool      // seq → a reply (true) or an error (false) came
	rtts     []time.Duration
	errors   int
}

func (e *echoRun) allAnswered() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.answered) == len(e.sent)
}

// read takes answers until done is closed.
func (e *echoRun) read(c *icmp.PacketConn, proto, id int, addr netip.Addr, replyType, unreachType icmp.Type, done chan struct{}) {
	buf := make([]byte, echoReadBytes)
	for {
		select {
		case <-done:
			return
		default:
		}
		_ = c.SetReadDeadline(time.Now().Add(echoPoll))
		n, peer, err := c.ReadFrom(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		from, _ := netip.AddrFromSlice(peer.(*net.IPAddr).IP)
		from = from.Unmap()
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil {
			continue
		}
		switch {
		case m.Type == replyType:
			echo, ok := m.Body.(*icmp.Echo)
			if ok && echo.ID == id && from == addr {
				e.reply(from, echo.Seq, n)
			}
		case m.Type == unreachType:
			du, ok := m.Body.(*icmp.DstUnreach)
			if !ok {
				continue
			}
			if seq, ok := quotedEcho(du.Data, addr, id); ok {
				words := unreachable4[m.Code]
				if addr.Is6() {
					words = unreachable6[m.Code]
				}
				if words == "" {
					words = fmt.Sprintf("Destination unreachable (code %d)", m.Code)
				}
				e.failed(from, seq, words)
			}
		}
	}
}

// reply records an echo reply of n bytes.
func (e *echoRun) reply(from netip.Addr, seq, n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	at, ok := e.sent[seq]
	if !ok {
		return
	}
	if _, dup := e.answered[seq]; dup {
		return
	}
	rtt := time.Since(at)
	e.answered[seq] = true
	e.rtts = append(e.rtts, rtt)
	fmt.Fprintf(e.out, "%d bytes from %s: icmp_seq=%d time=%.3f ms\n", n, from, seq, float64(rtt)/float64(time.Millisecond))
}

// failed records an ICMP error for seq.
func (e *echoRun) failed(from netip.Addr, seq int, words string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.sent[seq]; !ok {
		return
	}
	if _, dup := e.answered[seq]; dup {
		return
	}
	e.answered[seq] = false
	e.errors++
	fmt.Fprintf(e.out, "From %s icmp_seq=%d %s\n", from, seq, words)
}

// result prints iputils' summary and returns it.
func (e *echoRun) result(addr netip.Addr, took time.Duration) PingResult {
	e.mu.Lock()
	defer e.mu.Unlock()
	r := PingResult{Transmitted: len(e.sent), Received: len(e.rtts)}
	if r.Transmitted > 0 {
		r.Loss = 100 * float64(r.Transmitted-r.Received) / float64(r.Transmitted)
	}
	errs := ""
	if e.errors > 0 {
		errs = fmt.Sprintf("+%d errors, ", e.errors)
	}
	fmt.Fprintf(e.out, "\n--- %s ping statistics ---\n", addr)
	fmt.Fprintf(e.out, "%d packets transmitted, %d received, %s%g%% packet loss, time %dms\n",
		r.Transmitted, r.Received, errs, math.Round(r.Loss), took.Milliseconds())
	if len(e.rtts) > 0 {
		ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
		lo, hi, sum := e.rtts[0], e.rtts[0], time.Duration(0)
		for _, d := range e.rtts {
			lo, hi, sum = min(lo, d), max(hi, d), sum+d
		}
		avg := sum / time.Duration(len(e.rtts))
		var dev float64
		for _, d := range e.rtts {
			dev += (ms(d) - ms(avg)) * (ms(d) - ms(avg))
		}
		dev = math.Sqrt(dev / float64(len(e.rtts)))
		fmt.Fprintf(e.out, "rtt min/avg/max/mdev = %.3f/%.3f/%.3f/%.3f ms\n", ms(lo), ms(avg), ms(hi), dev)
		r.AvgRTT = avg
	}
	return r
}

// quotedEcho finds our echo request in the datagram an ICMP error quotes
// (its IP header and at least 8 bytes of the request) and returns its
// sequence number.
func quotedEcho(quote []byte, addr netip.Addr, id int) (int, bool) {
	var dst netip.Addr
	var icmpAt int
	switch {
	case addr.Is4() && len(quote) >= 20 && quote[0]>>4 == 4:
		icmpAt = int(quote[0]&0x0f) * 4
		dst = netip.AddrFrom4([4]byte(quote[16:20]))
		if quote[9] != 1 {
			return 0, false
		}
	case addr.Is6() && len(quote) >= 40 && quote[0]>>4 == 6:
		icmpAt = 40
		dst = netip.AddrFrom16([16]byte(quote[24:40]))
		if quote[6] != 58 {
			return 0, false
		}
	default:
		return 0, false
	}
	if dst != addr || len(quote) < icmpAt+8 {
		return 0, false
	}
	h := quote[icmpAt:]
	if int(binary.BigEndian.Uint16(h[4:6])) != id {
		return 0, false
	}
	return int(binary.BigEndian.Uint16(h[6:8])), true
}
