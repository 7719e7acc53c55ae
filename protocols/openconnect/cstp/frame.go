// Package cstp is the wire format of the AnyConnect SSL VPN data channels
// as ocserv and openconnect speak them: CSTP frames on the TLS stream, the
// one-byte-typed DTLS payloads, the CONNECT request and its reply headers,
// and the XML of the aggregate authentication exchange. It is pure: no
// sockets, no goroutines, and the framing path does not allocate.
package cstp

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Type is a packet type, shared by CSTP frames and DTLS payloads.
type Type uint8

// Packet types (the same numbers on CSTP and DTLS).
const (
	Data       Type = 0x00 // an IP packet
	DPDReq     Type = 0x03 // dead peer detection request; answered with DPDResp
	DPDResp    Type = 0x04 // dead peer detection response
	Disconnect Type = 0x05 // the peer ends the session (payload: a reason byte and text)
	Keepalive  Type = 0x07 // keeps middleboxes' state; no answer
	Compressed Type = 0x08 // a compressed IP packet (never negotiated here)
	Terminate  Type = 0x09 // the server ends the session
)

func (t Type) String() string {
	switch t {
	case Data:
		return "data"
	case DPDReq:
		return "dpd-req"
	case DPDResp:
		return "dpd-resp"
	case Disconnect:
		return "disconnect"
	case Keepalive:
		return "keepalive"
	case Compressed:
		return "compressed"
	case Terminate:
		return "terminate"
	}
	return fmt.Sprintf("type-0x%02x", uint8(t))
}

// HeaderBytes (8) is the size of a CSTP frame header:
// 'S' 'T' 'F' 0x01, the payload length (2 bytes, big endian), the type, 0.
const HeaderBytes = 8

// MaxPayload (65 535 bytes) is the largest payload a CSTP frame's 16-bit
// length field describes.
const MaxPayload = 0xffff

// DTLSHeaderBytes (1) is the size of a DTLS payload's header: the type.
const DTLSHeaderBytes = 1

// Errors of the frame parser. ErrShort says more bytes are needed; the
// others mean the stream is not CSTP and cannot be resynchronised.
var (
	ErrShort     = errors.New("cstp: incomplete frame")
	ErrBadMagic  = errors.New("cstp: frame does not start with STF\\x01")
	ErrBadHeader = errors.New("cstp: frame header's reserved byte is not zero")
	ErrTooLarge  = errors.New("cstp: frame payload larger than allowed")
	ErrEmpty     = errors.New("cstp: empty DTLS payload")
)

// PutHeader writes a frame header for a payload of n bytes into h[:8].
func PutHeader(h []byte, t Type, n int) {
	_ = h[HeaderBytes-1]
	h[0], h[1], h[2], h[3] = 'S', 'T', 'F', 0x01
	binary.BigEndian.PutUint16(h[4:6], uint16(n))
	h[6], h[7] = byte(t), 0
}

// AppendFrame appends one frame of type t carrying payload to dst and
// returns the extended slice. It borrows payload; len(payload) must be at
// most MaxPayload.
func AppendFrame(dst []byte, t Type, payload []byte) []byte {
	var h [HeaderBytes]byte
	PutHeader(h[:], t, len(payload))
	dst = append(dst, h[:]...)
	return append(dst, payload...)
}

// ParseFrame reads the frame at the front of b. It returns the frame's type,
// its payload (a sub-slice of b, borrowed) and the bytes the frame takes.
// A payload longer than max is ErrTooLarge. When b holds only part of a
// frame it returns ErrShort and n = 0; the other errors are fatal for the
// stream (there is no way to find the next frame).
func ParseFrame(b []byte, max int) (t Type, payload []byte, n int, err error) {
	if len(b) < HeaderBytes {
		// Check what is there, so garbage fails early rather than waiting
		// for a header that never comes.
		if !magicPrefix(b) {
			return 0, nil, 0, ErrBadMagic
		}
		return 0, nil, 0, ErrShort
	}
	if b[0] != 'S' || b[1] != 'T' || b[2] != 'F' || b[3] != 0x01 {
		return 0, nil, 0, ErrBadMagic
	}
	if b[7] != 0 {
		return 0, nil, 0, ErrBadHeader
	}
	size := int(binary.BigEndian.Uint16(b[4:6]))
	if size > max {
		return 0, nil, 0, ErrTooLarge
	}
	if len(b) < HeaderBytes+size {
		return 0, nil, 0, ErrShort
	}
	return Type(b[6]), b[HeaderBytes : HeaderBytes+size], HeaderBytes + size, nil
}

func magicPrefix(b []byte) bool {
	const magic = "STF\x01"
	for i := 0; i < len(b) && i < len(magic); i++ {
		if b[i] != magic[i] {
			return false
		}
	}
	return true
}

// ParseDTLS splits a decrypted DTLS record into its type and payload
// (borrowed).
func ParseDTLS(b []byte) (Type, []byte, error) {
	if len(b) < DTLSHeaderBytes {
		return 0, nil, ErrEmpty
	}
	return Type(b[0]), b[DTLSHeaderBytes:], nil
}
