package openvpn

// Key method 2 (ssl.c key_method_2_write/read) and the text messages of the
// control channel, both carried inside TLS once the handshake is done:
//
//	uint32 0 | uint8 key method (2) | key source (client: pre-master 48,
//	random 32, random 32; server: random 32, random 32) | options string |
//	username | password | peer info
//
// each string as uint16 length (with its NUL) and the bytes with the NUL.
// After it, control messages are NUL-terminated text: PUSH_REQUEST,
// PUSH_REPLY,…, AUTH_FAILED, RESTART, HALT, EXIT.

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// ivProto is IV_PROTO: data v2 (1<<1), request push (1<<2), TLS key export
// (1<<3), exit notify over the control channel (1<<7).
const ivProto = 1<<1 | 1<<2 | 1<<3 | 1<<7

// ivVersion is the OpenVPN version this implementation announces.
const ivVersion = "2.6.14"

// localOptions is the options string sent in key method 2. OpenVPN 2.6
// only warns when it differs from its own.
const localOptions = "V4,dev-type tun,link-mtu 1521,tun-mtu 1500,proto UDPv4,keydir 1,cipher AES-256-GCM,auth [null-digest],keysize 256,key-method 2,tls-client"

// peerInfo is the peer info a client sends.
func peerInfo(ciphers []string) string {
	return fmt.Sprintf("IV_VER=%s\nIV_PLAT=linux\nIV_PROTO=%d\nIV_NCP=2\nIV_CIPHERS=%s\nIV_MTU=1600\nIV_TCPNL=1\n",
		ivVersion, ivProto, strings.Join(ciphers, ":"))
}

func appendString(b []byte, s string) []byte {
	if s == "" {
		return binary.BigEndian.AppendUint16(b, 0)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)+1))
	b = append(b, s...)
	return append(b, 0)
}

// keyMethod2 builds the key method 2 message of a client (server false) or
// a server.
func keyMethod2(server bool, options, info string) []byte {
	b := make([]byte, 0, 512)
	b = binary.BigEndian.AppendUint32(b, 0)
	b = append(b, 2)
	n := 64
	if !server {
		n = 48 + 64
	}
	src := make([]byte, n)
	_, _ = rand.Read(src)
	b = append(b, src...)
	b = appendString(b, options)
	b = appendString(b, "") // username
	b = appendString(b, "") // password
	return appendString(b, info)
}

// km2 is a parsed key method 2 message.
type km2 struct {
	Options  string
	Username string
	PeerInfo string
}

var errNeedMore = errors.New("incomplete")

// parseKeyMethod2 decodes the message sent by a server (fromServer) or a
// client. It returns errNeedMore when b holds only its beginning, and how
// many bytes it used.
func parseKeyMethod2(b []byte, fromServer bool) (km2, int, error) {
	var m km2
	n := 5 + 64
	if !fromServer {
		n += 48
	}
	if len(b) < n {
		return m, 0, errNeedMore
	}
	if binary.BigEndian.Uint32(b) != 0 {
		return m, 0, errors.New("key method message does not start with 0")
	}
	if b[4]&0x0f != 2 {
		return m, 0, fmt.Errorf("key method %d, only 2 is supported", b[4]&0x0f)
	}
	pos := n
	str := func() (string, error) {
		if len(b)-pos < 2 {
			return "", errNeedMore
		}
		l := int(binary.BigEndian.Uint16(b[pos:]))
		if len(b)-pos-2 < l {
			return "", errNeedMore
		}
		s := b[pos+2 : pos+2+l]
		pos += 2 + l
		return strings.TrimRight(string(s), "\x00"), nil
	}
	var err error
	if m.Options, err = str(); err != nil {
		return m, 0, err
	}
	// Username, password and peer info: OpenVPN 2.6 servers send them too
	// (empty strings at least).
	if m.Username, err = str(); err != nil {
		return m, 0, err
	}
	if _, err = str(); err != nil {
		return m, 0, err
	}
	if m.PeerInfo, err = str(); err != nil {
		return m, 0, err
	}
	return m, pos, nil
}

// msgReader reads the control channel's messages from a TLS connection.
type msgReader struct {
	r   io.Reader
	buf []byte
}

func (m *msgReader) fill() error {
	if len(m.buf) > maxPushBytes {
		return errors.New("control message larger than 64 KiB")
	}
	var tmp [4096]byte
	n, err := m.r.Read(tmp[:])
	m.buf = append(m.buf, tmp[:n]...)
	if n > 0 {
		return nil
	}
	return err
}

// keyMethod reads a key method 2 message.
func (m *msgReader) keyMethod(fromServer bool) (km2, error) {
	for {
		k, n, err := parseKeyMethod2(m.buf, fromServer)
		if err == nil {
			m.buf = m.buf[n:]
			return k, nil
		}
		if !errors.Is(err, errNeedMore) {
			return k, err
		}
		if err := m.fill(); err != nil {
			return k, err
		}
	}
}

// text reads the next NUL-terminated message.
func (m *msgReader) text() (string, error) {
	for {
		if i := strings.IndexByte(string(m.buf), 0); i >= 0 {
			s := string(m.buf[:i])
			m.buf = m.buf[i+1:]
			if s == "" {
				continue
			}
			return s, nil
		}
		if err := m.fill(); err != nil {
			return "", err
		}
	}
}

// pushReply is what the server pushed.
type pushReply struct {
	Addr        netip.Prefix // ifconfig (IPv4)
	Addr6       netip.Prefix // ifconfig-ipv6
	Routes      []netip.Prefix
	PeerID      uint32
	HasPeerID   bool
	Cipher      string
	TLSEKM      bool
	Ping        time.Duration
	PingRestart time.Duration

	// Server side only.
	Gateway     netip.Addr // route-gateway: the server's tunnel address
	requestPush bool       // the client announced IV_PROTO_REQUEST_PUSH
}

// parsePush merges one PUSH_REPLY message into p. It reports whether more
// follow (push-continuation 2).
func parsePush(p *pushReply, msg string) (more bool, err error) {
	body, ok := strings.CutPrefix(msg, "PUSH_REPLY")
	if !ok {
		return false, fmt.Errorf("not a PUSH_REPLY: %.40q", msg)
	}
	var topologySubnet bool
	var ifconfig [2]string
	for _, opt := range strings.Split(body, ",") {
		f := strings.Fields(opt)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "ifconfig":
			if len(f) >= 3 {
				ifconfig = [2]string{f[1], f[2]}
			}
		case "topology":
			topologySubnet = len(f) > 1 && f[1] == "subnet"
		case "ifconfig-ipv6":
			if len(f) >= 2 {
				if pfx, err := netip.ParsePrefix(f[1]); err == nil {
					p.Addr6 = pfx
				}
			}
		case "route":
			if len(f) >= 2 {
				mask := "255.255.255.255"
				if len(f) >= 3 && f[2] != "default" {
					mask = f[2]
				}
				if pfx, ok := maskPrefix(f[1], mask); ok {
					p.Routes = append(p.Routes, pfx)
				}
			}
		case "route-ipv6":
			if len(f) >= 2 {
				if pfx, err := netip.ParsePrefix(f[1]); err == nil {
					p.Routes = append(p.Routes, pfx.Masked())
				}
			}
		case "peer-id":
			if len(f) >= 2 {
				if v, err := strconv.ParseUint(f[1], 10, 32); err == nil && v < noPeerID {
					p.PeerID, p.HasPeerID = uint32(v), true
				}
			}
		case "cipher":
			if len(f) >= 2 {
				p.Cipher = f[1]
			}
		case "protocol-flags":
			for _, fl := range f[1:] {
				if fl == "tls-ekm" {
					p.TLSEKM = true
				}
			}
		case "key-derivation":
			if len(f) >= 2 && f[1] == "tls-ekm" {
				p.TLSEKM = true
			}
		case "ping":
			if len(f) >= 2 {
				if v, err := strconv.Atoi(f[1]); err == nil && v > 0 {
					p.Ping = time.Duration(v) * time.Second
				}
			}
		case "ping-restart":
			if len(f) >= 2 {
				if v, err := strconv.Atoi(f[1]); err == nil && v > 0 {
					p.PingRestart = time.Duration(v) * time.Second
				}
			}
		case "comp-lzo", "compress":
			// Even "comp-lzo no" and stubs add a framing byte.
			return false, fmt.Errorf("the server pushes %q: compression is not supported", opt)
		case "push-continuation":
			more = len(f) >= 2 && f[1] == "2"
		}
	}
	if ifconfig[0] != "" {
		a, err := netip.ParseAddr(ifconfig[0])
		if err == nil && a.Is4() {
			bits := 32
			if topologySubnet || p.Addr.IsValid() {
				if m, ok := maskBits(ifconfig[1]); ok {
					bits = m
				}
			}
			p.Addr = netip.PrefixFrom(a, bits)
		}
	}
	return more, nil
}

func maskBits(mask string) (int, bool) {
	m, err := netip.ParseAddr(mask)
	if err != nil || !m.Is4() {
		return 0, false
	}
	b := m.As4()
	v := binary.BigEndian.Uint32(b[:])
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

func maskPrefix(addr, mask string) (netip.Prefix, bool) {
	a, err := netip.ParseAddr(addr)
	if err != nil || !a.Is4() {
		return netip.Prefix{}, false
	}
	bits, ok := maskBits(mask)
	if !ok {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, bits).Masked(), true
}
