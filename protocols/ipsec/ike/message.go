package ike

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Limits of the codec.
const (
	// HeaderLen (28 bytes) is the IKE header.
	HeaderLen = 28
	// MaxPayloads (64) bounds the payloads of one message (or of one SK
	// payload's plaintext): strongSwan sends fewer than 20; a longer chain
	// is refused.
	MaxPayloads = 64
	// MaxMessageLen (64 KiB) bounds a message: more than a UDP datagram
	// holds.
	MaxMessageLen = 65535
	// MaxProposals (16) and MaxTransforms (32) bound an SA payload.
	MaxProposals  = 16
	MaxTransforms = 32
	// MaxSelectors (16) bounds a TS payload.
	MaxSelectors = 16
)

// ErrMalformed wraps every parse error.
var ErrMalformed = errors.New("malformed IKE message")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// Header is the IKE header.
type Header struct {
	SPIi, SPIr  uint64
	NextPayload uint8
	Version     uint8 // 0x20 for IKEv2
	Exchange    uint8
	Flags       uint8
	MessageID   uint32
	Length      uint32
}

// IsResponse reports whether the R flag is set.
func (h Header) IsResponse() bool { return h.Flags&FlagResponse != 0 }

// ParseHeader parses the header of msg and checks its length field against
// len(msg).
func ParseHeader(msg []byte) (Header, error) {
	if len(msg) < HeaderLen {
		return Header{}, malformed("%d bytes, shorter than the header", len(msg))
	}
	h := Header{
		SPIi:        binary.BigEndian.Uint64(msg[0:]),
		SPIr:        binary.BigEndian.Uint64(msg[8:]),
		NextPayload: msg[16],
		Version:     msg[17],
		Exchange:    msg[18],
		Flags:       msg[19],
		MessageID:   binary.BigEndian.Uint32(msg[20:]),
		Length:      binary.BigEndian.Uint32(msg[24:]),
	}
	if h.Version>>4 != 2 {
		return h, malformed("version %#x", h.Version)
	}
	if int(h.Length) != len(msg) {
		return h, malformed("length field %d, datagram %d bytes", h.Length, len(msg))
	}
	return h, nil
}

// AppendHeader appends h (Length as given).
func AppendHeader(b []byte, h Header) []byte {
	b = binary.BigEndian.AppendUint64(b, h.SPIi)
	b = binary.BigEndian.AppendUint64(b, h.SPIr)
	b = append(b, h.NextPayload, 0x20, h.Exchange, h.Flags)
	b = binary.BigEndian.AppendUint32(b, h.MessageID)
	return binary.BigEndian.AppendUint32(b, h.Length)
}

// Payload is one generic payload: its type, critical bit and body (after
// the 4-byte generic header). Parsed bodies alias the message.
type Payload struct {
	Type     uint8
	Critical bool
	Body     []byte
}

// ParsePayloads walks the chain that starts with type first in b, which must
// end exactly with the last payload. It appends to dst.
func ParsePayloads(first uint8, b []byte, dst []Payload) ([]Payload, error) {
	next := first
	for next != PayloadNone {
		if len(dst) >= MaxPayloads {
			return dst, malformed("more than %d payloads", MaxPayloads)
		}
		if len(b) < 4 {
			return dst, malformed("payload %d: %d bytes left, need 4", next, len(b))
		}
		plen := int(binary.BigEndian.Uint16(b[2:]))
		if plen < 4 || plen > len(b) {
			return dst, malformed("payload %d: length %d of %d", next, plen, len(b))
		}
		p := Payload{Type: next, Critical: b[1]&0x80 != 0, Body: b[4:plen:plen]}
		dst = append(dst, p)
		if next == PayloadSK {
			// The SK payload is last; its next field names the first
			// inner payload (RFC 7296 §3.14).
			if plen != len(b) {
				return dst, malformed("SK payload not last")
			}
			return dst, nil
		}
		next = b[0]
		b = b[plen:]
	}
	if len(b) != 0 {
		return dst, malformed("%d bytes after the last payload", len(b))
	}
	return dst, nil
}

// AppendPayloads appends the chain ps (each with a generic header naming the
// next one; the last names next).
func AppendPayloads(b []byte, ps []Payload, last uint8) []byte {
	for i, p := range ps {
		next := last
		if i+1 < len(ps) {
			next = ps[i+1].Type
		}
		var crit byte
		if p.Critical {
			crit = 0x80
		}
		b = append(b, next, crit)
		b = binary.BigEndian.AppendUint16(b, uint16(4+len(p.Body)))
		b = append(b, p.Body...)
	}
	return b
}

// Encode builds a plaintext message: the header (NextPayload and Length
// filled in) and the payloads.
func Encode(h Header, ps []Payload) []byte {
	h.NextPayload = PayloadNone
	if len(ps) > 0 {
		h.NextPayload = ps[0].Type
	}
	b := AppendHeader(make([]byte, 0, 512), h)
	b = AppendPayloads(b, ps, PayloadNone)
	binary.BigEndian.PutUint32(b[24:], uint32(len(b)))
	return b
}

// Find returns the first payload of type t.
func Find(ps []Payload, t uint8) (Payload, bool) {
	for _, p := range ps {
		if p.Type == t {
			return p, true
		}
	}
	return Payload{}, false
}

// Transform is one transform of a proposal.
type Transform struct {
	Type   uint8
	ID     uint16
	KeyLen uint16 // bits; 0 when the attribute is absent
}

// Proposal is one proposal of an SA payload.
type Proposal struct {
	Num        uint8
	Protocol   uint8
	SPI        []byte
	Transforms []Transform
}

// ParseSA parses an SA payload body.
func ParseSA(b []byte) ([]Proposal, error) {
	var out []Proposal
	for len(b) > 0 {
		if len(out) >= MaxProposals {
			return nil, malformed("more than %d proposals", MaxProposals)
		}
		if len(b) < 8 {
			return nil, malformed("proposal: %d bytes", len(b))
		}
		last := b[0]
		plen := int(binary.BigEndian.Uint16(b[2:]))
		if plen < 8 || plen > len(b) || (last != 0 && last != 2) {
			return nil, malformed("proposal length %d of %d, last %d", plen, len(b), last)
		}
		p := Proposal{Num: b[4], Protocol: b[5]}
		spiSize, nt := int(b[6]), int(b[7])
		body := b[8:plen]
		if spiSize > len(body) || nt > MaxTransforms {
			return nil, malformed("proposal SPI size %d, %d transforms", spiSize, nt)
		}
		p.SPI = body[:spiSize]
		body = body[spiSize:]
		for i := 0; i < nt; i++ {
			if len(body) < 8 {
				return nil, malformed("transform: %d bytes", len(body))
			}
			tlen := int(binary.BigEndian.Uint16(body[2:]))
			if tlen < 8 || tlen > len(body) {
				return nil, malformed("transform length %d of %d", tlen, len(body))
			}
			t := Transform{Type: body[4], ID: binary.BigEndian.Uint16(body[6:])}
			attrs := body[8:tlen]
			for len(attrs) >= 4 {
				at := binary.BigEndian.Uint16(attrs)
				if at&0x8000 != 0 { // TV
					if at&0x7fff == attrKeyLength {
						t.KeyLen = binary.BigEndian.Uint16(attrs[2:])
					}
					attrs = attrs[4:]
					continue
				}
				alen := int(binary.BigEndian.Uint16(attrs[2:]))
				if 4+alen > len(attrs) {
					return nil, malformed("attribute length %d", alen)
				}
				attrs = attrs[4+alen:]
			}
			if len(attrs) != 0 {
				return nil, malformed("transform attributes: %d stray bytes", len(attrs))
			}
			p.Transforms = append(p.Transforms, t)
			body = body[tlen:]
		}
		if len(body) != 0 {
			return nil, malformed("proposal: %d bytes after the transforms", len(body))
		}
		out = append(out, p)
		b = b[plen:]
		if last == 0 {
			break
		}
	}
	if len(b) != 0 {
		return nil, malformed("SA: %d bytes after the last proposal", len(b))
	}
	if len(out) == 0 {
		return nil, malformed("SA without proposals")
	}
	return out, nil
}

// AppendSA appends an SA payload body of ps.
func AppendSA(b []byte, ps []Proposal) []byte {
	for i, p := range ps {
		start := len(b)
		last := byte(2)
		if i == len(ps)-1 {
			last = 0
		}
		b = append(b, last, 0, 0, 0, p.Num, p.Protocol, byte(len(p.SPI)), byte(len(p.Transforms)))
		b = append(b, p.SPI...)
		for j, t := range p.Transforms {
			tl := byte(3)
			if j == len(p.Transforms)-1 {
				tl = 0
			}
			n := 8
			if t.KeyLen != 0 {
				n = 12
			}
			b = append(b, tl, 0)
			b = binary.BigEndian.AppendUint16(b, uint16(n))
			b = append(b, t.Type, 0)
			b = binary.BigEndian.AppendUint16(b, t.ID)
			if t.KeyLen != 0 {
				b = binary.BigEndian.AppendUint16(b, 0x8000|attrKeyLength)
				b = binary.BigEndian.AppendUint16(b, t.KeyLen)
			}
		}
		binary.BigEndian.PutUint16(b[start+2:], uint16(len(b)-start))
	}
	return b
}

// Notify is a parsed Notify payload.
type Notify struct {
	Protocol uint8
	SPI      []byte
	Type     uint16
	Data     []byte
}

// ParseNotify parses a Notify payload body.
func ParseNotify(b []byte) (Notify, error) {
	if len(b) < 4 || 4+int(b[1]) > len(b) {
		return Notify{}, malformed("notify of %d bytes", len(b))
	}
	n := Notify{Protocol: b[0], Type: binary.BigEndian.Uint16(b[2:])}
	n.SPI = b[4 : 4+int(b[1])]
	n.Data = b[4+int(b[1]):]
	return n, nil
}

// NotifyBody returns a Notify payload body.
func NotifyBody(protocol uint8, spi []byte, typ uint16, data []byte) []byte {
	b := []byte{protocol, byte(len(spi)), byte(typ >> 8), byte(typ)}
	b = append(b, spi...)
	return append(b, data...)
}

// Notifies returns the notifies among ps that parse.
func Notifies(ps []Payload) []Notify {
	var out []Notify
	for _, p := range ps {
		if p.Type != PayloadNotify {
			continue
		}
		if n, err := ParseNotify(p.Body); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// ErrorNotify returns the first notify of an error type (< 16384) in ps.
func ErrorNotify(ps []Payload) (uint16, bool) {
	for _, n := range Notifies(ps) {
		if n.Type < 16384 {
			return n.Type, true
		}
	}
	return 0, false
}

// KEBody returns a KE payload body.
func KEBody(group uint16, data []byte) []byte {
	b := []byte{byte(group >> 8), byte(group), 0, 0}
	return append(b, data...)
}

// ParseKE parses a KE payload body.
func ParseKE(b []byte) (group uint16, data []byte, err error) {
	if len(b) < 4 {
		return 0, nil, malformed("KE of %d bytes", len(b))
	}
	return binary.BigEndian.Uint16(b), b[4:], nil
}

// Selector is one IPv4 or IPv6 traffic selector (any protocol, any port
// when Proto is 0 and the ports span 0-65535).
type Selector struct {
	Proto      uint8
	StartPort  uint16
	EndPort    uint16
	Start, End netip.Addr
}

// SelectorFromPrefix is the selector of every address in p, any protocol
// and port.
func SelectorFromPrefix(p netip.Prefix) Selector {
	p = p.Masked()
	start := p.Addr()
	end := start.As16()
	bits := p.Bits()
	off := 0
	if start.Is4() {
		off = 12
	}
	for i := off*8 + bits; i < 128; i++ {
		end[i/8] |= 0x80 >> (i % 8)
	}
	e := netip.AddrFrom16(end)
	if start.Is4() {
		e = e.Unmap()
	}
	return Selector{EndPort: 0xffff, Start: start, End: e}
}

// Prefixes returns the smallest list of prefixes covering s's address range.
func (s Selector) Prefixes() []netip.Prefix {
	var out []netip.Prefix
	a := s.Start
	for a.IsValid() && a.Compare(s.End) <= 0 && len(out) < 64 {
		bits := a.BitLen()
		// Grow the prefix while it starts at a and stays within End.
		best := netip.PrefixFrom(a, bits)
		for b := bits - 1; b >= 0; b-- {
			p := netip.PrefixFrom(a, b)
			if p.Masked().Addr() != a || lastAddr(p).Compare(s.End) > 0 {
				break
			}
			best = p
		}
		out = append(out, best)
		last := lastAddr(best)
		if last == s.End {
			break
		}
		a = last.Next()
	}
	return out
}

func lastAddr(p netip.Prefix) netip.Addr { return SelectorFromPrefix(p).End }

// AppendTS appends a TS payload body.
func AppendTS(b []byte, sels []Selector) []byte {
	b = append(b, byte(len(sels)), 0, 0, 0)
	for _, s := range sels {
		typ, n := TSIPv4Range, 16
		if s.Start.Is6() {
			typ, n = TSIPv6Range, 40
		}
		b = append(b, typ, s.Proto, 0, byte(n))
		b = binary.BigEndian.AppendUint16(b, s.StartPort)
		b = binary.BigEndian.AppendUint16(b, s.EndPort)
		b = append(b, s.Start.AsSlice()...)
		b = append(b, s.End.AsSlice()...)
	}
	return b
}

// ParseTS parses a TS payload body.
func ParseTS(b []byte) ([]Selector, error) {
	if len(b) < 4 {
		return nil, malformed("TS of %d bytes", len(b))
	}
	n := int(b[0])
	if n == 0 || n > MaxSelectors {
		return nil, malformed("%d selectors", n)
	}
	b = b[4:]
	out := make([]Selector, 0, n)
	for i := 0; i < n; i++ {
		if len(b) < 8 {
			return nil, malformed("selector: %d bytes", len(b))
		}
		typ := b[0]
		slen := int(binary.BigEndian.Uint16(b[2:]))
		alen := 4
		if typ == TSIPv6Range {
			alen = 16
		} else if typ != TSIPv4Range {
			return nil, malformed("selector type %d", typ)
		}
		if slen != 8+2*alen || slen > len(b) {
			return nil, malformed("selector length %d", slen)
		}
		s := Selector{Proto: b[1], StartPort: binary.BigEndian.Uint16(b[4:]), EndPort: binary.BigEndian.Uint16(b[6:])}
		s.Start, _ = netip.AddrFromSlice(b[8 : 8+alen])
		s.End, _ = netip.AddrFromSlice(b[8+alen : 8+2*alen])
		out = append(out, s)
		b = b[slen:]
	}
	if len(b) != 0 {
		return nil, malformed("TS: %d stray bytes", len(b))
	}
	return out, nil
}

// IDBody returns an ID payload body.
func IDBody(typ uint8, data []byte) []byte {
	return append([]byte{typ, 0, 0, 0}, data...)
}

// AUTHBody returns an AUTH payload body.
func AUTHBody(method uint8, data []byte) []byte {
	return append([]byte{method, 0, 0, 0}, data...)
}

// ParseAUTH parses an AUTH payload body.
func ParseAUTH(b []byte) (method uint8, data []byte, err error) {
	if len(b) < 4 {
		return 0, nil, malformed("AUTH of %d bytes", len(b))
	}
	return b[0], b[4:], nil
}

// DeleteBody returns a Delete payload body for SPIs of protocol (none for
// IKE).
func DeleteBody(protocol uint8, spis ...uint32) []byte {
	size := byte(0)
	if protocol != ProtoIKE {
		size = 4
	}
	b := []byte{protocol, size, byte(len(spis) >> 8), byte(len(spis))}
	for _, s := range spis {
		b = binary.BigEndian.AppendUint32(b, s)
	}
	return b
}

// Delete is a parsed Delete payload.
type Delete struct {
	Protocol uint8
	SPIs     []uint32 // ESP/AH SPIs
}

// ParseDelete parses a Delete payload body.
func ParseDelete(b []byte) (Delete, error) {
	if len(b) < 4 {
		return Delete{}, malformed("delete of %d bytes", len(b))
	}
	d := Delete{Protocol: b[0]}
	size, n := int(b[1]), int(binary.BigEndian.Uint16(b[2:]))
	if d.Protocol == ProtoIKE {
		return d, nil
	}
	if size != 4 || len(b) != 4+4*n {
		return Delete{}, malformed("delete: SPI size %d, %d SPIs in %d bytes", size, n, len(b))
	}
	for i := 0; i < n; i++ {
		d.SPIs = append(d.SPIs, binary.BigEndian.Uint32(b[4+4*i:]))
	}
	return d, nil
}

// CPAttr is one configuration attribute.
type CPAttr struct {
	Type  uint16
	Value []byte
}

// AppendCP appends a configuration payload body.
func AppendCP(b []byte, cfgType uint8, attrs []CPAttr) []byte {
	b = append(b, cfgType, 0, 0, 0)
	for _, a := range attrs {
		b = binary.BigEndian.AppendUint16(b, a.Type&0x7fff)
		b = binary.BigEndian.AppendUint16(b, uint16(len(a.Value)))
		b = append(b, a.Value...)
	}
	return b
}

// ParseCP parses a configuration payload body.
func ParseCP(b []byte) (cfgType uint8, attrs []CPAttr, err error) {
	if len(b) < 4 {
		return 0, nil, malformed("CP of %d bytes", len(b))
	}
	cfgType = b[0]
	b = b[4:]
	for len(b) > 0 {
		if len(b) < 4 || len(attrs) >= MaxPayloads {
			return 0, nil, malformed("CP attribute: %d bytes", len(b))
		}
		t := binary.BigEndian.Uint16(b) & 0x7fff
		l := int(binary.BigEndian.Uint16(b[2:]))
		if 4+l > len(b) {
			return 0, nil, malformed("CP attribute length %d", l)
		}
		attrs = append(attrs, CPAttr{Type: t, Value: b[4 : 4+l]})
		b = b[4+l:]
	}
	return cfgType, attrs, nil
}
