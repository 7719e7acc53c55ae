package openconnect

// Inbound batching (gateway → injector), shared by the CSTP and DTLS
// readers of clients and servers:
//
//  1. A reader owns a stock of up to Env.MaxBatch pool buffers, taken from
//     the pool in one call when it runs dry.
//  2. Each data packet is checked (packet.Check, else malformed) and copied
//     into a stock buffer (CSTP: frames can straddle reads), or the DTLS
//     record was decrypted straight into one (no copy of ours).
//  3. The buffers go into one batch; the batch goes to Env.Injector
//     (ownership passes) when it is full or when the reader would block.
//  4. Without buffers (pool exhausted) packets are dropped as no_buffers.
//
// RecvStats: In counts every data packet received (and every frame that
// could not be one), Out what went to the injector, drops the rest:
// In = Out + drops exactly.

import (
	"sync/atomic"

	"switchyard/actors/ratelog"
	"switchyard/actors/stats"
	"switchyard/packet"
	"switchyard/protocols"
)

type batcher struct {
	env      *protocols.Env
	name     string
	maxBatch int
	poolLog  *ratelog.Limiter
	recvLog  *ratelog.Limiter

	stock [][]byte // free pool buffers owned, full length; stock[:n] valid
	n     int

	b        *packet.Batch
	outBytes int

	in, inBytes, malformed, noBufs int // since the last flush

	delivered *atomic.Uint64 // packets to the injector on this channel (stats info), or nil
}

func newBatcher(env *protocols.Env, name string, maxBatch int, poolLog, recvLog *ratelog.Limiter) *batcher {
	return &batcher{env: env, name: name, maxBatch: maxBatch, poolLog: poolLog, recvLog: recvLog,
		stock: make([][]byte, maxBatch)}
}

// take returns a free pool buffer (owned by the batcher until it is given
// back with addBuf or putBack), or nil when the pool is exhausted.
func (r *batcher) take() []byte {
	if r.n == 0 {
		if !r.env.Pool.GetBufs(r.stock) {
			return nil
		}
		r.n = len(r.stock)
	}
	r.n--
	buf := r.stock[r.n]
	r.stock[r.n] = nil
	return buf
}

// putBack returns a buffer from take that was not used.
func (r *batcher) putBack(buf []byte) {
	r.stock[r.n] = buf[:cap(buf)]
	r.n++
}

// add counts and checks a received packet and copies it (borrowed) into a
// pool buffer of the batch.
func (r *batcher) add(pkt []byte) {
	r.in++
	r.inBytes += len(pkt)
	if packet.Check(pkt) != nil {
		r.malformed++
		return
	}
	buf := r.take()
	if buf == nil {
		r.noBufs++
		return
	}
	n := copy(buf[packet.Headroom:], pkt)
	r.append(buf, n)
}

// addBuf counts and checks a packet of n bytes already in buf (from take,
// at packet.Headroom) and takes ownership of buf.
func (r *batcher) addBuf(buf []byte, n int) {
	r.in++
	r.inBytes += n
	if packet.Check(buf[packet.Headroom:packet.Headroom+n]) != nil {
		r.malformed++
		r.putBack(buf)
		return
	}
	r.append(buf, n)
}

// bad counts a received frame that could not be a packet.
func (r *batcher) bad(n, bytes int) {
	r.in += n
	r.inBytes += bytes
	r.malformed += n
}

func (r *batcher) append(buf []byte, n int) {
	if r.b == nil {
		r.b = r.env.Pool.GetBatch()
	}
	r.b.Append(buf, n)
	r.outBytes += n
	if r.b.Len() >= r.maxBatch {
		r.flush()
	}
}

// flush counts what arrived since the last flush and sends the batch in
// hand to the injector.
func (r *batcher) flush() {
	rs := r.env.RecvStats
	if r.in > 0 {
		rs.In(r.in, r.inBytes)
		rs.Drop(stats.Malformed, r.malformed)
		rs.Drop(stats.NoBuffers, r.noBufs)
		if r.malformed > 0 {
			r.recvLog.Event(r.env.Log, "openconnect: malformed packets from the peer", r.name, r.malformed, nil)
		}
		if r.noBufs > 0 {
			r.poolLog.Event(r.env.Log, "openconnect receive: buffer pool exhausted, packets dropped", r.name, r.noBufs, nil)
		}
		r.in, r.inBytes, r.malformed, r.noBufs = 0, 0, 0, 0
	}
	if r.b != nil {
		rs.Out(r.b.Len(), r.outBytes)
		if r.delivered != nil {
			r.delivered.Add(uint64(r.b.Len()))
		}
		r.env.System.Root.Send(r.env.Injector, r.b)
		r.b, r.outBytes = nil, 0
	}
}

// release flushes what is in hand and returns the stock to the pool.
func (r *batcher) release() {
	r.flush()
	r.env.Pool.PutBufs(r.stock[:r.n])
	r.n = 0
}
