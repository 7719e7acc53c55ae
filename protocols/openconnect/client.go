package openconnect

// Outbound flow of a client instance (router → gateway), in the actor's
// Receive:
//
//  1. *actor.Started sets the stats info and starts the connection manager
//     goroutine (manager.go): login → CONNECT → session, again and again.
//  2. The manager reports each session that comes up (*sessionUp) and goes
//     down (*sessionDown); the actor keeps the current one.
//  3. The router sends a *packet.Batch; the actor takes ownership. Without
//     a session the batch is dropped (send_error).
//  4. With DTLS up, each packet that fits the DTLS MTU goes out as one DTLS
//     record (its type byte written into the headroom in front of it, no
//     copy of ours); the others, and every packet while DTLS is down, get
//     their CSTP header written into the headroom and become one TLS record
//     each (ocserv reads one frame per record), and the batch's records
//     leave in one TCP write (wire.go).
//  5. Stats count them out, or the write error drops them; a failed TLS
//     write ends the session (the manager reconnects). The batch is
//     released either way.
//  6. *actor.Stopping and *actor.Restarting stop the manager, which sends
//     a DISCONNECT on the live session and waits for its goroutines.

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"

	"switchyard/packet"
	"switchyard/protocols"
	"switchyard/protocols/openconnect/cstp"
	"switchyard/stats"
)

// sessionUp and sessionDown are sent by the manager to the actor.
type sessionUp struct{ s *session }
type sessionDown struct{ s *session }

// clientActor is one client instance.
type clientActor struct {
	name     string
	set      ClientSettings
	env      protocols.Env
	maxBatch int

	self   *actor.PID
	sess   *session // the live session, nil between sessions (Receive only)
	cancel context.CancelFunc
	mgr    sync.WaitGroup

	sendLog stats.LogLimiter // failed writes
	recvLog stats.LogLimiter // garbage from the gateway, shared by readers
	poolLog stats.LogLimiter // pool exhaustion on receive
	authLog stats.LogLimiter // refused logins

	info clientState
	// Packets per channel, for the stats info.
	rxCSTP, rxDTLS, txCSTP, txDTLS atomic.Uint64

	// dial hooks let tests break a session; nil in production.
	testHooks *testHooks
}

type testHooks struct {
	onSession func(s *session)
	cookie    func(c string) string // rewrites the cookie before a CONNECT
}

func newClientActor(name string, set ClientSettings, env protocols.Env) *clientActor {
	if env.Log == nil {
		env.Log = zap.NewNop()
	}
	maxBatch := env.MaxBatch
	if maxBatch <= 0 || maxBatch > packet.MaxBatch {
		maxBatch = packet.MaxBatch
	}
	a := &clientActor{
		name:     name,
		set:      set,
		env:      env,
		maxBatch: maxBatch,
	}
	a.info.server = set.URL.String()
	a.info.acceptRoutes = set.AcceptRoutes
	return a
}

// Receive implements actor.Actor.
func (a *clientActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *packet.Batch:
		a.send(msg)
	case *sessionUp:
		a.sess = msg.s
	case *sessionDown:
		if a.sess == msg.s {
			a.sess = nil
		}
	case *actor.Started:
		a.self = ctx.Self()
		a.start()
	case *actor.Stopping:
		a.stop()
		a.env.ToNetwork.SetInfo(nil)
	case *actor.Restarting:
		a.stop()
	}
}

func (a *clientActor) start() {
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	a.env.ToNetwork.SetInfo(func() any {
		in := a.info.snapshot()
		in.RxCSTP, in.RxDTLS = a.rxCSTP.Load(), a.rxDTLS.Load()
		in.TxCSTP, in.TxDTLS = a.txCSTP.Load(), a.txDTLS.Load()
		return in
	})
	m := &manager{a: a}
	a.mgr.Add(1)
	go func() {
		defer a.mgr.Done()
		m.run(ctx)
	}()
	a.env.Log.Info("openconnect client started", zap.String("instance", a.name),
		zap.String("server", a.set.URL.String()), zap.Bool("dtls", a.set.DTLS))
}

// stop ends the manager (DISCONNECT, close, wait). Calling it twice is
// harmless.
func (a *clientActor) stop() {
	if a.cancel == nil {
		return
	}
	a.cancel()
	a.mgr.Wait()
	a.cancel = nil
	a.sess = nil
}

// send takes ownership of b, sends its packets on the session and releases
// it.
func (a *clientActor) send(b *packet.Batch) {
	defer b.Release()
	s := a.sess
	if s == nil || s.isDone() {
		a.env.ToNetwork.Drop(stats.SendError, b.Len())
		a.sendLog.Event(a.env.Log, "openconnect: no session, packets dropped", a.name, b.Len(), nil)
		return
	}
	sent, bytes, malformed, overDTLS, dtlsBytes := 0, 0, 0, 0, 0
	var werr error
	batching := false
	dtlsConn := s.dtlsConn()
	dtlsMTU := s.dtlsMTU
	for _, buf := range b.Bufs {
		pkt := buf[packet.Headroom:]
		if len(pkt) == 0 || len(pkt) > maxFramePayload {
			malformed++
			continue
		}
		if dtlsConn != nil && len(pkt) <= dtlsMTU {
			if err := s.writeDTLS(dtlsConn, buf); err == nil {
				overDTLS++
				dtlsBytes += len(pkt)
				sent++
				bytes += len(pkt)
				continue
			}
			dtlsConn = nil // fall back to CSTP for the rest
		}
		if !batching {
			s.beginCSTP()
			batching = true
		}
		// The frame header goes into the headroom: no copy of ours.
		frame := buf[packet.Headroom-cstp.HeaderBytes:]
		cstp.PutHeader(frame, cstp.Data, len(pkt))
		if _, werr = s.conn.Write(frame); werr != nil {
			break
		}
		sent++
		bytes += len(pkt)
	}
	if batching {
		if err := s.endCSTP(); werr == nil {
			werr = err
		}
	}
	a.env.ToNetwork.Drop(stats.Malformed, malformed)
	if werr != nil {
		a.env.ToNetwork.Drop(stats.SendError, b.Len()-malformed-overDTLS)
		a.sendLog.Event(a.env.Log, "openconnect: TLS write failed, session ends", a.name, b.Len()-malformed-overDTLS, werr)
		s.fail(werr)
		sent, bytes = overDTLS, dtlsBytes
		if sent == 0 {
			return
		}
	}
	if sent > 0 {
		a.env.ToNetwork.Out(sent, bytes)
		a.txDTLS.Add(uint64(overDTLS))
		a.txCSTP.Add(uint64(sent - overDTLS))
	}
}

// clientState is what the instance shows in its stats info. It is written
// by the manager and read by snapshots.
type clientState struct {
	mu           sync.Mutex
	server       string
	acceptRoutes bool
	state        string
	since        time.Time
	tunnel       cstp.Tunnel
	channel      string
	tlsCipher    string
	dtlsCipher   string
	lastError    string
	reconnects   uint64
	authFailures uint64
	dtlsUps      uint64
	dtlsDowns    uint64
}

// ClientInfo is a client instance's stats info (GET /stats "info"). The
// node learns the addresses and routes through Env.ReportSession (see
// ClientSettings.session), not from here; all are empty while no session
// is up.
type ClientInfo struct {
	Mode          string         `json:"mode"`
	Server        string         `json:"server"`
	State         string         `json:"state"` // connecting, connected, auth_failed, reconnecting
	Since         *time.Time     `json:"since,omitempty"`
	Address       netip.Prefix   `json:"address,omitzero"`
	Address6      netip.Prefix   `json:"address6,omitzero"`
	Routes        []netip.Prefix `json:"routes,omitempty"`
	ExcludeRoutes []netip.Prefix `json:"exclude_routes,omitempty"`
	DNS           []netip.Addr   `json:"dns,omitempty"`
	AcceptRoutes  bool           `json:"accept_routes"`
	MTU           int            `json:"mtu,omitempty"`
	Channel       string         `json:"channel,omitempty"` // dtls or cstp
	TLSCipher     string         `json:"tls_cipher,omitempty"`
	DTLSCipher    string         `json:"dtls_cipher,omitempty"`
	Reconnects    uint64         `json:"reconnects"`
	AuthFailures  uint64         `json:"auth_failures"`
	DTLSUps       uint64         `json:"dtls_ups"`
	DTLSDowns     uint64         `json:"dtls_downs"`
	// Packets per channel since the instance started.
	RxCSTP    uint64 `json:"rx_cstp_packets"`
	RxDTLS    uint64 `json:"rx_dtls_packets"`
	TxCSTP    uint64 `json:"tx_cstp_packets"`
	TxDTLS    uint64 `json:"tx_dtls_packets"`
	LastError string `json:"last_error,omitempty"`
}

func (c *clientState) snapshot() ClientInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	in := ClientInfo{
		Mode: "client", Server: c.server, State: c.state, AcceptRoutes: c.acceptRoutes,
		Reconnects: c.reconnects, AuthFailures: c.authFailures, DTLSUps: c.dtlsUps, DTLSDowns: c.dtlsDowns,
		LastError: c.lastError,
	}
	if in.State == "" {
		in.State = "connecting"
	}
	if c.state == "connected" {
		since := c.since
		in.Since = &since
		t := &c.tunnel
		in.Address, in.Address6 = t.Address, t.Address6
		in.Routes = append([]netip.Prefix(nil), t.SplitInclude...)
		in.ExcludeRoutes = append([]netip.Prefix(nil), t.SplitExclude...)
		in.DNS = append([]netip.Addr(nil), t.DNS...)
		in.MTU = t.MTU
		in.Channel, in.TLSCipher, in.DTLSCipher = c.channel, c.tlsCipher, c.dtlsCipher
	}
	return in
}

func (c *clientState) update(f func(c *clientState)) {
	c.mu.Lock()
	f(c)
	c.mu.Unlock()
}

// errAuthFailed is a login the gateway refused (wrong password, unknown
// user, refused certificate): the manager waits before trying again.
var errAuthFailed = errors.New("login refused")

// errCookieRejected is a CONNECT the gateway refused with a 4xx: the
// cookie expired or was revoked, so the next attempt logs in afresh.
var errCookieRejected = errors.New("cookie refused")

// errConnectRefused is a CONNECT refused with another status (5xx). ocserv
// says 503 both when overloaded and when it does not know the cookie, so
// after cookieRetries of these in a row the manager logs in afresh.
var errConnectRefused = errors.New("CONNECT refused")

// Gauges implements stats.MetricsInfo: the session's state for /metrics.
func (in ClientInfo) Gauges() []stats.Gauge {
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	none := map[string]string{}
	return []stats.Gauge{
		{Name: "openconnect_connected", Help: "1 while an openconnect client has a session.", Labels: none, Value: b(in.State == "connected")},
		{Name: "openconnect_dtls_up", Help: "1 while an openconnect client's data goes over DTLS.", Labels: none, Value: b(in.Channel == "dtls")},
		{Name: "openconnect_reconnects", Help: "Sessions an openconnect client re-established.", Labels: none, Value: float64(in.Reconnects)},
		{Name: "openconnect_client_auth_failures", Help: "Logins refused to an openconnect client.", Labels: none, Value: float64(in.AuthFailures)},
	}
}
