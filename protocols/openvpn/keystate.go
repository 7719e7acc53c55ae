package openvpn

// A key state (OpenVPN's key_state): one key id's reliable channel and the
// TLS session over it. Its TLS goroutine reads and writes through ksConn;
// the session goroutine moves bytes between ksConn and the network.

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

type keyState struct {
	s       *session
	id      byte
	snd     reliableSend // s.mu
	rcv     reliableRecv // s.mu
	started bool         // TLS goroutine started (s.mu)

	in        chan []byte // in-order TLS bytes for the TLS goroutine
	closed    chan struct{}
	closeOnce sync.Once
	c         *ksConn
}

func (ks *keyState) close() { ks.closeOnce.Do(func() { close(ks.closed) }) }

func (ks *keyState) isClosed() bool {
	select {
	case <-ks.closed:
		return true
	default:
		return false
	}
}

// deliver hands in-order messages to the TLS goroutine while its queue
// has room (s.mu held). Reset messages carry no TLS bytes.
func (ks *keyState) deliver() {
	for m := ks.rcv.next(); m != nil; m = ks.rcv.next() {
		if m.op == opControlV1 && len(m.payload) > 0 {
			select {
			case ks.in <- m.payload:
			default:
				return
			}
		}
		ks.rcv.pop()
	}
}

// packets appends the datagrams due now (s.mu held).
func (ks *keyState) packets(now time.Time, out [][]byte) [][]byte {
	s := ks.s
	ks.snd.fill()
	var due [sendWindow]*outMsg
	var acks [maxAcks]uint32
	for _, m := range ks.snd.due(now, due[:0]) {
		a := acks[:0]
		if s.haveRemote {
			a = ks.rcv.takeAcks(a, maxAcks)
		}
		body := appendControlBody(make([]byte, 0, 64+len(m.payload)), a, s.remoteSID, m.op, m.id, m.payload)
		if d, err := s.wrap.wrap(make([]byte, 0, tlsCryptOverhead+len(body)), byte(m.op<<opShift|ks.id), s.localSID, body); err == nil {
			out = append(out, d)
		}
	}
	for len(ks.rcv.acks) > 0 && s.haveRemote {
		a := ks.rcv.takeAcks(acks[:0], maxAcks)
		body := appendControlBody(make([]byte, 0, 64), a, s.remoteSID, opAckV1, 0, nil)
		if d, err := s.wrap.wrap(make([]byte, 0, tlsCryptOverhead+len(body)), byte(opAckV1<<opShift|ks.id), s.localSID, body); err == nil {
			out = append(out, d)
		}
	}
	return out
}

// conn returns the net.Conn the TLS goroutine uses.
func (ks *keyState) conn() net.Conn {
	if ks.c == nil {
		ks.c = &ksConn{ks: ks}
	}
	return ks.c
}

// ksConn is a key state's reliable channel as a net.Conn for crypto/tls.
// One goroutine reads, one writes (tls.Conn's rule).
type ksConn struct {
	ks   *keyState
	rest []byte
}

var errKeyStateClosed = errors.New("key state closed")

func (c *ksConn) Read(p []byte) (int, error) {
	for len(c.rest) == 0 {
		select {
		case b := <-c.ks.in:
			c.rest = b
		case <-c.ks.closed:
			return 0, io.EOF
		}
	}
	n := copy(p, c.rest)
	c.rest = c.rest[n:]
	return n, nil
}

func (c *ksConn) Write(p []byte) (int, error) {
	if c.ks.isClosed() {
		return 0, errKeyStateClosed
	}
	s := c.ks.s
	s.mu.Lock()
	n := 0
	for n < len(p) {
		chunk := min(len(p)-n, controlPayloadBytes)
		if !c.ks.snd.enqueue(opControlV1, append([]byte(nil), p[n:n+chunk]...)) {
			s.mu.Unlock()
			return n, errors.New("control channel send queue full")
		}
		n += chunk
	}
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
	return n, nil
}

func (c *ksConn) Close() error                       { c.ks.close(); return nil }
func (c *ksConn) LocalAddr() net.Addr                { return dummyAddr{} }
func (c *ksConn) RemoteAddr() net.Addr               { return dummyAddr{} }
func (c *ksConn) SetDeadline(t time.Time) error      { return nil }
func (c *ksConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *ksConn) SetWriteDeadline(t time.Time) error { return nil }

type dummyAddr struct{}

func (dummyAddr) Network() string { return "openvpn-control" }
func (dummyAddr) String() string  { return "openvpn-control" }
