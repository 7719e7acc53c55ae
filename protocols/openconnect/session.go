package openconnect

// One client session: a CSTP tunnel on a TLS connection and, when it comes
// up, a DTLS channel beside it.
//
//  1. connect: TLS to the gateway, CONNECT /CSCOSSLC/tunnel with the cookie
//     and the CSTP headers, read the reply's tunnel parameters.
//  2. run starts three goroutines and waits for the session to end:
//     - the CSTP reader: frames from the TLS stream; data to the batcher
//       (receive.go), DPD requests answered, DISCONNECT/TERMINATE end it;
//       garbage (no STF magic) ends it, counted as malformed;
//     - the DTLS loop: handshake (PSK from the TLS exporter, ClientHello
//       session ID = X-DTLS-App-ID), then read records until the channel
//       dies; then retry after dtlsRetry, data going over CSTP meanwhile;
//     - the ticker: DPD requests when a channel has been silent for its DPD
//       interval (dead after dpdDeadFactor of them: DTLS falls back to CSTP,
//       a dead CSTP ends the session), keepalives when idle.
//  3. On stop, a DISCONNECT frame goes out before the connections close.

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"
	dtlsnet "github.com/pion/dtls/v3/pkg/net"
	"github.com/pion/dtls/v3/pkg/protocol/handshake"
	"go.uber.org/zap"

	"switchyard/packet"
	"switchyard/protocols/openconnect/cstp"
)

type session struct {
	a         *clientActor
	conn      *tls.Conn
	wire      *wireConn // under conn: gathers a batch's records
	tunnel    cstp.Tunnel
	tlsCipher string
	psk       []byte
	pending   []byte // bytes read past the CONNECT reply's head
	dtlsMTU   int

	dtls atomic.Pointer[dtls.Conn] // non-nil while DTLS carries data

	lastRx, lastTx         atomic.Int64 // CSTP, unix nanoseconds
	dtlsLastRx, dtlsLastTx atomic.Int64
	dtlsSince              atomic.Int64
	dtlsAnswered           atomic.Bool // a DPD response or data came over DTLS

	ended   atomic.Bool // the gateway ended the session: the cookie is spent
	done    chan struct{}
	once    sync.Once
	errMu   sync.Mutex
	err     error
	workers sync.WaitGroup
}

var errServerEnded = errors.New("the gateway ended the session")

// connect opens the TLS connection and asks for the tunnel.
func (a *clientActor) connect(ctx context.Context, cookie string) (*session, error) {
	ctx, cancel := context.WithTimeout(ctx, authTimeout)
	defer cancel()
	nd := net.Dialer{Control: markControl(a.env.Mark)} // around a full tunnel
	raw, err := nd.DialContext(ctx, "tcp", a.set.Host)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", a.set.Host, err)
	}
	cfg := a.set.tlsConfig()
	kl := &keyLog{}
	if a.set.DTLS {
		cfg.KeyLogWriter = kl
	}
	wire := &wireConn{Conn: raw}
	conn := tls.Client(wire, cfg)
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("TLS with %s: %w", a.set.Host, err)
	}
	ok := false
	defer func() {
		if !ok {
			conn.Close()
		}
	}()
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	// Stopping the instance cuts the CONNECT short.
	stopCut := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stopCut()
	hostname, _ := os.Hostname()
	req := cstp.AppendConnect(nil, cstp.ConnectRequest{
		Host: a.set.URL.Host, Cookie: cookie, Hostname: hostname, UserAgent: cstp.UserAgent,
		BaseMTU: baseMTU, MTU: a.set.MTU, DTLS: a.set.DTLS, IPv6: true,
	})
	if _, err := conn.Write(req); err != nil {
		return nil, fmt.Errorf("CONNECT: %w", err)
	}
	br := bufio.NewReaderSize(conn, 4096)
	first, h, err := cstp.ReadHead(br)
	if err != nil {
		return nil, fmt.Errorf("CONNECT reply: %w", err)
	}
	code, reason, err := cstp.ParseStatus(first)
	if err != nil {
		return nil, fmt.Errorf("CONNECT reply: %w", err)
	}
	switch {
	case code >= 400 && code < 500:
		return nil, fmt.Errorf("%w: CONNECT: HTTP %d %s", errCookieRejected, code, reason)
	case code != 200:
		// ocserv answers 503 to a cookie it does not know (as to an
		// overload): the manager logs in afresh after a few of these.
		return nil, fmt.Errorf("%w: CONNECT: HTTP %d %s", errConnectRefused, code, reason)
	}
	if ce := a.env.Log.Check(zap.DebugLevel, "openconnect CONNECT reply"); ce != nil {
		ce.Write(zap.String("instance", a.name), zap.String("status", first), zap.Any("headers", h))
	}
	t, err := cstp.ParseTunnel(h)
	if err != nil {
		return nil, fmt.Errorf("CONNECT reply: %w", err)
	}
	s := &session{a: a, conn: conn, wire: wire, tunnel: t, done: make(chan struct{})}
	if n := br.Buffered(); n > 0 {
		s.pending, _ = br.Peek(n)
		s.pending = append([]byte(nil), s.pending...)
	}
	cs := conn.ConnectionState()
	s.tlsCipher = tls.VersionName(cs.Version) + " " + tls.CipherSuiteName(cs.CipherSuite)
	if a.set.DTLS && t.HasDTLS() {
		s.psk, err = exportKey(conn, kl, wire)
		if err != nil {
			return nil, fmt.Errorf("DTLS key: %w", err)
		}
	}
	s.dtlsMTU = t.DTLSMTU
	if s.dtlsMTU == 0 {
		s.dtlsMTU = t.MTU
	}
	if s.dtlsMTU == 0 {
		s.dtlsMTU = a.set.MTU
	}
	_ = conn.SetDeadline(time.Time{})
	now := time.Now().UnixNano()
	s.lastRx.Store(now)
	s.lastTx.Store(now)
	ok = true
	return s, nil
}

// run runs the session until it fails or ctx ends; then it says goodbye,
// closes everything and waits for its goroutines.
func (s *session) run(ctx context.Context) {
	s.workers.Add(2)
	go s.readCSTP()
	go s.tick()
	if s.psk != nil {
		s.workers.Add(1)
		go s.dtlsLoop()
	}
	select {
	case <-ctx.Done():
		s.disconnect()
		s.fail(context.Canceled)
	case <-s.done:
	}
	s.workers.Wait()
}

func (s *session) isDone() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// fail ends the session with err (the first cause wins).
func (s *session) fail(err error) {
	s.once.Do(func() {
		s.errMu.Lock()
		s.err = err
		s.errMu.Unlock()
		close(s.done)
		s.conn.Close()
		if d := s.dtls.Load(); d != nil {
			d.Close()
		}
	})
}

func (s *session) cause() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	if s.err == nil {
		return errors.New("session ended")
	}
	return s.err
}

// disconnect sends a DISCONNECT frame (reason byte 0xb0 and a text, as
// openconnect does), best effort.
func (s *session) disconnect() {
	if d := s.dtls.Load(); d != nil {
		_, _ = d.Write([]byte{byte(cstp.Disconnect), 0xb0})
	}
	_ = s.conn.SetWriteDeadline(time.Now().Add(disconnectTimeout))
	_, _ = s.conn.Write(cstp.AppendFrame(nil, cstp.Disconnect, append([]byte{0xb0}, "switchyard stopping"...)))
}

// beginCSTP starts a batch of CSTP frames: each frame written until
// endCSTP is a TLS record of its own, and all of them leave in one TCP
// write.
func (s *session) beginCSTP() {
	_ = s.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	s.wire.begin()
}

// endCSTP sends the batch's records.
func (s *session) endCSTP() error {
	err := s.wire.flush()
	if err == nil {
		s.lastTx.Store(time.Now().UnixNano())
	}
	return err
}

// writeCSTP writes one frame (one TLS record).
func (s *session) writeCSTP(frame []byte) error {
	_ = s.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := s.conn.Write(frame)
	if err == nil {
		s.lastTx.Store(time.Now().UnixNano())
	}
	return err
}

func (s *session) writeControl(t cstp.Type, payload []byte) error {
	var buf [cstp.HeaderBytes + 64]byte
	if len(payload) > 64 {
		payload = payload[:64]
	}
	return s.writeCSTP(cstp.AppendFrame(buf[:0], t, payload))
}

func (s *session) dtlsConn() *dtls.Conn { return s.dtls.Load() }

// writeDTLS sends the packet in buf (a pool buffer, packet at Headroom) as
// one DTLS record; the type byte goes into the headroom.
func (s *session) writeDTLS(d *dtls.Conn, buf []byte) error {
	buf[packet.Headroom-1] = byte(cstp.Data)
	if _, err := d.Write(buf[packet.Headroom-1:]); err != nil {
		return err
	}
	s.dtlsLastTx.Store(time.Now().UnixNano())
	return nil
}

// readCSTP reads frames until the connection fails.
func (s *session) readCSTP() {
	defer s.workers.Done()
	a := s.a
	r := newBatcher(&a.env, a.name, a.maxBatch, &a.poolLog, &a.recvLog)
	r.delivered = &a.rxCSTP
	defer r.release()
	err := readFrames(s.conn, s.pending, r, s.onControl)
	s.fail(err)
}

// onControl handles a CSTP control frame; it returns an error that ends
// the session.
func (s *session) onControl(t cstp.Type, payload []byte) error {
	s.lastRx.Store(time.Now().UnixNano())
	switch t {
	case cstp.DPDReq:
		return s.writeControl(cstp.DPDResp, payload)
	case cstp.Disconnect, cstp.Terminate:
		s.ended.Store(true)
		return fmt.Errorf("%w (%s)", errServerEnded, t)
	}
	return nil
}

// frameConn is the part of a TLS connection the frame reader uses.
type frameConn interface {
	Read(b []byte) (int, error)
	SetReadDeadline(t time.Time) error
}

// drained is a read deadline in the past: a Read with it returns what TLS
// has already buffered and fails with a timeout instead of blocking.
var drained = time.Unix(1, 0)

// readFrames reads CSTP frames from c until it fails, handing data to r
// and the rest to control. It starts with the bytes of pending. After each
// read it drains what the TLS layer already holds (a read with a past
// deadline) before handing the batch over, so a batch holds every packet
// that arrived together, up to the batch size.
func readFrames(c frameConn, pending []byte, r *batcher, control func(cstp.Type, []byte) error) error {
	buf := make([]byte, readBufferBytes)
	end := copy(buf, pending)
	start := 0
	draining := false
	for {
		// Parse every complete frame in buf[start:end].
		for start < end {
			t, payload, n, err := cstp.ParseFrame(buf[start:end], cstp.MaxPayload)
			if err == cstp.ErrShort {
				break
			}
			if err != nil {
				r.bad(1, end-start)
				r.flush()
				return fmt.Errorf("CSTP stream: %w", err)
			}
			start += n
			switch t {
			case cstp.Data:
				r.add(payload)
			case cstp.DPDReq, cstp.DPDResp, cstp.Keepalive, cstp.Disconnect, cstp.Terminate:
				if err := control(t, payload); err != nil {
					r.flush()
					return err
				}
			default:
				r.bad(1, len(payload)) // compressed (never negotiated) or unknown
			}
		}
		if start == end {
			start, end = 0, 0
		} else if start > 0 && len(buf)-end < cstp.HeaderBytes+cstp.MaxPayload {
			end = copy(buf, buf[start:end])
			start = 0
		}
		n, err := c.Read(buf[end:])
		end += n
		if n > 0 && !draining {
			_ = c.SetReadDeadline(drained)
			draining = true
		}
		if err != nil {
			var ne net.Error
			if draining && errors.As(err, &ne) && ne.Timeout() {
				r.flush()
				_ = c.SetReadDeadline(time.Time{})
				draining = false
				continue
			}
			r.flush()
			return err
		}
	}
}

// dtlsLoop brings DTLS up and keeps it up while the session lives.
func (s *session) dtlsLoop() {
	defer s.workers.Done()
	a := s.a
	for !s.isDone() {
		d, err := s.dialDTLS()
		if err != nil {
			if s.isDone() {
				return
			}
			a.env.Log.Debug("openconnect DTLS handshake failed", zap.String("instance", a.name), zap.Error(err))
			if !s.wait(dtlsRetry) {
				return
			}
			continue
		}
		now := time.Now().UnixNano()
		s.dtlsLastRx.Store(now)
		s.dtlsLastTx.Store(now)
		s.dtlsSince.Store(now)
		cipher := "DTLS1.2-PSK"
		if st, ok := d.ConnectionState(); ok {
			cipher = "DTLS1.2 " + st.CipherSuiteID.String()
		}
		s.dtls.Store(d)
		if s.isDone() { // fail may have run before the Store
			d.Close()
		}
		a.info.update(func(c *clientState) { c.channel, c.dtlsCipher = "dtls", cipher; c.dtlsUps++ })
		a.env.Log.Info("openconnect DTLS up", zap.String("instance", a.name), zap.String("cipher", cipher))
		err = s.readDTLS(d)
		s.dtls.Store(nil)
		d.Close()
		if s.isDone() {
			return
		}
		a.info.update(func(c *clientState) { c.channel = "cstp"; c.dtlsDowns++ })
		a.env.Log.Warn("openconnect DTLS down, data goes over CSTP", zap.String("instance", a.name), zap.Error(err))
		if !s.wait(dtlsRetry) {
			return
		}
	}
}

func (s *session) wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-s.done:
		return false
	case <-t.C:
		return true
	}
}

// dialDTLS runs one DTLS handshake with the gateway.
func (s *session) dialDTLS() (*dtls.Conn, error) {
	raddr := &net.UDPAddr{IP: s.conn.RemoteAddr().(*net.TCPAddr).IP, Port: s.tunnel.DTLSPort}
	psk, appID := s.psk, s.tunnel.DTLSAppID
	cfg := &dtls.Config{
		PSK:             func([]byte) ([]byte, error) { return psk, nil },
		PSKIdentityHint: []byte(cstp.PSKIdentity),
		CipherSuites:    []dtls.CipherSuiteID{dtls.TLS_PSK_WITH_AES_128_GCM_SHA256},
		ClientHelloMessageHook: func(ch handshake.MessageClientHello) handshake.Message {
			ch.SessionID = appID
			return &ch
		},
		ExtendedMasterSecret: dtls.DisableExtendedMasterSecret,
		MTU:                  1400,
	}
	nd := net.Dialer{Control: markControl(s.a.env.Mark)} // around a full tunnel
	c, err := nd.Dial("udp", raddr.String())
	if err != nil {
		return nil, err
	}
	udp := c.(*net.UDPConn)
	// Bursts of a whole batch come back at once: room for them in the
	// kernel while pion decrypts (the kernel caps it at rmem_max/wmem_max).
	_ = udp.SetReadBuffer(udpBufferBytes)
	_ = udp.SetWriteBuffer(udpBufferBytes)
	d, err := dtls.Client(dtlsnet.PacketConnFromConn(udp), raddr, cfg)
	if err != nil {
		udp.Close()
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), dtlsHandshakeTimeout)
	defer cancel()
	go func() { // the session ending cuts a handshake short
		select {
		case <-s.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := d.HandshakeContext(ctx); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// readDTLS reads records until the DTLS connection fails or is closed.
func (s *session) readDTLS(d *dtls.Conn) error {
	a := s.a
	r := newBatcher(&a.env, a.name, a.maxBatch, &a.poolLog, &a.recvLog)
	r.delivered = &a.rxDTLS
	defer r.release()
	return readDTLSRecords(d, r, func(t cstp.Type, rec []byte) error {
		switch t {
		case cstp.Data, cstp.DPDResp:
			s.dtlsLastRx.Store(time.Now().UnixNano())
			s.dtlsAnswered.Store(true)
		case cstp.DPDReq:
			rec[0] = byte(cstp.DPDResp)
			_, _ = d.Write(rec)
		case cstp.Disconnect, cstp.Terminate:
			s.ended.Store(true)
			err := fmt.Errorf("%w (%s over DTLS)", errServerEnded, t)
			s.fail(err)
			return err
		}
		return nil
	})
}

// tick sends DPD requests and keepalives and declares channels dead.
func (s *session) tick() {
	defer s.workers.Done()
	t := time.NewTicker(tickInterval)
	defer t.Stop()
	var lastDPD, lastDTLSDPD, dtlsPending int64
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		now := time.Now().UnixNano()
		tun := &s.tunnel
		dpd := int64(tun.DPD)
		if dpd <= 0 {
			dpd = int64(defaultDPD)
		}
		silent := now - s.lastRx.Load()
		if silent > dpd*dpdDeadFactor {
			s.fail(fmt.Errorf("CSTP: nothing received for %v (DPD)", time.Duration(silent).Round(time.Second)))
			return
		}
		if silent > dpd && now-lastDPD > dpd {
			lastDPD = now
			if err := s.writeControl(cstp.DPDReq, nil); err != nil {
				s.fail(err)
				return
			}
		} else if ka := int64(tun.Keepalive); ka > 0 && now-s.lastTx.Load() > ka {
			if err := s.writeControl(cstp.Keepalive, nil); err != nil {
				s.fail(err)
				return
			}
		}

		d := s.dtls.Load()
		if d == nil {
			dtlsPending, lastDTLSDPD = 0, 0
			continue
		}
		// DTLS is alive while our DPD requests are answered: a request
		// from the gateway proves only its direction of the path.
		dpd = int64(tun.DTLSDPD)
		if dpd <= 0 {
			dpd = int64(defaultDPD)
		}
		if s.dtlsAnswered.Swap(false) {
			dtlsPending = 0
		}
		switch {
		case dtlsPending != 0 && now-dtlsPending > dpd*dpdDeadFactor:
			s.a.env.Log.Debug("openconnect DTLS DPD unanswered, closing", zap.String("instance", s.a.name))
			d.Close() // the DTLS loop falls back to CSTP and retries later
		case now-s.dtlsLastRx.Load() > dpd && now-lastDTLSDPD > dpd:
			if dtlsPending == 0 {
				dtlsPending = now
			}
			lastDTLSDPD = now
			_, err := d.Write([]byte{byte(cstp.DPDReq)})
			s.a.env.Log.Debug("openconnect DTLS DPD request", zap.String("instance", s.a.name),
				zap.Duration("unanswered", time.Duration(now-dtlsPending)), zap.Error(err))
		case tun.DTLSKeepalive > 0 && now-s.dtlsLastTx.Load() > int64(tun.DTLSKeepalive):
			if _, err := d.Write([]byte{byte(cstp.Keepalive)}); err == nil {
				s.dtlsLastTx.Store(now)
			}
		}
	}
}
