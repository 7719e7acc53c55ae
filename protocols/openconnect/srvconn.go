package openconnect

// One client connection of a server instance, in its own goroutine:
//
//  1. TLS handshake (client certificates verified when client_ca_file is
//     set), then HTTP/1.1 requests on the connection, each head within
//     cstp.MaxHeadBytes and each body within cstp.MaxAuthBytes:
//     - POST: the XML login. init → a form asking user name and password;
//       auth-reply → the password checked against users_file (SHA-crypt):
//       complete with a cookie, or the form again with an error (counted,
//       logged at most once a second); a verified client certificate logs
//       in at init.
//     - CONNECT /CSCOSSLC/tunnel with a valid cookie: the 200 CONNECTED
//       reply (address, routes, DTLS app ID and port), and the connection
//       becomes a peer.
//     Anything else, or garbage, is counted (bad_requests) and closed.
//  2. As a peer: the actor hears *peerUp; CSTP frames are read into
//     batches for the injector (source address checked); DPD requests are
//     answered; a peer silent for dpdDeadFactor DPD intervals is closed; a
//     DISCONNECT ends the session and spends the cookie; then *peerDown.

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"
	"go.uber.org/zap"

	"switchyard/protocols/openconnect/cstp"
)

// maxRequestsPerConn (16) bounds the HTTP requests on one connection
// before its CONNECT: a login takes two or three.
const maxRequestsPerConn = 16

func (a *serverActor) acceptLoop(ctx context.Context, ln net.Listener) {
	defer a.workers.Done()
	cfg := &tls.Config{Certificates: []tls.Certificate{a.set.Cert}, MinVersion: tls.VersionTLS12,
		DynamicRecordSizingDisabled: true} // one CSTP frame per TLS record (wire.go)
	if a.set.ClientCAs != nil {
		cfg.ClientCAs = a.set.ClientCAs
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			a.recvLog.Event(a.env.Log, "openconnect accept failed", a.name, 1, err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if n := a.st.open.Add(1); n > maxServerConns {
			a.st.open.Add(-1)
			a.st.badRequests.Add(1)
			a.recvLog.Event(a.env.Log, "openconnect: too many connections, refused", a.name, 1, nil)
			c.Close()
			continue
		}
		if !a.st.track(c, true) {
			a.st.open.Add(-1)
			c.Close()
			return
		}
		a.workers.Add(1)
		go func() {
			defer a.workers.Done()
			defer a.st.open.Add(-1)
			defer a.st.track(c, false)
			defer c.Close()
			wire := &wireConn{Conn: c, full: true}
			a.serveConn(ctx, tls.Server(wire, cfg), wire)
		}()
	}
}

// serveConn runs the HTTP exchange of one connection and, after a good
// CONNECT, its peer.
func (a *serverActor) serveConn(ctx context.Context, conn *tls.Conn, wire *wireConn) {
	_ = conn.SetDeadline(time.Now().Add(authTimeout))
	if err := conn.HandshakeContext(ctx); err != nil {
		a.st.badRequests.Add(1)
		a.recvLog.Event(a.env.Log, "openconnect: TLS handshake failed", a.name, 1, err)
		return
	}
	br := bufio.NewReaderSize(conn, 4096)
	var out []byte
	for range maxRequestsPerConn {
		_ = conn.SetDeadline(time.Now().Add(authTimeout))
		first, h, err := cstp.ReadHead(br)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				a.st.badRequests.Add(1)
				a.recvLog.Event(a.env.Log, "openconnect: bad request", a.name, 1, err)
			}
			return
		}
		method, target, ok := parseRequestLine(first)
		if !ok {
			a.st.badRequests.Add(1)
			a.recvLog.Event(a.env.Log, "openconnect: bad request line", a.name, 1, errors.New(clipText(first)))
			return
		}
		switch method {
		case "POST":
			body, err := readBody(br, h.Get("Content-Length"))
			if err != nil {
				a.st.badRequests.Add(1)
				a.recvLog.Event(a.env.Log, "openconnect: bad request body", a.name, 1, err)
				return
			}
			out = a.handleAuth(out[:0], conn, body)
		case "CONNECT":
			if target != cstp.ConnectPath {
				out = httpReply(out[:0], 404, "Not Found", "", nil)
				break
			}
			a.connect(ctx, conn, wire, br, h)
			return
		default:
			out = httpReply(out[:0], 404, "Not Found", "", nil)
		}
		if _, err := conn.Write(out); err != nil {
			return
		}
	}
}

func parseRequestLine(line string) (method, target string, ok bool) {
	f := strings.Fields(line)
	if len(f) != 3 || !strings.HasPrefix(f[2], "HTTP/1.") {
		return "", "", false
	}
	return f[0], f[1], true
}

func clipText(s string) string {
	if len(s) > 60 {
		s = s[:60] + "…"
	}
	return fmt.Sprintf("%q", s)
}

func readBody(br *bufio.Reader, length string) ([]byte, error) {
	if length == "" {
		return nil, errors.New("POST without Content-Length")
	}
	n, err := strconv.Atoi(length)
	if err != nil || n < 0 || n > cstp.MaxAuthBytes {
		return nil, fmt.Errorf("Content-Length %q: want 0-%d", length, cstp.MaxAuthBytes)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(br, body); err != nil {
		return nil, err
	}
	return body, nil
}

// httpReply appends a response with an XML body (or none).
func httpReply(dst []byte, code int, reason, cookie string, body []byte) []byte {
	dst = fmt.Appendf(dst, "HTTP/1.1 %d %s\r\n", code, reason)
	dst = append(dst, "Connection: Keep-Alive\r\nX-Transcend-Version: 1\r\n"...)
	if body != nil {
		dst = append(dst, "Content-Type: text/xml\r\n"...)
	}
	if cookie != "" {
		dst = append(dst, "Set-Cookie: webvpn="+cookie+"; Secure; HttpOnly\r\n"...)
	}
	dst = fmt.Appendf(dst, "Content-Length: %d\r\n\r\n", len(body))
	return append(dst, body...)
}

// handleAuth answers one round of the XML login.
func (a *serverActor) handleAuth(dst []byte, conn *tls.Conn, body []byte) []byte {
	req, err := cstp.ParseClientAuth(body)
	if err != nil {
		a.st.badRequests.Add(1)
		return httpReply(dst, 400, "Bad Request", "", nil)
	}
	user := ""
	if certs := conn.ConnectionState().VerifiedChains; len(certs) > 0 && len(certs[0]) > 0 {
		user = certs[0][0].Subject.CommonName // certificate login
	}
	if user == "" {
		if req.Type == "init" || (req.Username == "" && req.Password == "") || a.set.Users == nil {
			return httpReply(dst, 200, "OK", "", cstp.AppendAuthRequest(nil, "/auth", ""))
		}
		hash, known := a.set.Users[req.Username]
		if !known || !verifyCrypt(req.Password, hash) {
			a.st.authFailures.Add(1)
			a.authLog.Event(a.env.Log, "openconnect: login refused", a.name, 1,
				fmt.Errorf("user %q from %s", clipUser(req.Username), conn.RemoteAddr()))
			return httpReply(dst, 200, "OK", "", cstp.AppendAuthRequest(nil, "/auth", "Login failed."))
		}
		user = req.Username
	}
	cookie, err := a.st.newLogin(user)
	if err != nil {
		a.authLog.Event(a.env.Log, "openconnect: login not completed", a.name, 1, err)
		return httpReply(dst, 503, "Service Unavailable", "", nil)
	}
	a.env.Log.Info("openconnect: user logged in", zap.String("instance", a.name), zap.String("user", user),
		zap.Stringer("remote", conn.RemoteAddr()))
	return httpReply(dst, 200, "OK", cookie, cstp.AppendAuthComplete(nil, cookie))
}

func clipUser(u string) string {
	if len(u) > 32 {
		return u[:32] + "…"
	}
	return u
}

// peer is one connected client of a server instance.
type peer struct {
	srv    *serverActor
	user   string
	addr   netip.Addr
	cookie string
	conn   *tls.Conn
	wire   *wireConn // under conn: gathers a batch's records
	appID  []byte
	psk    []byte
	since  time.Time

	dtls atomic.Pointer[dtls.Conn]

	// Frames of the batch in hand, gathered in wire (the actor's Receive
	// only); werr is the first write error.
	wcount, wbytes int
	werr           error

	lastRx                         atomic.Int64
	dtlsLastRx                     atomic.Int64 // any record over DTLS
	rxCSTP, rxDTLS, txCSTP, txDTLS atomic.Uint64
	rxBytes, txBytes               atomic.Uint64

	ended atomic.Bool // the client said DISCONNECT
	done  chan struct{}
	once  sync.Once
}

func (p *peer) isDone() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *peer) fail(error) {
	p.once.Do(func() {
		close(p.done)
		p.conn.Close()
		if d := p.dtls.Load(); d != nil {
			d.Close()
		}
	})
}

// bye sends a DISCONNECT (best effort) and ends the session.
func (p *peer) bye() {
	_ = p.conn.SetWriteDeadline(time.Now().Add(disconnectTimeout))
	_, _ = p.conn.Write(cstp.AppendFrame(nil, cstp.Disconnect, append([]byte{0xb0}, "server shutting down"...)))
	p.fail(errors.New("server stopping"))
}

// connect answers a CONNECT and runs the peer until its session ends.
func (a *serverActor) connect(ctx context.Context, conn *tls.Conn, wire *wireConn, br *bufio.Reader, h map[string][]string) {
	cookie := cstp.Cookie(h)
	p := &peer{srv: a, conn: conn, wire: wire, cookie: cookie, since: time.Now(), done: make(chan struct{})}
	p.appID = make([]byte, 32)
	_, _ = rand.Read(p.appID)
	cs := conn.ConnectionState()
	dtlsOn := false
	if a.set.DTLS && cstp.OffersPSKNegotiate(h) {
		if key, err := cs.ExportKeyingMaterial(cstp.ExporterLabel, nil, cstp.ExporterBytes); err == nil {
			p.psk, dtlsOn = key, true
		} else {
			a.env.Log.Info("openconnect: no DTLS for this client", zap.String("instance", a.name), zap.Error(err))
		}
	}
	l, old := a.st.attach(cookie, p) // sets p.user and p.addr, then publishes p
	if l == nil {
		a.st.authFailures.Add(1)
		a.authLog.Event(a.env.Log, "openconnect: CONNECT with an unknown or expired cookie", a.name, 1,
			fmt.Errorf("from %s", conn.RemoteAddr()))
		_, _ = conn.Write(httpReply(nil, 401, "Unauthorized", "", nil))
		return
	}
	if old != nil {
		old.fail(errors.New("replaced by a new session with the same cookie"))
	}
	tun := cstp.Tunnel{
		Address:      netip.PrefixFrom(p.addr, a.set.Pool.Bits()),
		DNS:          a.set.DNS,
		SplitInclude: a.set.Routes,
		MTU:          a.set.MTU,
		DPD:          a.set.DPD,
		Keepalive:    a.set.Keepalive,
	}
	if dtlsOn {
		tun.DTLSPort = int(a.set.Listen.Port())
		tun.DTLSAppID = p.appID
		tun.DTLSCipher = cstp.PSKNegotiate
		tun.DTLSDPD, tun.DTLSKeepalive, tun.DTLSMTU = a.set.DPD, a.set.Keepalive, a.set.MTU
	}
	defer func() {
		a.env.System.Root.Send(a.self, &peerDown{p: p})
		a.st.detach(p, p.ended.Load())
		p.fail(errors.New("session ended"))
		a.env.Log.Info("openconnect: client disconnected", zap.String("instance", a.name),
			zap.String("user", p.user), zap.Stringer("address", p.addr), zap.Bool("said_bye", p.ended.Load()))
	}()
	// The actor knows the peer before the client can send.
	a.env.System.Root.Send(a.self, &peerUp{p: p})
	if _, err := conn.Write(cstp.AppendTunnelReply(nil, &tun, "switchyard")); err != nil {
		return
	}
	_ = conn.SetDeadline(time.Time{})
	var pending []byte
	if n := br.Buffered(); n > 0 {
		pending, _ = br.Peek(n)
		pending = append([]byte(nil), pending...)
	}
	a.env.Log.Info("openconnect: client connected", zap.String("instance", a.name), zap.String("user", p.user),
		zap.Stringer("address", p.addr), zap.Stringer("remote", conn.RemoteAddr()), zap.Bool("dtls_offered", tun.HasDTLS()))
	p.lastRx.Store(time.Now().UnixNano())
	watch := make(chan struct{})
	go func() { // DPD: a silent client is dead
		defer close(watch)
		t := time.NewTicker(tickInterval)
		defer t.Stop()
		dead := int64(a.set.DPD) * dpdDeadFactor
		seen, seenCSTP := uint64(0), uint64(0)
		for {
			select {
			case <-p.done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				now := time.Now().UnixNano()
				if n := p.rxCSTP.Load() + p.rxDTLS.Load(); n != seen { // data counts as life
					seen = n
					p.lastRx.Store(now)
				}
				// A client whose DTLS died (UDP blocked on the way) falls
				// back to CSTP: data over CSTP while DTLS has been silent
				// for a DPD interval moves our side to CSTP too (as ocserv
				// does); the client will handshake again when it can.
				if n := p.rxCSTP.Load(); n != seenCSTP {
					seenCSTP = n
					if d := p.dtls.Load(); d != nil && now-p.dtlsLastRx.Load() > int64(a.set.DPD) {
						p.dtls.CompareAndSwap(d, nil)
						d.Close()
						a.env.Log.Info("openconnect: client data over CSTP while its DTLS is silent, CSTP carries it",
							zap.String("instance", a.name), zap.String("user", p.user))
					}
				}
				if time.Now().UnixNano()-p.lastRx.Load() > dead {
					a.env.Log.Info("openconnect: client silent, closing", zap.String("instance", a.name), zap.String("user", p.user))
					p.fail(errors.New("DPD: client silent"))
					return
				}
			}
		}
	}()
	r := newBatcher(&a.env, a.name, a.maxBatch, &a.poolLog, &a.recvLog)
	r.from, r.delivered, r.deliveredBytes = p.addr, &p.rxCSTP, &p.rxBytes
	err := readFrames(conn, pending, r, func(t cstp.Type, payload []byte) error {
		p.lastRx.Store(time.Now().UnixNano())
		switch t {
		case cstp.DPDReq:
			var b [cstp.HeaderBytes + 64]byte
			_ = conn.SetWriteDeadline(time.Now().Add(writeTimeout))
			_, err := conn.Write(cstp.AppendFrame(b[:0], cstp.DPDResp, payload[:min(len(payload), 64)]))
			return err
		case cstp.Disconnect:
			p.ended.Store(true)
			return errors.New("client said DISCONNECT")
		}
		return nil
	})
	r.release()
	p.fail(err)
	<-watch
}
