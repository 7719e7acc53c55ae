package cstp

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// Limits of the HTTP head before the tunnel starts. A peer that sends more
// is not a VPN gateway (or is hostile): the connection is refused.
const (
	// MaxHeadBytes (32 KiB) bounds the status line and headers together.
	// ocserv's reply with a few hundred split routes is ~10 KiB.
	MaxHeadBytes = 32 << 10
	// MaxHeaderLines (512) bounds the number of header lines.
	MaxHeaderLines = 512
)

// ConnectPath is the request target of the tunnel request.
const ConnectPath = "/CSCOSSLC/tunnel"

// PSKNegotiate is the DTLS "cipher suite" that asks for DTLS 1.2 with a
// pre-shared key exported from the TLS session (RFC 5705 exporter, label
// ExporterLabel): ocserv ≥ 0.11 and openconnect ≥ 7.08 speak it.
const PSKNegotiate = "PSK-NEGOTIATE"

// ExporterLabel and ExporterBytes derive the DTLS PSK from the TLS session:
// ExportKeyingMaterial(ExporterLabel, nil, ExporterBytes).
const (
	ExporterLabel = "EXPORTER-openconnect-psk"
	ExporterBytes = 32
)

// PSKIdentity is the PSK identity both sides use.
const PSKIdentity = "psk"

// ConnectRequest is what a client asks for in its CONNECT.
type ConnectRequest struct {
	Host      string // the Host header: the server's host[:port]
	Cookie    string // the webvpn cookie from the authentication
	Hostname  string // X-CSTP-Hostname: the client's name, for the server's logs
	UserAgent string
	BaseMTU   int  // X-CSTP-Base-MTU: the MTU of the path to the server
	MTU       int  // X-CSTP-MTU: the tunnel MTU the client would like
	IPv6      bool // ask for an IPv6 address too (X-CSTP-Address-Type)
	DTLS      bool // offer DTLS (PSK-NEGOTIATE)
}

// AppendConnect appends the CONNECT request head to dst.
func AppendConnect(dst []byte, r ConnectRequest) []byte {
	dst = append(dst, "CONNECT "+ConnectPath+" HTTP/1.1\r\n"...)
	dst = appendHeader(dst, "Host", r.Host)
	dst = appendHeader(dst, "User-Agent", r.UserAgent)
	dst = appendHeader(dst, "Cookie", "webvpn="+r.Cookie)
	dst = appendHeader(dst, "X-CSTP-Version", "1")
	if r.Hostname != "" {
		dst = appendHeader(dst, "X-CSTP-Hostname", r.Hostname)
	}
	if r.BaseMTU > 0 {
		dst = appendHeader(dst, "X-CSTP-Base-MTU", strconv.Itoa(r.BaseMTU))
	}
	if r.MTU > 0 {
		dst = appendHeader(dst, "X-CSTP-MTU", strconv.Itoa(r.MTU))
	}
	if r.IPv6 {
		dst = appendHeader(dst, "X-CSTP-Address-Type", "IPv6,IPv4")
		dst = appendHeader(dst, "X-CSTP-Full-IPv6-Capability", "true")
	} else {
		dst = appendHeader(dst, "X-CSTP-Address-Type", "IPv4")
	}
	if r.DTLS {
		dst = appendHeader(dst, "X-DTLS-CipherSuite", PSKNegotiate)
	}
	return append(dst, "\r\n"...)
}

func appendHeader(dst []byte, k, v string) []byte {
	// Header values come from settings and the server; refuse to let a
	// line break in one start another header.
	v = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, v)
	dst = append(dst, k...)
	dst = append(dst, ": "...)
	dst = append(dst, v...)
	return append(dst, "\r\n"...)
}

// ReadHead reads an HTTP status or request line and its headers from br,
// within MaxHeadBytes and MaxHeaderLines. It leaves br at the first byte
// after the blank line: on a tunnel, the frames.
func ReadHead(br *bufio.Reader) (first string, h http.Header, err error) {
	budget := MaxHeadBytes
	readLine := func() (string, error) {
		var line []byte
		for {
			frag, isPrefix, err := br.ReadLine()
			if err != nil {
				return "", err
			}
			budget -= len(frag) + 2
			if budget < 0 {
				return "", fmt.Errorf("cstp: HTTP head larger than %d bytes", MaxHeadBytes)
			}
			line = append(line, frag...)
			if !isPrefix {
				return string(line), nil
			}
		}
	}
	first, err = readLine()
	if err != nil {
		return "", nil, err
	}
	h = http.Header{}
	for n := 0; ; n++ {
		if n >= MaxHeaderLines {
			return "", nil, fmt.Errorf("cstp: more than %d header lines", MaxHeaderLines)
		}
		line, err := readLine()
		if err != nil {
			return "", nil, err
		}
		if line == "" {
			return first, h, nil
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return "", nil, fmt.Errorf("cstp: malformed header line %q", clip(line))
		}
		h.Add(textproto.CanonicalMIMEHeaderKey(k), strings.TrimSpace(v))
	}
}

// ParseStatus splits an HTTP/1.x status line into its code and text.
func ParseStatus(line string) (int, string, error) {
	proto, rest, ok := strings.Cut(line, " ")
	if !ok || !strings.HasPrefix(proto, "HTTP/1.") {
		return 0, "", fmt.Errorf("cstp: not an HTTP status line: %q", clip(line))
	}
	codeText, reason, _ := strings.Cut(rest, " ")
	code, err := strconv.Atoi(codeText)
	if err != nil || code < 100 || code > 999 {
		return 0, "", fmt.Errorf("cstp: bad status code in %q", clip(line))
	}
	return code, reason, nil
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// Tunnel is what the server grants in its CONNECT reply.
type Tunnel struct {
	Address      netip.Prefix   // X-CSTP-Address with X-CSTP-Netmask
	Address6     netip.Prefix   // X-CSTP-Address-IP6 (invalid: none)
	DNS          []netip.Addr   // X-CSTP-DNS
	SplitInclude []netip.Prefix // X-CSTP-Split-Include(-IP6): routes to send into the tunnel
	SplitExclude []netip.Prefix // X-CSTP-Split-Exclude(-IP6): routes to keep out of it
	MTU          int            // X-CSTP-MTU
	DPD          time.Duration  // X-CSTP-DPD (0: none)
	Keepalive    time.Duration  // X-CSTP-Keepalive (0: none)
	IdleTimeout  time.Duration  // X-CSTP-Idle-Timeout (0: none)

	DTLSPort      int           // X-DTLS-Port (0: no DTLS offered)
	DTLSAppID     []byte        // X-DTLS-App-ID, hex-decoded: the ClientHello session ID
	DTLSCipher    string        // X-DTLS-CipherSuite
	DTLSDPD       time.Duration // X-DTLS-DPD
	DTLSKeepalive time.Duration // X-DTLS-Keepalive
	DTLSMTU       int           // X-DTLS-MTU
}

// HasDTLS reports whether the server offered DTLS with PSK-NEGOTIATE.
func (t *Tunnel) HasDTLS() bool {
	return t.DTLSPort > 0 && len(t.DTLSAppID) > 0 && t.DTLSCipher == PSKNegotiate
}

// ParseTunnel reads the tunnel parameters from a CONNECT reply's headers.
// An IPv4 address is required; anything malformed is an error that names
// the header.
func ParseTunnel(h http.Header) (Tunnel, error) {
	var t Tunnel
	var errs []error
	bad := func(k, v, want string) { errs = append(errs, fmt.Errorf("%s: %s, got %q", k, want, clip(v))) }

	addr, mask := h.Get("X-Cstp-Address"), h.Get("X-Cstp-Netmask")
	if addr == "" {
		errs = append(errs, errors.New("X-CSTP-Address: missing (an IPv4 address is required)"))
	} else if a, err := netip.ParseAddr(addr); err != nil || !a.Is4() {
		bad("X-CSTP-Address", addr, "want an IPv4 address")
	} else {
		bits := 32
		if mask != "" {
			b, ok := maskBits(mask)
			if !ok {
				bad("X-CSTP-Netmask", mask, "want a contiguous IPv4 netmask")
			}
			bits = b
		}
		t.Address = netip.PrefixFrom(a, bits)
	}
	if v := h.Get("X-Cstp-Address-Ip6"); v != "" {
		p, err := netip.ParsePrefix(v)
		if err != nil || !p.Addr().Is6() {
			bad("X-CSTP-Address-IP6", v, "want an IPv6 address/prefix length")
		} else {
			t.Address6 = p
		}
	}
	for _, v := range h.Values("X-Cstp-Dns") {
		if a, err := netip.ParseAddr(v); err == nil {
			t.DNS = append(t.DNS, a)
		} else {
			bad("X-CSTP-DNS", v, "want an IP address")
		}
	}
	for _, k := range []string{"X-Cstp-Split-Include", "X-Cstp-Split-Include-Ip6"} {
		for _, v := range h.Values(k) {
			p, err := ParseRoute(v)
			if err != nil {
				bad(k, v, err.Error())
				continue
			}
			t.SplitInclude = append(t.SplitInclude, p)
		}
	}
	for _, k := range []string{"X-Cstp-Split-Exclude", "X-Cstp-Split-Exclude-Ip6"} {
		for _, v := range h.Values(k) {
			p, err := ParseRoute(v)
			if err != nil {
				bad(k, v, err.Error())
				continue
			}
			t.SplitExclude = append(t.SplitExclude, p)
		}
	}
	num := func(k string, lo, hi int) int {
		v := h.Get(k)
		if v == "" {
			return 0
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			bad(k, v, fmt.Sprintf("want a number %d-%d", lo, hi))
			return 0
		}
		return n
	}
	secs := func(k string) time.Duration {
		if strings.EqualFold(h.Get(k), "none") { // ocserv: X-CSTP-Idle-Timeout: none
			return 0
		}
		return time.Duration(num(k, 0, 86400*365)) * time.Second
	}
	t.MTU = num("X-Cstp-Mtu", 0, MaxPayload)
	t.DPD = secs("X-Cstp-Dpd")
	t.Keepalive = secs("X-Cstp-Keepalive")
	t.IdleTimeout = secs("X-Cstp-Idle-Timeout")
	t.DTLSPort = num("X-Dtls-Port", 0, 65535)
	t.DTLSDPD = secs("X-Dtls-Dpd")
	t.DTLSKeepalive = secs("X-Dtls-Keepalive")
	t.DTLSMTU = num("X-Dtls-Mtu", 0, MaxPayload)
	t.DTLSCipher = h.Get("X-Dtls-Ciphersuite")
	if v := h.Get("X-Dtls-App-Id"); v != "" {
		id, err := hex.DecodeString(v)
		if err != nil || len(id) == 0 || len(id) > 32 {
			bad("X-DTLS-App-ID", v, "want 1-32 bytes in hex")
		} else {
			t.DTLSAppID = id
		}
	}
	if len(errs) > 0 {
		return Tunnel{}, errors.Join(errs...)
	}
	return t, nil
}

// ParseRoute parses a route as servers write it: "10.0.0.0/255.255.0.0",
// "10.0.0.0/16" or "fd00::/64". Host bits are cleared.
func ParseRoute(v string) (netip.Prefix, error) {
	a, m, ok := strings.Cut(strings.TrimSpace(v), "/")
	if !ok {
		return netip.Prefix{}, errors.New("want address/mask")
	}
	addr, err := netip.ParseAddr(a)
	if err != nil || addr.Zone() != "" {
		return netip.Prefix{}, errors.New("want an IP address before the /")
	}
	addr = addr.Unmap()
	var bits int
	if strings.Contains(m, ".") {
		b, ok := maskBits(m)
		if !ok || !addr.Is4() {
			return netip.Prefix{}, errors.New("want a contiguous IPv4 netmask")
		}
		bits = b
	} else {
		b, err := strconv.Atoi(m)
		if err != nil || b < 0 || b > addr.BitLen() {
			return netip.Prefix{}, fmt.Errorf("want a prefix length 0-%d", addr.BitLen())
		}
		bits = b
	}
	return netip.PrefixFrom(addr, bits).Masked(), nil
}

// maskBits converts a dotted IPv4 netmask to a prefix length.
func maskBits(m string) (int, bool) {
	a, err := netip.ParseAddr(m)
	if err != nil || !a.Is4() {
		return 0, false
	}
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	ones := 0
	for v&0x80000000 != 0 {
		ones++
		v <<= 1
	}
	if v != 0 {
		return 0, false
	}
	return ones, true
}

// Netmask returns the dotted IPv4 netmask of a prefix length.
func Netmask(bits int) string {
	v := ^uint32(0) << (32 - bits)
	if bits == 0 {
		v = 0
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}).String()
}

// AppendTunnelReply appends a server's 200 CONNECTED reply head granting t.
// DTLS headers are written when t.HasDTLS().
func AppendTunnelReply(dst []byte, t *Tunnel, serverName string) []byte {
	dst = append(dst, "HTTP/1.1 200 CONNECTED\r\n"...)
	dst = appendHeader(dst, "X-CSTP-Version", "1")
	dst = appendHeader(dst, "X-CSTP-Server-Name", serverName)
	dst = appendHeader(dst, "X-CSTP-Address", t.Address.Addr().String())
	dst = appendHeader(dst, "X-CSTP-Netmask", Netmask(t.Address.Bits()))
	if t.Address6.IsValid() {
		dst = appendHeader(dst, "X-CSTP-Address-IP6", t.Address6.String())
	}
	for _, a := range t.DNS {
		dst = appendHeader(dst, "X-CSTP-DNS", a.String())
	}
	for _, p := range t.SplitInclude {
		if p.Addr().Is4() {
			dst = appendHeader(dst, "X-CSTP-Split-Include", p.Addr().String()+"/"+Netmask(p.Bits()))
		} else {
			dst = appendHeader(dst, "X-CSTP-Split-Include-IP6", p.String())
		}
	}
	secs := func(d time.Duration) string { return strconv.Itoa(int(d / time.Second)) }
	dst = appendHeader(dst, "X-CSTP-DPD", secs(t.DPD))
	dst = appendHeader(dst, "X-CSTP-Keepalive", secs(t.Keepalive))
	dst = appendHeader(dst, "X-CSTP-Idle-Timeout", "none")
	dst = appendHeader(dst, "X-CSTP-MTU", strconv.Itoa(t.MTU))
	dst = appendHeader(dst, "X-CSTP-Base-MTU", "1500")
	dst = appendHeader(dst, "X-CSTP-Rekey-Method", "none")
	if t.HasDTLS() {
		dst = appendHeader(dst, "X-DTLS-Port", strconv.Itoa(t.DTLSPort))
		dst = appendHeader(dst, "X-DTLS-App-ID", hex.EncodeToString(t.DTLSAppID))
		dst = appendHeader(dst, "X-DTLS-CipherSuite", PSKNegotiate)
		dst = appendHeader(dst, "X-DTLS-DPD", secs(t.DTLSDPD))
		dst = appendHeader(dst, "X-DTLS-Keepalive", secs(t.DTLSKeepalive))
		dst = appendHeader(dst, "X-DTLS-MTU", strconv.Itoa(t.DTLSMTU))
		dst = appendHeader(dst, "X-DTLS-Rekey-Method", "none")
	}
	return append(dst, "\r\n"...)
}

// OffersPSKNegotiate reports whether a client's CONNECT offers DTLS with
// PSK-NEGOTIATE (its X-DTLS-CipherSuite lists it among others).
func OffersPSKNegotiate(h http.Header) bool {
	for _, s := range strings.Split(h.Get("X-Dtls-Ciphersuite"), ":") {
		if strings.TrimSpace(s) == PSKNegotiate {
			return true
		}
	}
	return false
}

// Cookie returns the webvpn cookie of a request's Cookie headers.
func Cookie(h http.Header) string {
	for _, line := range h.Values("Cookie") {
		for _, c := range strings.Split(line, ";") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(c), "webvpn="); ok {
				return v
			}
		}
	}
	return ""
}
