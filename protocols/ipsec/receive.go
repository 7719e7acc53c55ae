package ipsec

// Inbound flow (network → injector), in one reader goroutine per receive
// function of the NAT-T bind (one per address family):
//
//  1. The reader owns packet.MaxBatch pool buffers and receives into each
//     from its start (recvmmsg, UDP GRO split by the bind), so that an ESP
//     header and IV land in the 16 bytes of headroom and the decrypted inner
//     packet at packet.Headroom, where a batch wants it.
//  2. Each datagram is classified: from another address than the peer
//     (unknown_peer); one 0xff byte (keepalive); four zero bytes, the
//     non-ESP marker (ike: copied to the IKE goroutine's bounded queue, or
//     ike_queue_full); anything else is ESP.
//  3. ESP: the SPI is looked up among the inbound SAs (no_sa); the reader
//     locks an SA's replay window once for its run of datagrams (once per
//     batch in steady state), checks the sequence number (replay), opens in
//     place (auth_failed), strips the trailer and checks the inner packet
//     (malformed) and its source against remote_ts (source_not_allowed).
//  4. The good buffers move into batches of at most Env.MaxBatch packets and
//     their slots are refilled from the pool in one call (no_buffers when
//     it cannot); each batch goes to Env.Injector (ownership passes).
//  5. Closing the bind ends the reader: it returns its buffers and exits.
//
// FromNetwork: In counts every datagram received on the NAT-T port, Out
// what went to the injector, and drops the rest (IKE messages and
// keepalives as the drops "ike" and "keepalive"), so In = Out + drops.

import (
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"switchyard/packet"
	"switchyard/protocols/ipsec/esp"
	"switchyard/protocols/udpbind"
	"switchyard/stats"
)

type reader struct {
	a       *ipsecActor
	recv    conn.ReceiveFunc
	failMsg string

	h     *packet.Harvester
	pkts  [][]byte // h.Slots[i][:], full length: received from offset 0
	sizes []int
	eps   []conn.Endpoint
	good  []int
	emit  packet.Emit
	drops [stats.MaxReasons]int
}

func newReader(a *ipsecActor, recv conn.ReceiveFunc) (*reader, bool) {
	r := &reader{
		a:       a,
		recv:    recv,
		failMsg: "ipsec receive failed (" + recv.PrettyName() + ")",
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
		r.pkts[i] = buf[:cap(buf)]
	}
	r.emit = r.send
	return r, true
}

func (r *reader) run() {
	defer r.a.readers.Done()
	defer r.release()
	udpbind.Loop(r.recv, r.pkts, r.sizes, r.eps, r.a.closing.Load,
		func(err error) { r.a.recvLog.Event(r.a.env.Log, r.failMsg, r.a.name, 1, err) }, r.deliver)
}

// deliver handles the n datagrams just received (borrowed slots).
func (r *reader) deliver(n int) {
	if n == 0 {
		return
	}
	a := r.a
	env := &a.env
	good := r.good[:0]
	inBytes := 0
	var sas inboundSAs
	if p := a.inbound.Load(); p != nil {
		sas = *p
	}
	allowed := a.allowed.Load()
	var locked *esp.Inbound
	runPackets, runBytes := 0, 0 // opened on locked since it was locked
	for i := 0; i < n; i++ {
		size := r.sizes[i]
		inBytes += size
		d := r.pkts[i][:size]
		src, ok := udpbind.Source(r.eps[i])
		if !ok || src.Addr() != a.set.Remote {
			r.drops[UnknownPeer]++
			continue
		}
		switch {
		case size == 1 && d[0] == 0xff:
			r.drops[Keepalive]++
			continue
		case size < 4:
			r.drops[stats.Malformed]++
			continue
		}
		spi := esp.SPIOf(d)
		if spi == 0 {
			if a.ctl.deliver(d[4:], src, true) {
				r.drops[IKE]++
			} else {
				r.drops[IKEQueueFull]++
			}
			continue
		}
		sa := sas.find(spi)
		if sa == nil {
			r.drops[NoSA]++
			continue
		}
		if sa != locked {
			if locked != nil {
				locked.Mu.Unlock()
				locked.Count(runPackets, runBytes)
				runPackets, runBytes = 0, 0
			}
			sa.Mu.Lock()
			locked = sa
		}
		m, err := sa.Open(d)
		if err != nil {
			switch err {
			case esp.ErrReplay:
				r.drops[Replay]++
			case esp.ErrAuth:
				r.drops[AuthFailed]++
			default:
				r.drops[stats.Malformed]++
			}
			continue
		}
		inner := d[esp.HeaderLen : esp.HeaderLen+m]
		if packet.Check(inner) != nil {
			r.drops[stats.Malformed]++
			continue
		}
		if src, _ := packet.Source(inner); !allowed.Contains(src) {
			r.drops[SourceNotAllowed]++
			continue
		}
		r.sizes[i] = m
		good = append(good, i)
		runPackets++
		runBytes += m
	}
	if locked != nil {
		locked.Mu.Unlock()
		locked.Count(runPackets, runBytes)
	}
	clear(r.eps[:n])
	r.good = good[:0]
	env.FromNetwork.In(n, inBytes)
	for reason, k := range r.drops {
		if k > 0 {
			env.FromNetwork.Drop(stats.Reason(reason), k)
			r.drops[reason] = 0
		}
	}
	if len(good) == 0 {
		return
	}
	a.lastIn.Store(time.Now().UnixNano())
	if !r.h.Move(good, r.sizes, r.emit) {
		env.FromNetwork.Drop(stats.NoBuffers, len(good))
		a.poolLog.Event(env.Log, "ipsec receive: buffer pool exhausted, packets dropped", a.name, len(good), nil)
		return
	}
	for _, i := range good {
		r.pkts[i] = r.h.Slots[i][:cap(r.h.Slots[i])]
	}
}

// send takes ownership of b: it counts it out and passes it to the
// injector.
func (r *reader) send(b *packet.Batch, bytes int) {
	r.a.env.FromNetwork.Out(b.Len(), bytes)
	r.a.env.System.Root.Send(r.a.env.Injector, b)
}

func (r *reader) release() {
	r.h.Release()
	clear(r.pkts)
}
