package openvpn

// Control session of a client, one goroutine (run) per connection attempt:
//
//  1. Send P_CONTROL_HARD_RESET_CLIENT_V2 (message 0 of key 0) and wait for
//     the server's reset, which names its session id and acknowledges ours.
//  2. Control datagrams from the readers arrive on ctrl: tls-crypt unwraps
//     them, acks free the send window, messages go through the key
//     state's receive window; in-order TLS bytes go to its TLS goroutine
//     (keystate.go) through a bounded queue.
//  3. After each event flush sends what is due: new and timed-out
//     messages with acks piggybacked, else a P_ACK_V1.
//  4. The TLS goroutine of key 0 does the handshake, key method 2,
//     PUSH_REQUEST/PUSH_REPLY and installs the data key; a
//     P_CONTROL_SOFT_RESET_V1 from the server for a new key id starts a new
//     key state (renegotiation) whose key replaces the old one when ready.
//  5. The ticker sends keepalive pings and ends the session when nothing
//     was received for ping-restart.

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"
)

// handshakeWindow is handshakeTimeout; tests shorten it before starting
// any session.
var handshakeWindow = handshakeTimeout

// sessionHost is what a session needs of its instance: the client actor,
// or the server actor for each of its peers.
type sessionHost interface {
	// sendDatagrams sends control packets and pings; it borrows d.
	sendDatagrams(d [][]byte, ep conn.Endpoint) error
	// logEvent logs a rate-limited problem.
	logEvent(msg string, n int, err error)
}

// sessionConfig is what differs between a client's and a server's session.
type sessionConfig struct {
	server  bool
	tls     *tls.Config
	ciphers []string // data_ciphers
	// reply builds the push reply for a client that sent info (server).
	reply func(info km2) (pushReply, error)
	// reneg, when positive, starts a renegotiation (soft reset with the next
	// key id) this long after the latest key state began.
	reneg time.Duration
}

// session is one control session with one peer.
type session struct {
	host sessionHost
	cfg  sessionConfig
	ep   conn.Endpoint
	wrap *tlsCrypt

	ctx    context.Context
	cancel context.CancelFunc
	ctrl   chan []byte   // control datagrams from the readers
	kick   chan struct{} // a TLS goroutine queued bytes
	failed chan error    // the first fatal error
	tlsWG  sync.WaitGroup

	localSID sessionID

	mu         sync.Mutex // guards the fields below
	remoteSID  sessionID
	haveRemote bool
	peerSID    atomic.Pointer[sessionID] // remoteSID, for readers
	keys       [8]*keyState
	latest     *keyState
	latestAt   time.Time // when latest began

	ring     keyRing
	pushed   atomic.Pointer[pushReply]
	lastRecv atomic.Int64 // unix nanos of the last authentic packet
	up       chan pushReply

	ctrlGarbage atomic.Uint64 // control packets that failed tls-crypt or parsing
	renegs      atomic.Uint64
}

func newSession(host sessionHost, cfg sessionConfig, ep conn.Endpoint, wrap *tlsCrypt) *session {
	ctx, cancel := context.WithCancel(context.Background())
	s := &session{
		host: host, cfg: cfg, ep: ep, wrap: wrap,
		ctx: ctx, cancel: cancel,
		ctrl:   make(chan []byte, ctrlQueue),
		kick:   make(chan struct{}, 1),
		failed: make(chan error, 1),
		up:     make(chan pushReply, 1),
	}
	_, _ = rand.Read(s.localSID[:])
	s.lastRecv.Store(time.Now().UnixNano())
	return s
}

// fail ends the session with err (the first error wins).
func (s *session) fail(err error) {
	select {
	case s.failed <- err:
	default:
	}
}

// deliverControl is called by a reader with a control datagram it borrows.
func (s *session) deliverControl(pkt []byte) bool {
	select {
	case s.ctrl <- append([]byte(nil), pkt...):
		return true
	default:
		return false
	}
}

// run runs the session until it fails or ctx ends; it returns why.
func (s *session) run(ctx context.Context) error {
	defer func() {
		s.cancel()
		s.mu.Lock()
		for _, ks := range s.keys {
			if ks != nil {
				ks.close()
			}
		}
		s.mu.Unlock()
		s.tlsWG.Wait()
	}()
	s.mu.Lock()
	ks := s.newKeyState(0)
	if !s.cfg.server {
		ks.snd.enqueue(opHardResetClientV2, nil)
	}
	s.mu.Unlock()
	s.flush(time.Now())

	tick := time.NewTicker(tickInterval)
	defer tick.Stop()
	start := time.Now()
	var lastPing time.Time
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-s.failed:
			return err
		case pkt := <-s.ctrl:
			s.handleControl(pkt)
		case <-s.kick:
		case now := <-tick.C:
			p := s.pushed.Load()
			if p == nil {
				if now.Sub(start) > handshakeWindow {
					return fmt.Errorf("no session within the handshake window (%v)", handshakeWindow)
				}
			} else {
				ping, restart := p.Ping, p.PingRestart
				if ping <= 0 {
					ping = defaultPing
				}
				if restart <= 0 {
					restart = defaultPingRestart
				}
				if now.Sub(lastPing) >= ping {
					lastPing = now
					s.sendPing()
				}
				if now.UnixNano()-s.lastRecv.Load() > int64(restart) {
					return fmt.Errorf("nothing received for %v (ping-restart)", restart)
				}
				s.maybeRenegotiate(now)
			}
		}
		s.flush(time.Now())
	}
}

// maybeRenegotiate starts a soft reset with the next key id when reneg
// passed since the latest key state began, or when the key in use has
// spent most of its packet ids, once that key is in use.
func (s *session) maybeRenegotiate(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.latest
	if cur == nil {
		return
	}
	k := s.ring.primary.Load()
	if k == nil || k.id != cur.id {
		return // the latest exchange has not finished yet
	}
	due := s.cfg.reneg > 0 && now.Sub(s.latestAt) >= s.cfg.reneg
	if !due && k.sendID.Load() < renegPacketIDs {
		return
	}
	ks := s.newKeyState(cur.id%keyIDMask + 1) // 1…7; 0 only for the first
	ks.snd.enqueue(opSoftResetV1, nil)
	s.renegs.Add(1)
}

// sendPing sends OpenVPN's keepalive on the data channel.
func (s *session) sendPing() {
	k := s.ring.primary.Load()
	if k == nil {
		return
	}
	d, err := k.sealOne(pingMagic[:])
	if err == nil {
		err = s.host.sendDatagrams([][]byte{d}, s.ep)
	}
	if err != nil {
		s.host.logEvent("openvpn: ping failed", 1, err)
	}
}

// newKeyState makes the key state of id (s.mu held).
func (s *session) newKeyState(id byte) *keyState {
	if old := s.keys[id]; old != nil {
		old.close()
	}
	ks := &keyState{s: s, id: id, in: make(chan []byte, tlsInQueue), closed: make(chan struct{})}
	s.keys[id] = ks
	s.latest = ks
	s.latestAt = time.Now()
	return ks
}

// handleControl processes one control datagram.
func (s *session) handleControl(pkt []byte) {
	var m controlMsg
	if err := parseControl(s.wrap, pkt, &m); err != nil {
		s.ctrlGarbage.Add(1)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.haveRemote {
		want := byte(opHardResetServerV2)
		if s.cfg.server {
			want = opHardResetClientV2
		}
		if m.Op != want || m.KeyID != 0 || m.MsgID != 0 {
			s.ctrlGarbage.Add(1)
			return
		}
		s.remoteSID, s.haveRemote = m.SID, true
		sid := m.SID
		s.peerSID.Store(&sid)
		if s.cfg.server {
			s.keys[0].snd.enqueue(opHardResetServerV2, nil)
		}
	} else if m.SID != s.remoteSID {
		s.ctrlGarbage.Add(1)
		return
	}
	if m.NAcks > 0 && m.RemoteSID != s.localSID {
		s.ctrlGarbage.Add(1)
		return
	}
	s.lastRecv.Store(time.Now().UnixNano())
	ks := s.keys[m.KeyID]
	if m.Op == opSoftResetV1 && m.MsgID == 0 && (ks == nil || ks != s.latest) && s.pushed.Load() != nil {
		// The server renegotiates: a fresh key state for this key id. (A
		// retransmission of it finds it as the latest and is re-acked.)
		ks = s.newKeyState(m.KeyID)
		ks.snd.enqueue(opSoftResetV1, nil)
		s.renegs.Add(1)
	}
	if ks == nil {
		s.ctrlGarbage.Add(1)
		return
	}
	for _, id := range m.Acks[:m.NAcks] {
		ks.snd.ack(id)
	}
	if m.Op == opAckV1 {
		return
	}
	ks.rcv.accept(m.MsgID, m.Op, m.Payload)
	ks.deliver()
	if !ks.started && ks.rcv.nextID > 0 {
		ks.started = true
		s.startTLS(ks)
	}
}

// flush sends what is due on every key state.
func (s *session) flush(now time.Time) {
	s.mu.Lock()
	var out [][]byte
	for _, ks := range s.keys {
		if ks == nil {
			continue
		}
		ks.deliver()
		out = ks.packets(now, out)
	}
	s.mu.Unlock()
	if len(out) > 0 {
		if err := s.host.sendDatagrams(out, s.ep); err != nil {
			s.host.logEvent("openvpn: control send failed", len(out), err)
		}
	}
}

// startTLS starts the TLS goroutine of ks (s.mu held).
func (s *session) startTLS(ks *keyState) {
	s.tlsWG.Add(1)
	go func() {
		defer s.tlsWG.Done()
		exchange := s.clientKeyExchange
		if s.cfg.server {
			exchange = s.serverKeyExchange
		}
		if err := exchange(ks); err != nil && s.ctx.Err() == nil {
			s.fail(fmt.Errorf("key %d: %w", ks.id, err))
		}
	}()
}

// clientKeyExchange is the TLS goroutine of a client's key state.
func (s *session) clientKeyExchange(ks *keyState) error {
	ctx, cancel := context.WithTimeout(s.ctx, handshakeTimeout)
	defer cancel()
	tc := tls.Client(ks.conn(), s.cfg.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	stop := context.AfterFunc(s.ctx, func() { ks.close() })
	defer stop()
	if _, err := tc.Write(keyMethod2(false, localOptions, peerInfo(s.cfg.ciphers))); err != nil {
		return err
	}
	r := &msgReader{r: tc}
	if _, err := r.keyMethod(true); err != nil {
		return fmt.Errorf("key method 2: %w", err)
	}
	first := s.pushed.Load() == nil
	var p pushReply
	if first {
		var err error
		if p, err = s.pull(ctx, ks, tc, r); err != nil {
			return err
		}
	} else {
		p = *s.pushed.Load()
	}
	if !p.TLSEKM {
		return errors.New("the server did not push tls-ekm (key derivation by the old PRF is not supported)")
	}
	cs := tc.ConnectionState()
	mat, err := cs.ExportKeyingMaterial(ekmLabel, nil, keyMaterialBytes)
	if err != nil {
		return fmt.Errorf("export keying material: %w", err)
	}
	peerID := uint32(noPeerID)
	if p.HasPeerID {
		peerID = p.PeerID
	}
	k, err := newDataKey(ks.id, p.Cipher, mat, false, peerID)
	if err != nil {
		return err
	}
	s.ring.install(k)
	if first {
		s.pushed.Store(&p)
		s.up <- p
	}
	// Further messages: RESTART, HALT, AUTH_FAILED, EXIT end the session.
	for {
		msg, err := r.text()
		if err != nil {
			if s.ctx.Err() != nil || ks.isClosed() {
				return nil
			}
			return err
		}
		if serverEnds(msg) {
			return fmt.Errorf("server says %q", msg)
		}
	}
}

// serverEnds reports whether a control message from the server ends the
// session: RESTART[,…], HALT[,…], EXIT, AUTH_FAILED[,…].
func serverEnds(msg string) bool {
	cmd, _, _ := strings.Cut(msg, ",")
	switch cmd {
	case "RESTART", "HALT", "EXIT", "AUTH_FAILED":
		return true
	}
	return false
}

// ekmLabel is the TLS exporter label of the data-channel keys
// (EXPORT_KEY_DATA_LABEL in OpenVPN's ssl_backend.h).
const ekmLabel = "EXPORTER-OpenVPN-datakeys"

// pull sends PUSH_REQUEST until PUSH_REPLY comes and parses it.
func (s *session) pull(ctx context.Context, ks *keyState, tc *tls.Conn, r *msgReader) (pushReply, error) {
	var p pushReply
	// A server that never answers: the key state closes, which ends the
	// read below, and with it the session.
	ctx, cancel := context.WithTimeout(ctx, pushTimeout)
	defer cancel()
	stop := context.AfterFunc(ctx, ks.close)
	defer stop()
	if _, err := tc.Write([]byte("PUSH_REQUEST\x00")); err != nil {
		return p, err
	}
	for {
		msg, err := r.text()
		if err != nil {
			return p, fmt.Errorf("waiting for PUSH_REPLY: %w", err)
		}
		switch {
		case len(msg) >= 10 && msg[:10] == "PUSH_REPLY":
			more, err := parsePush(&p, msg)
			if err != nil {
				return p, err
			}
			if more {
				continue
			}
			if p.Cipher == "" {
				p.Cipher = cipherAES256GCM
			}
			if !slices.Contains(s.cfg.ciphers, p.Cipher) {
				return p, fmt.Errorf("the server pushes cipher %s, not in data_ciphers %v", p.Cipher, s.cfg.ciphers)
			}
			return p, nil
		case len(msg) >= 11 && msg[:11] == "AUTH_FAILED":
			return p, fmt.Errorf("server says %q", msg)
		}
		if ctx.Err() != nil {
			return p, errors.New("no PUSH_REPLY")
		}
	}
}
