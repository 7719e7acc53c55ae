package packet

// Batch is the unit of work on the data path: up to MaxBatch IP packets, each
// in its own pooled buffer, with Headroom bytes free in front of it.
//
// Bufs[i] is buffer i sliced to Headroom+len(packet i); its capacity is the
// full BufferBytes, so in-place encapsulation, GSO and GRO can use the spare
// room. This is the layout tun.Device.Read/Write and conn.Bind use with
// offset = Headroom.
//
// A Batch belongs to exactly one place at a time. Sending it to an actor
// transfers ownership; the receiver passes it on or calls Release.
// Batch deliberately has no GetMessages method: protoactor would treat it as
// a MessageBatch and deliver it twice.
type Batch struct {
	Bufs [][]byte

	// Enqueued is when a mailbox queued the batch, in nanoseconds of a
	// monotonic clock (actors/mailbox stamps it once per batch on enqueue
	// and reads it on dequeue: the batch's queueing delay). Only the
	// mailbox holding the batch uses it.
	Enqueued int64

	pool     *Pool
	released bool

	// done, if set, is told when the batch reaches the end of its life in
	// this process (Release), with doneCount: see OnRelease.
	done      ReleaseHook
	doneCount int
}

// ReleaseHook is told that a batch it was attached to was released: its
// packets were sent on, or dropped and counted, by whoever owned it last.
type ReleaseHook interface {
	Released(n int)
}

// OnRelease attaches h to the batch: Release calls h.Released(n) once. A
// protocol host completes the shared-memory slots a batch came from this
// way, so that the daemon counts the packets as done only when the host's
// protocol is done with them — a host killed with packets in its mailbox
// leaves them uncompleted, and the daemon counts them lost (host_lost).
func (b *Batch) OnRelease(h ReleaseHook, n int) {
	b.done, b.doneCount = h, n
}

// Len reports the number of packets in the batch.
func (b *Batch) Len() int { return len(b.Bufs) }

// Packet borrows packet i: the bytes after the headroom.
func (b *Batch) Packet(i int) []byte { return b.Bufs[i][Headroom:] }

// Bytes reports the total packet bytes in the batch (headroom excluded).
func (b *Batch) Bytes() int { return PayloadBytes(b.Bufs) }

// PayloadBytes borrows bufs, buffers in Batch layout, and reports their
// packet bytes (headroom excluded): for a part of a batch.
func PayloadBytes(bufs [][]byte) int {
	n := 0
	for _, buf := range bufs {
		n += len(buf) - Headroom
	}
	return n
}

// SetLen sets the length of packet i to n bytes (0 ≤ n ≤ MaxPacketBytes).
func (b *Batch) SetLen(i, n int) { b.Bufs[i] = b.Bufs[i][:Headroom+n] }

// Append takes ownership of buf (a pool buffer) holding a packet of n bytes
// after the headroom.
func (b *Batch) Append(buf []byte, n int) {
	b.Bufs = append(b.Bufs, buf[:Headroom+n])
}

// Full reports whether the batch holds MaxBatch packets.
func (b *Batch) Full() bool { return len(b.Bufs) == MaxBatch }

// Pool returns the pool the batch's buffers go back to.
func (b *Batch) Pool() *Pool { return b.pool }

// Remove drops packet i from the batch and returns its buffer to the pool,
// preserving the order of the others. It costs O(Len); callers that remove
// many packets should use Filter.
func (b *Batch) Remove(i int) {
	buf := b.Bufs[i]
	copy(b.Bufs[i:], b.Bufs[i+1:])
	b.Bufs[len(b.Bufs)-1] = nil
	b.Bufs = b.Bufs[:len(b.Bufs)-1]
	one := [1][]byte{buf}
	b.pool.PutBufs(one[:])
}

// Filter keeps the packets for which keep returns true, in order, and
// returns the others' buffers to the pool in one call. It reports how many
// packets it removed. keep borrows each packet.
func (b *Batch) Filter(keep func(pkt []byte) bool) int {
	kept := 0
	var dropped [MaxBatch][]byte
	nd := 0
	for _, buf := range b.Bufs {
		if keep(buf[Headroom:]) {
			b.Bufs[kept] = buf
			kept++
		} else {
			dropped[nd] = buf
			nd++
		}
	}
	clear(b.Bufs[kept:])
	b.Bufs = b.Bufs[:kept]
	b.pool.PutBufs(dropped[:nd])
	return nd
}

// MoveTo moves packet i's buffer to dst (ownership passes to dst). The slot in
// b is left nil; callers that split a batch call Reset on b afterwards.
func (b *Batch) MoveTo(i int, dst *Batch) {
	dst.Bufs = append(dst.Bufs, b.Bufs[i])
	b.Bufs[i] = nil
}

// Reset forgets the batch's buffers without returning them (they were moved
// elsewhere) and keeps the header for reuse by its owner.
func (b *Batch) Reset() {
	clear(b.Bufs)
	b.Bufs = b.Bufs[:0]
}

// Release takes ownership of the batch: its buffers go back to the pool and
// the header is recycled. Releasing twice panics: it would hand one buffer to
// two owners.
func (b *Batch) Release() {
	if b.released {
		panic("packet: batch released twice")
	}
	b.released = true
	if h := b.done; h != nil {
		b.done = nil
		h.Released(b.doneCount)
	}
	b.pool.PutBufs(b.Bufs)
	b.Bufs = b.Bufs[:0]
	b.pool.putBatch(b)
}
