package openconnect

// The DTLS side of a server instance: one UDP socket, one reader goroutine
// that demultiplexes datagrams by the client's address.
//
//  1. A datagram from a known address goes to that client's DTLS
//     connection (a bounded queue; full: dropped and counted).
//  2. A datagram from a new address must be a DTLS ClientHello whose
//     session ID is the X-DTLS-App-ID of a live session (PSK-NEGOTIATE);
//     anything else is counted (dtls_unknown_sessions, logged at most once a
//     second) and dropped, with no state kept.
//  3. For a good ClientHello a pion/dtls server runs the handshake with the
//     session's PSK (the TLS exporter); then the peer's DTLS reader hands
//     data to the injector and the actor sends over DTLS while it is up.
//  4. When the DTLS connection fails (or the session ends) the address is
//     forgotten; the client may handshake again.

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"
	"go.uber.org/zap"

	"switchyard/protocols/openconnect/cstp"
)

const (
	// dtlsQueueDepth (256 datagrams) is the queue between the UDP reader
	// and one client's DTLS connection; a client that sends faster than
	// pion decrypts loses the excess (counted as its DTLS drops).
	dtlsQueueDepth = 256
	// dtlsDatagramMax (16 KiB) is the largest datagram accepted: DTLS
	// records carry at most the MTU (≤ 9000 bytes) plus their overhead.
	dtlsDatagramMax = 16 << 10
	// maxDTLSClients (4096) bounds the addresses with DTLS state at once.
	maxDTLSClients = 4096
	// maxServerConns (4096) bounds the TLS connections open at once
	// (logging in or tunnelling); more are closed at once and counted as
	// bad_requests.
	maxServerConns = 4096
)

type dtlsDemux struct {
	a   *serverActor
	udp *net.UDPConn

	mu      sync.Mutex
	clients map[netip.AddrPort]*vconn

	bufs sync.Pool // *[dtlsDatagramMax]byte
}

func newDTLSDemux(a *serverActor, udp *net.UDPConn) *dtlsDemux {
	d := &dtlsDemux{a: a, udp: udp, clients: map[netip.AddrPort]*vconn{}}
	d.bufs.New = func() any { return new([dtlsDatagramMax]byte) }
	return d
}

func (d *dtlsDemux) run(ctx context.Context) {
	defer d.a.workers.Done()
	a := d.a
	for {
		buf := d.bufs.Get().(*[dtlsDatagramMax]byte)
		n, from, err := d.udp.ReadFromUDPAddrPort(buf[:])
		if err != nil {
			d.bufs.Put(buf)
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				d.closeAll()
				return
			}
			a.recvLog.Event(a.env.Log, "openconnect: UDP receive failed", a.name, 1, err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		d.mu.Lock()
		vc := d.clients[from]
		d.mu.Unlock()
		if vc == nil {
			vc = d.newClient(ctx, from, buf[:n])
			if vc == nil {
				d.bufs.Put(buf)
				continue
			}
		}
		select {
		case vc.in <- datagram{buf: buf, n: n}:
		default:
			d.bufs.Put(buf)
			vc.drops.Add(1)
		}
	}
}

// newClient checks the first datagram from an address and starts a DTLS
// server for it; nil when the datagram names no live session.
func (d *dtlsDemux) newClient(ctx context.Context, from netip.AddrPort, first []byte) *vconn {
	a := d.a
	id, ok := clientHelloSessionID(first)
	var p *peer
	if ok {
		p = a.st.peerByAppID(id)
	}
	if p == nil || p.psk == nil || p.isDone() {
		a.st.dtlsUnknown.Add(1)
		a.dtlsLog.Event(a.env.Log, "openconnect: DTLS datagram naming no session", a.name, 1, errors.New(from.String()))
		return nil
	}
	d.mu.Lock()
	if len(d.clients) >= maxDTLSClients {
		d.mu.Unlock()
		a.st.dtlsUnknown.Add(1)
		return nil
	}
	vc := &vconn{d: d, remote: net.UDPAddrFromAddrPort(from), in: make(chan datagram, dtlsQueueDepth), closed: make(chan struct{})}
	d.clients[from] = vc
	d.mu.Unlock()
	a.workers.Add(1)
	go func() {
		defer a.workers.Done()
		defer d.forget(from, vc)
		d.serve(ctx, p, vc)
	}()
	return vc
}

func (d *dtlsDemux) forget(from netip.AddrPort, vc *vconn) {
	d.mu.Lock()
	if d.clients[from] == vc {
		delete(d.clients, from)
	}
	d.mu.Unlock()
	vc.Close()
}

func (d *dtlsDemux) closeAll() {
	d.mu.Lock()
	cs := make([]*vconn, 0, len(d.clients))
	for _, vc := range d.clients {
		cs = append(cs, vc)
	}
	d.mu.Unlock()
	for _, vc := range cs {
		vc.Close()
	}
}

// serve runs the handshake and then the peer's DTLS reader.
func (d *dtlsDemux) serve(ctx context.Context, p *peer, vc *vconn) {
	a := d.a
	psk := p.psk
	cfg := &dtls.Config{
		PSK:                  func([]byte) ([]byte, error) { return psk, nil },
		CipherSuites:         []dtls.CipherSuiteID{dtls.TLS_PSK_WITH_AES_128_GCM_SHA256},
		ExtendedMasterSecret: dtls.RequestExtendedMasterSecret,
		MTU:                  1400,
	}
	conn, err := dtls.Server(vc, vc.remote, cfg)
	if err != nil {
		a.st.dtlsHandshakeFailures.Add(1)
		return
	}
	defer conn.Close()
	hctx, cancel := context.WithTimeout(ctx, dtlsHandshakeTimeout)
	err = conn.HandshakeContext(hctx)
	cancel()
	if err != nil {
		a.st.dtlsHandshakeFailures.Add(1)
		a.dtlsLog.Event(a.env.Log, "openconnect: DTLS handshake failed", a.name, 1, err)
		return
	}
	if p.isDone() {
		return
	}
	if old := p.dtls.Swap(conn); old != nil {
		old.Close()
	}
	a.env.Log.Info("openconnect: client DTLS up", zap.String("instance", a.name), zap.String("user", p.user),
		zap.Stringer("remote", vc.remote))
	go func() { // the session's end closes DTLS too
		select {
		case <-p.done:
			conn.Close()
		case <-vc.closed:
		}
	}()
	r := newBatcher(&a.env, a.name, a.maxBatch, &a.poolLog, &a.recvLog)
	r.from, r.delivered, r.deliveredBytes = p.addr, &p.rxDTLS, &p.rxBytes
	p.dtlsLastRx.Store(time.Now().UnixNano())
	err = readDTLSRecords(conn, r, func(t cstp.Type, rec []byte) error {
		p.dtlsLastRx.Store(time.Now().UnixNano())
		switch t {
		case cstp.DPDReq:
			p.lastRx.Store(time.Now().UnixNano())
			rec[0] = byte(cstp.DPDResp)
			_, _ = conn.Write(rec)
		case cstp.DPDResp, cstp.Keepalive:
			p.lastRx.Store(time.Now().UnixNano())
		case cstp.Disconnect:
			p.ended.Store(true)
			p.fail(errors.New("client said DISCONNECT over DTLS"))
			return errServerEnded
		}
		return nil
	})
	r.release()
	p.dtls.CompareAndSwap(conn, nil)
	if !p.isDone() {
		a.env.Log.Info("openconnect: client DTLS down, CSTP carries its data", zap.String("instance", a.name),
			zap.String("user", p.user), zap.Error(err))
	}
}

// clientHelloSessionID returns the session ID of a DTLS 1.x ClientHello
// datagram (the first record of it).
func clientHelloSessionID(b []byte) ([]byte, bool) {
	// Record header: type(1)=22, version(2), epoch(2), seq(6), length(2).
	// Handshake header: type(1)=1, length(3), message_seq(2),
	// fragment_offset(3), fragment_length(3).
	// ClientHello: version(2), random(32), session_id_len(1), session_id.
	const off = 13 + 12 + 2 + 32
	if len(b) < off+1 || b[0] != 22 || b[1] != 0xfe || b[13] != 1 {
		return nil, false
	}
	n := int(b[off])
	if n == 0 || n > 32 || len(b) < off+1+n {
		return nil, false
	}
	return b[off+1 : off+1+n], true
}

type datagram struct {
	buf *[dtlsDatagramMax]byte
	n   int
}

// vconn is the net.PacketConn one pion server sees: reads come from the
// demultiplexer's queue, writes go to the shared socket.
type vconn struct {
	d      *dtlsDemux
	remote *net.UDPAddr
	in     chan datagram
	closed chan struct{}
	once   sync.Once
	drops  atomic.Uint64
}

func (v *vconn) ReadFrom(p []byte) (int, net.Addr, error) {
	select {
	case dg := <-v.in:
		n := copy(p, dg.buf[:dg.n])
		v.d.bufs.Put(dg.buf)
		return n, v.remote, nil
	case <-v.closed:
		return 0, nil, net.ErrClosed
	}
}

func (v *vconn) WriteTo(p []byte, _ net.Addr) (int, error) {
	select {
	case <-v.closed:
		return 0, net.ErrClosed
	default:
	}
	return v.d.udp.WriteToUDP(p, v.remote)
}

func (v *vconn) Close() error {
	v.once.Do(func() {
		close(v.closed)
		for { // give queued buffers back
			select {
			case dg := <-v.in:
				v.d.bufs.Put(dg.buf)
			default:
				return
			}
		}
	})
	return nil
}

func (v *vconn) LocalAddr() net.Addr                { return v.d.udp.LocalAddr() }
func (v *vconn) SetDeadline(time.Time) error        { return nil }
func (v *vconn) SetReadDeadline(time.Time) error    { return nil }
func (v *vconn) SetWriteDeadline(t time.Time) error { return nil }

var _ net.PacketConn = (*vconn)(nil)
