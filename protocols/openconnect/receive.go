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
// FromNetwork: In counts every data packet received (and every frame that
// could not be one), Out what went to the injector, drops the rest:
// In = Out + drops exactly.

import (
	"net/netip"
	"sync/atomic"

	"github.com/pion/dtls/v3"

	"switchyard/packet"
	"switchyard/protocols"
	"switchyard/protocols/openconnect/cstp"
	"switchyard/stats"
)

type batcher struct {
	env      *protocols.Env
	name     string
	maxBatch int
	poolLog  *stats.LogLimiter
	recvLog  *stats.LogLimiter

	stock [][]byte // free pool buffers owned, full length; stock[:n] valid
	n     int

	b        *packet.Batch
	outBytes int

	in, inBytes, malformed, noBufs int // since the last flush

	delivered      *atomic.Uint64 // packets to the injector on this channel (stats info), or nil
	deliveredBytes *atomic.Uint64 // and their bytes, or nil

	// from, when valid, is the only source address accepted (a server's
	// peer may send only from the address it was given); others are
	// dropped as unknown_peer.
	from    netip.Addr
	spoofed int
}

func newBatcher(env *protocols.Env, name string, maxBatch int, poolLog, recvLog *stats.LogLimiter) *batcher {
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

// putBack returns a pool buffer that was not used (to the stock, or to the
// pool when the stock is full).
func (r *batcher) putBack(buf []byte) {
	if r.n == len(r.stock) {
		one := [1][]byte{buf[:cap(buf)]}
		r.env.Pool.PutBufs(one[:])
		return
	}
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
	if !r.sourceOK(pkt) {
		r.spoofed++
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
	if pkt := buf[packet.Headroom : packet.Headroom+n]; packet.Check(pkt) != nil {
		r.malformed++
		r.putBack(buf)
		return
	} else if !r.sourceOK(pkt) {
		r.spoofed++
		r.putBack(buf)
		return
	}
	r.append(buf, n)
}

func (r *batcher) sourceOK(pkt []byte) bool {
	if !r.from.IsValid() {
		return true
	}
	src, ok := packet.Source(pkt)
	return ok && src == r.from
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
	rs := r.env.FromNetwork
	if r.in > 0 {
		rs.In(r.in, r.inBytes)
		rs.Drop(stats.Malformed, r.malformed)
		rs.Drop(stats.NoBuffers, r.noBufs)
		rs.Drop(UnknownPeer, r.spoofed)
		if r.malformed > 0 {
			r.recvLog.Event(r.env.Log, "openconnect: malformed packets from the peer", r.name, r.malformed, nil)
		}
		if r.noBufs > 0 {
			r.poolLog.Event(r.env.Log, "openconnect receive: buffer pool exhausted, packets dropped", r.name, r.noBufs, nil)
		}
		if r.spoofed > 0 {
			r.recvLog.Event(r.env.Log, "openconnect: packets from a source address the peer was not given", r.name, r.spoofed, nil)
		}
		r.in, r.inBytes, r.malformed, r.noBufs, r.spoofed = 0, 0, 0, 0, 0
	}
	if r.b != nil {
		rs.Out(r.b.Len(), r.outBytes)
		if r.delivered != nil {
			r.delivered.Add(uint64(r.b.Len()))
		}
		if r.deliveredBytes != nil {
			r.deliveredBytes.Add(uint64(r.outBytes))
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

// dtlsRecord is one decrypted DTLS record handed from the DTLS reader to
// the batching loop: in buf (a pool buffer, the type byte at
// packet.Headroom-1, n bytes from there), or in a private copy when the
// pool was exhausted (pooled false), or the error that ended the reader.
type dtlsRecord struct {
	buf    []byte
	n      int
	pooled bool
	err    error
}

// readDTLSRecords reads DTLS records from d until it fails or is closed,
// and closes it. Every record (data too) is shown to control first, with
// its type byte (rec[0]) and payload; an error from control ends the loop.
// Records that are not a known type are counted as malformed.
//
// pion hands one record per Read and cannot say whether another is
// waiting, so a second goroutine does the reading: it decrypts each record
// straight into a pool buffer (the type byte landing in the headroom) and
// passes it over a channel; this loop takes what is there — as many
// records as arrived, up to the batch size — and hands the batch over when
// the channel is empty.
func readDTLSRecords(d *dtls.Conn, r *batcher, control func(t cstp.Type, rec []byte) error) error {
	recs := make(chan dtlsRecord, r.maxBatch)
	go readDTLS(d, r.env.Pool, r.maxBatch, recs)
	for {
		rec := <-recs
		for {
			if rec.err != nil {
				r.flush()
				d.Close()
				return rec.err
			}
			if err := r.record(rec, control); err != nil {
				r.flush()
				d.Close()
				for rec := range recs { // until the reader's error
					if rec.pooled {
						r.putBack(rec.buf)
					}
					if rec.err != nil {
						break
					}
				}
				return err
			}
			select {
			case rec = <-recs:
				continue
			default:
			}
			break
		}
		r.flush()
	}
}

// record handles one record of readDTLSRecords.
func (r *batcher) record(rec dtlsRecord, control func(t cstp.Type, rec []byte) error) error {
	giveBack := func() {
		if rec.pooled {
			r.putBack(rec.buf)
		}
	}
	if rec.n < 1 {
		giveBack()
		r.bad(1, 0)
		return nil
	}
	h := packet.Headroom - 1
	t := cstp.Type(rec.buf[h])
	if err := control(t, rec.buf[h:h+rec.n]); err != nil {
		giveBack()
		return err
	}
	switch {
	case t == cstp.Data && !rec.pooled:
		r.in++
		r.inBytes += rec.n - 1
		r.noBufs++
	case t == cstp.Data:
		r.addBuf(rec.buf, rec.n-1)
		return nil
	case t == cstp.DPDReq || t == cstp.DPDResp || t == cstp.Keepalive:
	default:
		r.bad(1, rec.n-1)
	}
	giveBack()
	return nil
}

// readDTLS is the reading goroutine of readDTLSRecords: it owns a stock of
// pool buffers, refilled maxBatch at a time, and ends by sending the error
// that stopped it.
func readDTLS(d *dtls.Conn, pool *packet.Pool, maxBatch int, out chan<- dtlsRecord) {
	stock := make([][]byte, maxBatch)
	have := 0
	defer func() { pool.PutBufs(stock[:have]) }()
	var scratch []byte
	for {
		if have == 0 && pool.GetBufs(stock) {
			have = len(stock)
		}
		var buf []byte
		pooled := have > 0
		if pooled {
			have--
			buf, stock[have] = stock[have], nil
		} else {
			if scratch == nil {
				scratch = make([]byte, packet.BufferBytes)
			}
			buf = scratch
		}
		n, err := d.Read(buf[packet.Headroom-1:])
		if err != nil {
			if pooled {
				stock[have] = buf
				have++
			}
			out <- dtlsRecord{err: err}
			return
		}
		if !pooled {
			// No pool buffer: the record travels in a copy, so a control
			// record can still be answered (data is counted as no_buffers).
			buf = append(make([]byte, 0, packet.Headroom+n), scratch[:packet.Headroom-1+n]...)
		}
		out <- dtlsRecord{buf: buf, n: n, pooled: pooled}
	}
}
