package remote

// The batch codec: a batch crosses a process boundary as a msgpack array of
// bin values, one per packet, in an envelope's payload (docs/ARCHITECTURE.md §7).
//
//  1. Encoder.Encode appends packets of a batch (borrowed) to a payload
//     buffer, as many as fit in MaxEnvelopeBytes, and says where it
//     stopped; the sender sends one envelope per call.
//  2. Decoder.Decode reads a payload into pooled buffers and returns a new
//     batch (ownership passes to the caller). Every length is checked
//     before a byte is copied: a malformed or oversized payload is an
//     error, never a panic, and takes no buffers.

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/vmihailenco/msgpack/v5"

	"switchyard/packet"
)

// Errors of Decode. The receiver counts each under its own reason.
var (
	ErrMalformed = errors.New("malformed batch payload")
	ErrOversized = errors.New("oversized batch payload")
	ErrNoBuffers = errors.New("buffer pool exhausted")
)

// appendWriter is the io.Writer (and io.ByteWriter, so msgpack does not wrap
// it) that appends to a reusable buffer.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }
func (w *appendWriter) WriteByte(c byte) error      { w.b = append(w.b, c); return nil }

// Encoder encodes batches. It is not safe for concurrent use; each sender
// has its own.
type Encoder struct {
	w   appendWriter
	enc *msgpack.Encoder
}

// NewEncoder returns an Encoder.
func NewEncoder() *Encoder {
	e := &Encoder{}
	e.enc = msgpack.NewEncoder(&e.w)
	return e
}

// binOverhead is msgpack's header size for a bin of n bytes.
func binOverhead(n int) int {
	switch {
	case n < 1<<8:
		return 2
	case n < 1<<16:
		return 3
	}
	return 5
}

// arrayHeader is the worst case of an array header (array32).
const arrayHeader = 5

// Encode borrows b and appends a payload of packets b[from:] to dst (the
// sender leaves room for the envelope's header in front) until the payload
// would exceed MaxEnvelopeBytes; it returns dst with the payload and the
// index of the first packet it did not take (b.Len() when it took them all).
// It always takes at least one packet: a single packet (≤ 64 KiB) always
// fits.
func (e *Encoder) Encode(dst []byte, b *packet.Batch, from int) ([]byte, int) {
	size, to := arrayHeader, from
	for to < b.Len() {
		n := len(b.Bufs[to]) - packet.Headroom
		if to > from && size+binOverhead(n)+n > MaxEnvelopeBytes {
			break
		}
		size += binOverhead(n) + n
		to++
	}
	e.w.b = dst
	// Writes to appendWriter cannot fail.
	_ = e.enc.EncodeArrayLen(to - from)
	for i := from; i < to; i++ {
		_ = e.enc.EncodeBytes(b.Packet(i))
	}
	out := e.w.b
	e.w.b = nil
	return out, to
}

// Decoder decodes batches. It is not safe for concurrent use.
type Decoder struct {
	r   bytes.Reader
	dec *msgpack.Decoder
}

// NewDecoder returns a Decoder.
func NewDecoder() *Decoder {
	d := &Decoder{}
	d.dec = msgpack.NewDecoder(&d.r) // *bytes.Reader is a ByteScanner: msgpack reads it directly, no bufio
	return d
}

// Decode borrows payload and returns a batch of its packets in buffers from
// pool; the caller takes ownership. maxPackets (≤ packet.MaxBatch) bounds the
// array. A malformed payload returns ErrMalformed, one larger than
// MaxEnvelopeBytes or with more than maxPackets packets ErrOversized, and an
// empty pool ErrNoBuffers; none of them keeps a buffer. On error, n is what
// the caller counts as dropped: the packets the payload announced when that
// count was within maxPackets, else 1.
func (d *Decoder) Decode(payload []byte, pool *packet.Pool, maxPackets int) (b *packet.Batch, n int, err error) {
	n = 1
	if len(payload) > MaxEnvelopeBytes {
		return nil, n, fmt.Errorf("%w: %d bytes, limit %d", ErrOversized, len(payload), MaxEnvelopeBytes)
	}
	d.r.Reset(payload)
	d.dec.ResetReader(&d.r)
	count, err := d.dec.DecodeArrayLen()
	switch {
	case err != nil || count < 0:
		return nil, n, fmt.Errorf("%w: no packet array", ErrMalformed)
	case count > maxPackets:
		return nil, n, fmt.Errorf("%w: %d packets, limit %d", ErrOversized, count, maxPackets)
	case count == 0:
		return nil, n, fmt.Errorf("%w: empty batch", ErrMalformed)
	}
	n = count
	var bufs [packet.MaxBatch][]byte
	if !pool.GetBufs(bufs[:n]) {
		return nil, n, ErrNoBuffers
	}
	b = pool.GetBatch()
	for i := 0; i < n; i++ {
		l, err := d.dec.DecodeBytesLen()
		if err != nil || l <= 0 || l > packet.MaxPacketBytes || l > d.r.Len() {
			pool.PutBufs(bufs[i:n])
			b.Release()
			return nil, n, fmt.Errorf("%w: packet %d", ErrMalformed, i)
		}
		buf := bufs[i]
		if _, err := io.ReadFull(&d.r, buf[packet.Headroom:packet.Headroom+l]); err != nil {
			pool.PutBufs(bufs[i:n])
			b.Release()
			return nil, n, fmt.Errorf("%w: packet %d", ErrMalformed, i)
		}
		b.Append(buf, l)
	}
	if d.r.Len() != 0 {
		b.Release()
		return nil, n, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, d.r.Len())
	}
	return b, n, nil
}
