// Package esp seals and opens ESP packets (RFC 4303) in tunnel mode with
// an AEAD: AES-GCM-16 (RFC 4106) or ChaCha20-Poly1305 (RFC 7634), 32- or
// 64-bit (ESN) sequence numbers and an anti-replay window. Packets are
// sealed and opened in place in pool buffers: the 16 bytes in front of the
// inner packet (packet.Headroom) hold the ESP header and IV, and the
// buffer's spare capacity the trailer and tag. Nothing allocates.
//
// Seal flow, per packet (the caller loops over a batch):
//
//  1. The inner packet sits at b[HeaderLen:]; its IP version picks the next
//     header (4 → IPv4, 41 → IPv6).
//  2. The sequence number advances (refused when a 32-bit counter would
//     wrap: the SA must be rekeyed); it is also the explicit IV.
//  3. Padding 1, 2, 3… aligns payload+trailer to 4 bytes; pad length and
//     next header follow.
//  4. The AEAD seals the payload in place with AAD = SPI | [seq hi] | seq lo
//     and appends the 16-byte tag; b[:HeaderLen] gets SPI, seq and IV.
//
// Open flow, per datagram (the caller holds the SA's lock for a run of
// datagrams of one SA — once per batch in steady state):
//
//  1. Length and SPI checked by the caller (it looks the SA up by SPI).
//  2. The sequence number (high half inferred with ESN, RFC 4303 App. A) is
//     checked against the replay window before any decryption.
//  3. The AEAD opens in place; on success the window moves.
//  4. The trailer is checked and stripped: the inner packet is
//     b[HeaderLen:HeaderLen+n].
package esp

import (
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
)

const (
	// HeaderLen (16 bytes) is SPI, sequence number and the explicit IV.
	HeaderLen = 16
	// ICVLen (16 bytes) is the AEAD tag.
	ICVLen = 16
	// Overhead is the most a sealed packet grows beyond its inner packet:
	// header, up to 3 bytes of padding, pad length, next header, tag.
	Overhead = HeaderLen + 3 + 2 + ICVLen
	// MinLen is the shortest datagram that can open: header, 4 bytes of
	// (padded) payload and trailer, tag.
	MinLen = HeaderLen + 4 + ICVLen
	// ReplayWindow (1024 packets) is how far behind the highest sequence
	// number seen a packet may arrive and still be accepted: room for the
	// reordering of a few batches.
	ReplayWindow = 1024

	nextIPv4  = 4
	nextIPv6  = 41
	nextDummy = 59
)

// Errors of Seal and Open; each is a drop reason of the caller.
var (
	ErrTooShort = errors.New("esp: too short")
	ErrNoRoom   = errors.New("esp: no room for the trailer")
	ErrSeqWrap  = errors.New("esp: sequence number exhausted")
	ErrReplay   = errors.New("esp: replayed or too old")
	ErrAuth     = errors.New("esp: authentication failed")
	ErrTrailer  = errors.New("esp: bad trailer")
	ErrDummy    = errors.New("esp: dummy packet")
	ErrNotIP    = errors.New("esp: inner packet is not IP")
)

// Outbound is the sending half of a child SA. One goroutine seals with it.
type Outbound struct {
	SPI   uint32
	ESN   bool
	aead  cipher.AEAD
	salt  [4]byte
	seq   uint64        // the last sequence number used
	pub   atomic.Uint64 // seq as of the last Publish, for other goroutines
	bytes atomic.Uint64 // inner bytes sealed, added by Publish
	nonce [12]byte
	aad   [12]byte
}

// NewOutbound returns the sending half of an SA with the AEAD and salt.
func NewOutbound(spi uint32, aead cipher.AEAD, salt []byte, esn bool) *Outbound {
	o := &Outbound{SPI: spi, ESN: esn, aead: aead}
	copy(o.salt[:], salt)
	copy(o.nonce[:4], salt)
	return o
}

// Publish makes the sequence number visible to Seq and adds the batch's
// inner bytes to Bytes; the sealing goroutine calls it once per batch.
func (o *Outbound) Publish(bytes int) {
	o.pub.Store(o.seq)
	o.bytes.Add(uint64(bytes))
}

// Bytes is the inner bytes sealed as of the last Publish.
func (o *Outbound) Bytes() uint64 { return o.bytes.Load() }

// Seq is the last sequence number published. Any goroutine may call it.
func (o *Outbound) Seq() uint64 { return o.pub.Load() }

// Seal seals the inner packet at b[HeaderLen:] in place and returns the ESP
// packet, b[:n] (the same memory). It borrows b, whose capacity must have
// room for the trailer (Overhead - HeaderLen bytes beyond len(b)).
func (o *Outbound) Seal(b []byte) ([]byte, error) {
	inner := len(b) - HeaderLen
	if inner < 1 {
		return nil, ErrTooShort
	}
	var nh byte
	switch b[HeaderLen] >> 4 {
	case 4:
		nh = nextIPv4
	case 6:
		nh = nextIPv6
	default:
		return nil, ErrNotIP
	}
	pad := (4 - (inner+2)%4) % 4
	plen := inner + pad + 2
	if HeaderLen+plen+ICVLen > cap(b) {
		return nil, ErrNoRoom
	}
	if !o.ESN && o.seq >= 0xffffffff || o.seq == ^uint64(0) {
		return nil, ErrSeqWrap
	}
	o.seq++
	b = b[:HeaderLen+plen]
	for i := 0; i < pad; i++ {
		b[HeaderLen+inner+i] = byte(i + 1)
	}
	b[HeaderLen+inner+pad] = byte(pad)
	b[HeaderLen+inner+pad+1] = nh
	binary.BigEndian.PutUint32(b[0:], o.SPI)
	binary.BigEndian.PutUint32(b[4:], uint32(o.seq))
	binary.BigEndian.PutUint64(b[8:], o.seq)
	binary.BigEndian.PutUint64(o.nonce[4:], o.seq)
	aad := o.aad[:8]
	binary.BigEndian.PutUint32(aad[0:], o.SPI)
	if o.ESN {
		aad = o.aad[:12]
		binary.BigEndian.PutUint32(aad[4:], uint32(o.seq>>32))
		binary.BigEndian.PutUint32(aad[8:], uint32(o.seq))
	} else {
		binary.BigEndian.PutUint32(aad[4:], uint32(o.seq))
	}
	pt := b[HeaderLen : HeaderLen+plen]
	o.aead.Seal(pt[:0], o.nonce[:], pt, aad)
	return b[:HeaderLen+plen+ICVLen], nil
}

// Inbound is the receiving half of a child SA. Mu guards the replay window:
// a reader locks it once for a run of datagrams of this SA.
type Inbound struct {
	SPI  uint32
	ESN  bool
	Mu   sync.Mutex
	aead cipher.AEAD
	salt [4]byte

	// Counted by the readers once per run of datagrams (Count).
	packets, bytes atomic.Uint64

	// Guarded by Mu.
	top    uint64                    // highest sequence number accepted
	bitmap [ReplayWindow / 64]uint64 // bit (seq mod ReplayWindow) set: seen
	nonce  [12]byte
	aad    [12]byte
}

// NewInbound returns the receiving half of an SA.
func NewInbound(spi uint32, aead cipher.AEAD, salt []byte, esn bool) *Inbound {
	in := &Inbound{SPI: spi, ESN: esn, aead: aead}
	copy(in.salt[:], salt)
	copy(in.nonce[:4], salt)
	return in
}

// Count adds a run of opened packets (inner bytes) to the SA's counters.
func (in *Inbound) Count(packets, bytes int) {
	in.packets.Add(uint64(packets))
	in.bytes.Add(uint64(bytes))
}

// Packets and Bytes are the inner packets and bytes opened so far.
func (in *Inbound) Packets() uint64 { return in.packets.Load() }
func (in *Inbound) Bytes() uint64   { return in.bytes.Load() }

// SPIOf returns the SPI of an ESP datagram (0 for a short one or a
// non-ESP marker).
func SPIOf(b []byte) uint32 {
	if len(b) < 4 {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}

// Open opens the ESP datagram b in place; the caller holds in.Mu. It
// returns the inner packet's length: the packet is b[HeaderLen:HeaderLen+n].
// b is borrowed.
func (in *Inbound) Open(b []byte) (int, error) {
	if len(b) < MinLen {
		return 0, ErrTooShort
	}
	lo := binary.BigEndian.Uint32(b[4:])
	seq := uint64(lo)
	if in.ESN {
		seq = in.inferSeq(lo)
	}
	if !in.fresh(seq) {
		return 0, ErrReplay
	}
	copy(in.nonce[4:], b[8:16])
	aad := in.aad[:8]
	copy(aad, b[:4])
	if in.ESN {
		aad = in.aad[:12]
		binary.BigEndian.PutUint32(aad[4:], uint32(seq>>32))
		binary.BigEndian.PutUint32(aad[8:], lo)
	} else {
		copy(aad[4:], b[4:8])
	}
	ct := b[HeaderLen:]
	pt, err := in.aead.Open(ct[:0], in.nonce[:], ct, aad)
	if err != nil {
		return 0, ErrAuth
	}
	in.accept(seq)
	if len(pt) < 2 {
		return 0, ErrTrailer
	}
	nh := pt[len(pt)-1]
	pad := int(pt[len(pt)-2])
	n := len(pt) - 2 - pad
	if n < 0 {
		return 0, ErrTrailer
	}
	switch nh {
	case nextIPv4, nextIPv6:
	case nextDummy:
		return 0, ErrDummy
	default:
		return 0, ErrNotIP
	}
	if n == 0 {
		return 0, ErrNotIP
	}
	return n, nil
}

// inferSeq reconstructs the 64-bit sequence number from its low half
// (RFC 4303 Appendix A2.2).
func (in *Inbound) inferSeq(lo uint32) uint64 {
	th, tl := uint32(in.top>>32), uint32(in.top)
	const w = ReplayWindow
	if tl >= w-1 {
		if lo >= tl-w+1 {
			return uint64(th)<<32 | uint64(lo)
		}
		return uint64(th+1)<<32 | uint64(lo)
	}
	if lo >= tl-w+1 && th > 0 { // tl-w+1 wraps around below zero
		return uint64(th-1)<<32 | uint64(lo)
	}
	return uint64(th)<<32 | uint64(lo)
}

// fresh reports whether seq is new and inside the window.
func (in *Inbound) fresh(seq uint64) bool {
	if seq == 0 {
		return false
	}
	if seq > in.top {
		return true
	}
	if in.top-seq >= ReplayWindow {
		return false
	}
	i := seq % ReplayWindow
	return in.bitmap[i/64]&(1<<(i%64)) == 0
}

// accept records seq (already authenticated) in the window.
func (in *Inbound) accept(seq uint64) {
	if seq > in.top {
		diff := seq - in.top
		if diff >= ReplayWindow {
			clear(in.bitmap[:])
		} else {
			for s := in.top + 1; s < seq; s++ {
				i := s % ReplayWindow
				in.bitmap[i/64] &^= 1 << (i % 64)
			}
		}
		in.top = seq
	}
	i := seq % ReplayWindow
	in.bitmap[i/64] |= 1 << (i % 64)
}
