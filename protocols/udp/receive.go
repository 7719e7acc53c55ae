package udp

// Inbound flow (network → injector), in one reader goroutine per receive
// function of the bind (one for IPv4, one for IPv6):
//
//  1. The reader owns packet.MaxBatch pool buffers and hands all of them to
//     the receive function on every call (recvmmsg; with UDP GRO the kernel
//     fills the last slots and the bind splits the super-datagrams forward).
//     The bind skips and counts empty datagrams (udpbind.Empty) and
//     truncated ones (malformed): what it returns all holds data.
//  2. Each datagram is checked: from the peer (else unknown_peer), a valid
//     IP header (else malformed), and an inner source in allowed_sources
//     when that is set (else source_not_allowed).
//  3. The good buffers move into batches of at most Env.MaxBatch packets and
//     their slots are refilled from the pool in one call; when the pool
//     cannot refill them the good packets are dropped (no_buffers) and the
//     buffers kept.
//  4. Each batch goes to Env.Injector (ownership passes).
//  5. Closing the bind makes the receive function return net.ErrClosed: the
//     reader returns its buffers to the pool and exits.
//
// FromNetwork: In counts every datagram received (the bind counts those it
// skips), Out what went to the injector, and drops the rest, so In = Out +
// drops exactly.

import (
	"net/netip"

	"github.com/gaissmai/bart"
	"golang.zx2c4.com/wireguard/conn"

	"switchyard/packet"
	"switchyard/protocols/udpbind"
	"switchyard/stats"
)

// reader receives datagrams from one receive function of the bind.
type reader struct {
	a       *udpActor // read-only fields, closing, recvLog and poolLog only
	recv    conn.ReceiveFunc
	family  string // "v4" or "v6", for logs
	failMsg string // the log line of a failed receive, made once

	peer    netip.AddrPort
	allowed *bart.Lite // nil: any inner source

	h     *packet.Harvester // the pool buffers owned (h.Slots), full length
	pkts  [][]byte          // h.Slots[i][Headroom:], what the receive function fills
	sizes []int
	eps   []conn.Endpoint
	good  []int       // indexes of the datagrams that pass the checks
	emit  packet.Emit // r.emit, made once
}

// newReader takes packet.MaxBatch buffers from the pool for a reader of recv.
// It reports false when the pool cannot supply them.
func newReader(a *udpActor, recv conn.ReceiveFunc) (*reader, bool) {
	r := &reader{
		a:       a,
		recv:    recv,
		family:  recv.PrettyName(),
		failMsg: "udp receive failed (" + recv.PrettyName() + ")",
		peer:    a.set.Peer,
		allowed: a.allowed,
		pkts:    make([][]byte, packet.MaxBatch),
		sizes:   make([]int, packet.MaxBatch),
		eps:     make([]conn.Endpoint, packet.MaxBatch),
		good:    make([]int, 0, packet.MaxBatch),
	}
	h, ok := packet.NewHarvester(a.env.Pool, packet.MaxBatch, a.maxBatch)
	if !ok {
		return nil, false
	}
	r.h = h
	for i, buf := range h.Slots {
		r.pkts[i] = buf[packet.Headroom:]
	}
	r.emit = r.send
	return r, true
}

// run receives until the bind is closed.
func (r *reader) run() {
	defer r.a.readers.Done()
	defer r.release()
	udpbind.Loop(r.recv, r.pkts, r.sizes, r.eps, r.a.closing.Load,
		func(err error) { r.a.recvLog.Event(r.a.env.Log, r.failMsg, r.a.name, 1, err) }, r.deliver)
}

// deliver checks the n datagrams just received and sends the good ones to
// the injector in batches.
func (r *reader) deliver(n int) {
	if n == 0 {
		return // a read that held only what the bind skipped
	}
	env := &r.a.env
	good := r.good[:0]
	inBytes, unknown, malformed, notAllowed := 0, 0, 0, 0
	for i := 0; i < n; i++ {
		size := r.sizes[i]
		inBytes += size
		if size == 0 {
			// Only from a bind given to NewWithBind: udpbind skips empties.
			malformed++
			continue
		}
		if !r.fromPeer(r.eps[i]) {
			unknown++
			continue
		}
		pkt := r.pkts[i][:size]
		if packet.Check(pkt) != nil {
			malformed++
			continue
		}
		if r.allowed != nil {
			if src, _ := packet.Source(pkt); !r.allowed.Contains(src) {
				notAllowed++
				continue
			}
		}
		good = append(good, i)
	}
	clear(r.eps[:n]) // the endpoints are garbage now; do not pin them
	r.good = good[:0]
	env.FromNetwork.In(n, inBytes)
	env.FromNetwork.Drop(UnknownPeer, unknown)
	env.FromNetwork.Drop(stats.Malformed, malformed)
	env.FromNetwork.Drop(SourceNotAllowed, notAllowed)
	if len(good) == 0 {
		return
	}

	if !r.h.Move(good, r.sizes, r.emit) {
		env.FromNetwork.Drop(stats.NoBuffers, len(good))
		r.a.poolLog.Event(env.Log, "udp receive: buffer pool exhausted, packets dropped", r.a.name, len(good), nil)
		return
	}
	for _, i := range good {
		r.pkts[i] = r.h.Slots[i][packet.Headroom:]
	}
}

// fromPeer reports whether ep is the peer's address. (The datagram's local
// destination cannot be checked: with UDP GRO the bind loses the packet-info
// of all but the last datagram of a read. See README.md.)
func (r *reader) fromPeer(ep conn.Endpoint) bool {
	src, ok := udpbind.Source(ep)
	return ok && src == r.peer
}

// send takes ownership of b: it counts it out and passes it to the
// injector.
func (r *reader) send(b *packet.Batch, bytes int) {
	r.a.env.FromNetwork.Out(b.Len(), bytes)
	r.a.env.System.Root.Send(r.a.env.Injector, b)
}

// release returns the reader's buffers to the pool.
func (r *reader) release() {
	r.h.Release()
	clear(r.pkts)
}
