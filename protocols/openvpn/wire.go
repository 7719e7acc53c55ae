package openvpn

// The wire format of OpenVPN's packets over UDP (doc/doxygen, "network
// protocol", and ssl_pkt.h):
//
//	byte 0: opcode << 3 | key id (3 bits)
//
// Control packets, with tls-crypt (tlscrypt.go wraps and unwraps):
//
//	opcode | session id (8) | packet id (4) | net time (4) | HMAC tag (32) |
//	encrypted: ack count (1) | ack ids (4 each) | remote session id (8, when
//	           acks) | message id (4, not in P_ACK_V1) | payload
//
// Data packets, P_DATA_V2 with an AEAD cipher:
//
//	opcode | peer id (3) | packet id (4) | tag (16) | ciphertext
//
// with the first 8 bytes as additional data and the nonce packet id ||
// implicit IV (8 bytes of key material).

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Opcodes.
const (
	opSoftResetV1       = 3
	opControlV1         = 4
	opAckV1             = 5
	opDataV1            = 6
	opHardResetClientV2 = 7
	opHardResetServerV2 = 8
	opDataV2            = 9
	opHardResetClientV3 = 10
	opControlWKCV1      = 11

	opShift   = 3
	keyIDMask = 7
)

// sessionID identifies one end of a control session.
type sessionID [8]byte

// controlMsg is a decoded control packet (tls-crypt already removed).
// Acks and Payload borrow the buffer it was parsed from.
type controlMsg struct {
	Op        byte
	KeyID     byte
	SID       sessionID // the sender's session id
	NAcks     int
	Acks      [maxAcksParsed]uint32
	RemoteSID sessionID // the session id the acks are for (when NAcks > 0)
	MsgID     uint32    // not for P_ACK_V1
	Payload   []byte
}

// maxAcksParsed (255 ids) is the most acks a packet can hold (one length
// byte); all are read, so a peer cannot make us misparse by sending many.
const maxAcksParsed = 255

var errShort = errors.New("control packet truncated")

// isControl reports whether op is a control opcode this implementation
// speaks.
func isControl(op byte) bool {
	switch op {
	case opSoftResetV1, opControlV1, opAckV1, opHardResetClientV2, opHardResetServerV2, opHardResetClientV3:
		return true
	}
	return false
}

// parseControlBody decodes the part of a control packet tls-crypt
// encrypts: acks, remote session id, message id and payload. m.Op must be
// set. It borrows b.
func parseControlBody(m *controlMsg, b []byte) error {
	if len(b) < 1 {
		return errShort
	}
	n := int(b[0])
	b = b[1:]
	if len(b) < 4*n {
		return errShort
	}
	for i := 0; i < n; i++ {
		m.Acks[i] = binary.BigEndian.Uint32(b[4*i:])
	}
	m.NAcks = n
	b = b[4*n:]
	if n > 0 {
		if len(b) < 8 {
			return errShort
		}
		copy(m.RemoteSID[:], b)
		b = b[8:]
	}
	if m.Op == opAckV1 {
		if n == 0 {
			return errors.New("P_ACK_V1 without acks")
		}
		m.Payload = b[:0]
		return nil
	}
	if len(b) < 4 {
		return errShort
	}
	m.MsgID = binary.BigEndian.Uint32(b)
	m.Payload = b[4:]
	return nil
}

// appendControlBody appends the encrypted part of a control packet to dst.
func appendControlBody(dst []byte, acks []uint32, remote sessionID, op byte, msgID uint32, payload []byte) []byte {
	dst = append(dst, byte(len(acks)))
	for _, a := range acks {
		dst = binary.BigEndian.AppendUint32(dst, a)
	}
	if len(acks) > 0 {
		dst = append(dst, remote[:]...)
	}
	if op != opAckV1 {
		dst = binary.BigEndian.AppendUint32(dst, msgID)
		dst = append(dst, payload...)
	}
	return dst
}

// parseControl decodes a whole control packet: unwrap with w, then the
// body. It borrows pkt (and decrypts it in place).
func parseControl(w *tlsCrypt, pkt []byte, m *controlMsg) error {
	if len(pkt) < 1 {
		return errShort
	}
	m.Op, m.KeyID = pkt[0]>>opShift, pkt[0]&keyIDMask
	if !isControl(m.Op) {
		return fmt.Errorf("opcode %d is not a control opcode", m.Op)
	}
	body, err := w.unwrap(pkt, &m.SID)
	if err != nil {
		return err
	}
	return parseControlBody(m, body)
}
