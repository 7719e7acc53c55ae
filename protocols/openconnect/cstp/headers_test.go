package cstp

import (
	"bufio"
	"bytes"
	"net/http"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

// ocservReply is the head of a CONNECT reply as ocserv 1.1.6 sent it here.
const ocservReply = "HTTP/1.1 200 CONNECTED\r\n" +
	"X-CSTP-Version: 1\r\n" +
	"X-CSTP-Server-Name: ocserv 1.1.6\r\n" +
	"X-CSTP-DPD: 2\r\n" +
	"X-CSTP-Address: 192.168.99.50\r\n" +
	"X-CSTP-Netmask: 255.255.255.0\r\n" +
	"X-CSTP-Split-Include: 10.97.243.0/255.255.255.0\r\n" +
	"X-CSTP-Split-Include: 198.18.7.0/255.255.255.0\r\n" +
	"X-CSTP-Keepalive: 30\r\n" +
	"X-CSTP-Idle-Timeout: none\r\n" +
	"X-CSTP-MTU: 1434\r\n" +
	"X-DTLS-App-ID: 11a857c0ed7adf30\r\n" +
	"X-DTLS-CipherSuite: PSK-NEGOTIATE\r\n" +
	"X-DTLS-DPD: 2\r\n" +
	"X-DTLS-Port: 4443\r\n" +
	"X-DTLS-Keepalive: 30\r\n" +
	"\r\n" +
	"STF\x01"

func TestReadHeadAndParseTunnel(t *testing.T) {
	br := bufio.NewReader(strings.NewReader(ocservReply))
	first, h, err := ReadHead(br)
	if err != nil {
		t.Fatal(err)
	}
	code, reason, err := ParseStatus(first)
	if code != 200 || reason != "CONNECTED" || err != nil {
		t.Errorf("status: got %d %q %v", code, reason, err)
	}
	rest := make([]byte, 8)
	n, _ := br.Read(rest)
	if string(rest[:n]) != "STF\x01" {
		t.Errorf("after the head: got %q, want the first frame's bytes", rest[:n])
	}
	got, err := ParseTunnel(h)
	if err != nil {
		t.Fatal(err)
	}
	want := Tunnel{
		Address:       netip.MustParsePrefix("192.168.99.50/24"),
		SplitInclude:  []netip.Prefix{netip.MustParsePrefix("10.97.243.0/24"), netip.MustParsePrefix("198.18.7.0/24")},
		MTU:           1434,
		DPD:           2 * time.Second,
		Keepalive:     30 * time.Second,
		DTLSPort:      4443,
		DTLSAppID:     []byte{0x11, 0xa8, 0x57, 0xc0, 0xed, 0x7a, 0xdf, 0x30},
		DTLSCipher:    PSKNegotiate,
		DTLSDPD:       2 * time.Second,
		DTLSKeepalive: 30 * time.Second,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if !got.HasDTLS() {
		t.Error("HasDTLS: got false")
	}
}

func TestParseTunnelErrors(t *testing.T) {
	tests := []struct {
		name, headers, want string
	}{
		{"no address", "X-CSTP-MTU: 1400", "X-CSTP-Address: missing"},
		{"ipv6 as address", "X-CSTP-Address: fd00::1", "want an IPv4 address"},
		{"holey netmask", "X-CSTP-Address: 10.0.0.2\r\nX-CSTP-Netmask: 255.0.255.0", "contiguous"},
		{"bad mtu", "X-CSTP-Address: 10.0.0.2\r\nX-CSTP-MTU: lots", "X-Cstp-Mtu: want a number"},
		{"bad route", "X-CSTP-Address: 10.0.0.2\r\nX-CSTP-Split-Include: 10.0.0.0", "want address/mask"},
		{"bad route mask", "X-CSTP-Address: 10.0.0.2\r\nX-CSTP-Split-Include: 10.0.0.0/33", "prefix length 0-32"},
		{"bad app id", "X-CSTP-Address: 10.0.0.2\r\nX-DTLS-App-ID: zz", "X-DTLS-App-ID"},
		{"port out of range", "X-CSTP-Address: 10.0.0.2\r\nX-DTLS-Port: 70000", "X-Dtls-Port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, h, err := ReadHead(bufio.NewReader(strings.NewReader("HTTP/1.1 200 OK\r\n" + tt.headers + "\r\n\r\n")))
			if err != nil {
				t.Fatal(err)
			}
			_, err = ParseTunnel(h)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error with %q", err, tt.want)
			}
		})
	}
}

func TestReadHeadLimits(t *testing.T) {
	long := "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("a", MaxHeadBytes) + "\r\n\r\n"
	if _, _, err := ReadHead(bufio.NewReader(strings.NewReader(long))); err == nil {
		t.Error("a head larger than MaxHeadBytes: got no error")
	}
	many := "HTTP/1.1 200 OK\r\n" + strings.Repeat("X-A: b\r\n", MaxHeaderLines+1) + "\r\n"
	if _, _, err := ReadHead(bufio.NewReader(strings.NewReader(many))); err == nil {
		t.Error("too many header lines: got no error")
	}
	if _, _, err := ReadHead(bufio.NewReader(strings.NewReader("HTTP/1.1 200 OK\r\nno colon\r\n\r\n"))); err == nil {
		t.Error("a header line without a colon: got no error")
	}
	for _, line := range []string{"SSH-2.0-OpenSSH", "HTTP/1.1 abc", "HTTP/2 200 OK"} {
		if _, _, err := ParseStatus(line); err == nil {
			t.Errorf("ParseStatus(%q): got no error", line)
		}
	}
}

func TestAppendConnect(t *testing.T) {
	got := string(AppendConnect(nil, ConnectRequest{Host: "10.0.0.1:443", Cookie: "abc\r\nEvil: 1", UserAgent: UserAgent,
		BaseMTU: 1500, MTU: 1406, DTLS: true}))
	for _, want := range []string{
		"CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\n", "Host: 10.0.0.1:443\r\n", "Cookie: webvpn=abcEvil: 1\r\n",
		"X-CSTP-Version: 1\r\n", "X-CSTP-Base-MTU: 1500\r\n", "X-CSTP-MTU: 1406\r\n",
		"X-CSTP-Address-Type: IPv4\r\n", "X-DTLS-CipherSuite: PSK-NEGOTIATE\r\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("request lacks %q:\n%s", want, got)
		}
	}
	if !strings.HasSuffix(got, "\r\n\r\n") || strings.Count(got, "\r\n\r\n") != 1 {
		t.Errorf("request does not end with one blank line:\n%q", got)
	}
	// A server reading it sees the same headers.
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader([]byte(got))))
	if err != nil {
		t.Fatal(err)
	}
	if req.Method != "CONNECT" || req.Header.Get("X-Dtls-Ciphersuite") != PSKNegotiate {
		t.Errorf("parsed back: %s %v", req.Method, req.Header)
	}
}

func TestParseRoute(t *testing.T) {
	tests := []struct{ in, want string }{
		{"10.1.2.3/255.255.0.0", "10.1.0.0/16"},
		{"10.0.0.0/8", "10.0.0.0/8"},
		{"fd00::1/64", "fd00::/64"},
		{"0.0.0.0/0.0.0.0", "0.0.0.0/0"},
	}
	for _, tt := range tests {
		got, err := ParseRoute(tt.in)
		if err != nil || got.String() != tt.want {
			t.Errorf("ParseRoute(%q): got %v %v, want %s", tt.in, got, err, tt.want)
		}
	}
	if got := Netmask(20); got != "255.255.240.0" {
		t.Errorf("Netmask(20): got %s", got)
	}
}

func FuzzReadHead(f *testing.F) {
	f.Add([]byte(ocservReply))
	f.Add([]byte("HTTP/1.1 401 Unauthorized\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, h, err := ReadHead(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			return
		}
		_, _ = ParseTunnel(h)
	})
}

// The server's reply head reads back as the same tunnel.
func TestTunnelReplyRoundTrip(t *testing.T) {
	want := Tunnel{
		Address:       netip.MustParsePrefix("192.168.77.2/24"),
		DNS:           []netip.Addr{netip.MustParseAddr("10.0.0.53")},
		SplitInclude:  []netip.Prefix{netip.MustParsePrefix("10.55.0.0/16"), netip.MustParsePrefix("fd00::/64")},
		MTU:           1406,
		DPD:           30 * time.Second,
		Keepalive:     20 * time.Second,
		DTLSPort:      443,
		DTLSAppID:     []byte{1, 2, 3, 4},
		DTLSCipher:    PSKNegotiate,
		DTLSDPD:       30 * time.Second,
		DTLSKeepalive: 20 * time.Second,
		DTLSMTU:       1406,
	}
	head := AppendTunnelReply(nil, &want, "switchyard")
	first, h, err := ReadHead(bufio.NewReader(bytes.NewReader(head)))
	if err != nil || first != "HTTP/1.1 200 CONNECTED" {
		t.Fatalf("%q %v", first, err)
	}
	got, err := ParseTunnel(h)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if !OffersPSKNegotiate(http.Header{"X-Dtls-Ciphersuite": {"OC-DTLS1_2-AES256-GCM:PSK-NEGOTIATE:AES128-SHA"}}) {
		t.Error("OffersPSKNegotiate: got false for a list with it")
	}
	if c := Cookie(http.Header{"Cookie": {"a=b; webvpn=XYZ; c=d"}}); c != "XYZ" {
		t.Errorf("Cookie: got %q", c)
	}
}
