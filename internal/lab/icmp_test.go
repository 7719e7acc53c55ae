package lab

import (
	"bytes"
	"context"
	"encoding/binary"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

// quote builds what an ICMP error quotes: the IP header of an echo request
// to dst (proto 1 or 58) and its first 8 bytes.
func quote(dst netip.Addr, proto byte, id, seq int) []byte {
	var h []byte
	if dst.Is4() {
		h = make([]byte, 20)
		h[0], h[9] = 0x45, proto
		d := dst.As4()
		copy(h[16:20], d[:])
	} else {
		h = make([]byte, 40)
		h[0], h[6] = 0x60, proto
		d := dst.As16()
		copy(h[24:40], d[:])
	}
	icmp := make([]byte, 8)
	binary.BigEndian.PutUint16(icmp[4:6], uint16(id))
	binary.BigEndian.PutUint16(icmp[6:8], uint16(seq))
	return append(h, icmp...)
}

func TestQuotedEcho(t *testing.T) {
	a4, a6 := netip.MustParseAddr("10.66.0.1"), netip.MustParseAddr("fd66::1")
	other := netip.MustParseAddr("10.66.0.2")
	tests := []struct {
		name    string
		quote   []byte
		addr    netip.Addr
		wantSeq int
		wantOK  bool
	}{
		{"ipv4 ours", quote(a4, 1, 77, 3), a4, 3, true},
		{"ipv6 ours", quote(a6, 58, 77, 9), a6, 9, true},
		{"another identifier", quote(a4, 1, 78, 3), a4, 0, false},
		{"another destination", quote(other, 1, 77, 3), a4, 0, false},
		{"not ICMP", quote(a4, 17, 77, 3), a4, 0, false},
		{"too short", quote(a4, 1, 77, 3)[:24], a4, 0, false},
		{"family mismatch", quote(a4, 1, 77, 3), a6, 0, false},
		{"empty", nil, a4, 0, false},
	}
	for _, tt := range tests {
		seq, ok := quotedEcho(tt.quote, tt.addr, 77)
		if seq != tt.wantSeq || ok != tt.wantOK {
			t.Errorf("%s: quotedEcho = %d, %v; want %d, %v", tt.name, seq, ok, tt.wantSeq, tt.wantOK)
		}
	}
}

// TestEchoLoopback pings the loopback addresses with the built-in ping:
// every request is answered, and the summary reads as iputils' does.
func TestEchoLoopback(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip((&Missing{Capability: "root", Why: "a raw ICMP socket needs root (or CAP_NET_RAW)"}).SkipMessage())
	}
	for _, addr := range []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")} {
		var out bytes.Buffer
		r, err := Echo(context.Background(), EchoOptions{Addr: addr, Count: 3, Interval: 20 * time.Millisecond, Timeout: time.Second}, &out)
		if err != nil {
			t.Fatalf("ping %s: %v\n%s", addr, err, out.String())
		}
		if r.Transmitted != 3 || r.Received != 3 || r.Loss != 0 || r.AvgRTT <= 0 {
			t.Errorf("ping %s: %+v, want 3 of 3 with an rtt\n%s", addr, r, out.String())
		}
		parsed, err := parsePing(addr, &Side{NS: "host"}, out.String(), nil)
		if err != nil || parsed.Transmitted != 3 || parsed.Received != 3 {
			t.Errorf("ping %s: the summary reads as %+v, %v", addr, parsed, err)
		}
		if n := strings.Count(out.String(), "bytes from "+addr.String()); n != 3 {
			t.Errorf("ping %s: %d reply lines, want 3:\n%s", addr, n, out.String())
		}
	}
}
