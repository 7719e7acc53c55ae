package openconnect

// Outbound flow of a server instance (router → connected clients), in the
// actor's Receive:
//
//  1. *actor.Started opens the TCP listener (TLS: login and CSTP) and, with
//     DTLS on, the UDP socket on the same port, and starts their goroutines
//     (srvconn.go, srvdtls.go). Each client whose CONNECT succeeds becomes a
//     peer: the goroutines tell the actor (*peerUp / *peerDown).
//  2. The router sends a *packet.Batch; the actor takes ownership.
//  3. Each packet goes to the peer whose assigned address is its
//     destination (no_peer when none): one DTLS record when the peer's DTLS
//     is up and the packet fits, else a CSTP frame (header written into
//     the headroom), one TLS record each, gathered under the peer's TLS
//     connection (wire.go).
//  4. Each peer's records leave in one TCP write; a failed write drops that
//     peer's packets (send_error) and ends its session.
//  5. *actor.Stopping and *actor.Restarting close the listeners and every
//     peer (a DISCONNECT frame first) and wait for all goroutines.

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"

	"switchyard/config"
	"switchyard/packet"
	"switchyard/protocols"
	"switchyard/protocols/openconnect/cstp"
	"switchyard/stats"
)

// ServerSettings are the settings of a server instance.
type ServerSettings struct {
	// Listen is the TCP (TLS) and UDP (DTLS) address.
	Listen netip.AddrPort
	// Cert is the server's certificate and key.
	Cert tls.Certificate
	// Users maps user names to SHA-crypt hashes (users_file, ocpasswd format).
	Users map[string]string
	// ClientCAs verifies client certificates (certificate login); nil: off.
	ClientCAs *x509.CertPool
	// Pool is the IPv4 range clients get addresses from; its first address
	// is the server's own (the clients' gateway).
	Pool netip.Prefix
	// Routes are pushed to clients as split-include routes.
	Routes []netip.Prefix
	// DNS servers pushed to clients.
	DNS []netip.Addr
	// DTLS enables the DTLS channel (default true).
	DTLS bool
	// MTU is the tunnel MTU given to clients.
	MTU int
	// DPD and Keepalive are the intervals announced to clients; a peer
	// silent for dpdDeadFactor DPD intervals is disconnected.
	DPD, Keepalive time.Duration
}

const (
	defaultServerDPD       = 30 * time.Second
	defaultServerKeepalive = 20 * time.Second
)

func parseServer(s config.Settings, base string, raw *rawSettings, fail failFunc) ServerSettings {
	set := ServerSettings{DTLS: true, MTU: defaultMTU, DPD: defaultServerDPD, Keepalive: defaultServerKeepalive}
	if raw.DTLS != nil {
		set.DTLS = *raw.DTLS
	}
	if raw.MTU != nil {
		if m := *raw.MTU; m < minMTU || m > maxMTU {
			fail("mtu", "must be %d-%d bytes, got %d", minMTU, maxMTU, m)
		} else {
			set.MTU = m
		}
	}
	if raw.Listen == "" {
		fail("listen", "is required (ip:port, e.g. 0.0.0.0:443)")
	} else if ap, err := netip.ParseAddrPort(raw.Listen); err != nil || ap.Port() == 0 || ap.Addr().Zone() != "" {
		fail("listen", "must be ip:port with a port 1-65535, got %q", raw.Listen)
	} else {
		set.Listen = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	if raw.CertFile == "" && raw.KeyFile == "" {
		fail("cert_file", "is required (the server's certificate, with key_file)")
	} else if cert, ok := loadKeyPair(base, raw.CertFile, raw.KeyFile, fail); ok {
		set.Cert = cert
	}
	if raw.UsersFile == "" && raw.ClientCAFile == "" {
		fail("users_file", "a login is required: users_file (ocpasswd format) or client_ca_file")
	}
	if raw.UsersFile != "" {
		users, err := readUsersFile(resolve(base, raw.UsersFile))
		if err != nil {
			fail("users_file", "%v", err)
		}
		set.Users = users
	}
	if raw.ClientCAFile != "" {
		pool, err := readCAFile(base, raw.ClientCAFile)
		if err != nil {
			fail("client_ca_file", "%v", err)
		}
		set.ClientCAs = pool
	}
	switch p, err := netip.ParsePrefix(raw.Pool); {
	case raw.Pool == "":
		fail("pool", "is required (an IPv4 prefix such as 192.168.99.0/24)")
	case err != nil || !p.Addr().Is4() || p.Bits() < 8 || p.Bits() > 30:
		fail("pool", "must be an IPv4 prefix /8 to /30, got %q", raw.Pool)
	default:
		set.Pool = p.Masked()
	}
	for i, r := range raw.Routes {
		p, err := netip.ParsePrefix(strings.TrimSpace(r))
		if err != nil || p.Addr().Zone() != "" {
			fail(fmt.Sprintf("routes[%d]", i), "must be a prefix such as 10.0.0.0/8, got %q", r)
			continue
		}
		set.Routes = append(set.Routes, p.Masked())
	}
	for i, d := range raw.DNS {
		a, err := netip.ParseAddr(strings.TrimSpace(d))
		if err != nil {
			fail(fmt.Sprintf("dns[%d]", i), "must be an IP address, got %q", d)
			continue
		}
		set.DNS = append(set.DNS, a)
	}
	if raw.DPD != nil {
		if d := time.Duration(*raw.DPD); d < time.Second || d%time.Second != 0 || d > time.Hour {
			fail("dpd", "must be whole seconds, 1s to 1h, got %v", d)
		} else {
			set.DPD = d
		}
	}
	if raw.Keepalive != nil {
		if d := time.Duration(*raw.Keepalive); d < time.Second || d%time.Second != 0 || d > time.Hour {
			fail("keepalive", "must be whole seconds, 1s to 1h, got %v", d)
		} else {
			set.Keepalive = d
		}
	}
	return set
}

// readUsersFile reads an ocpasswd file: user:group:hash per line.
func readUsersFile(path string) (map[string]string, error) {
	b, err := readPublic(path)
	if err != nil {
		return nil, err
	}
	users := map[string]string{}
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, ":")
		if len(f) != 3 || f[0] == "" {
			return nil, fmt.Errorf("%s:%d: want user:group:hash (ocpasswd format)", path, i+1)
		}
		if strings.HasPrefix(f[2], "!") {
			continue // locked (ocpasswd -l)
		}
		if err := checkCryptHash(f[2]); err != nil {
			return nil, fmt.Errorf("%s:%d: user %s: %v", path, i+1, f[0], err)
		}
		if _, dup := users[f[0]]; dup {
			return nil, fmt.Errorf("%s:%d: user %s appears twice", path, i+1, f[0])
		}
		users[f[0]] = f[2]
	}
	if len(users) == 0 {
		return nil, fmt.Errorf("%s has no (unlocked) user", path)
	}
	return users, nil
}

// peerUp and peerDown are sent to the actor by a client's connection.
type peerUp struct{ p *peer }
type peerDown struct{ p *peer }

// serverActor is one server instance.
type serverActor struct {
	name     string
	set      ServerSettings
	env      protocols.Env
	maxBatch int

	self    *actor.PID
	peers   map[netip.Addr]*peer // by assigned address (Receive only)
	touched []*peer              // peers with frames in their write buffer (Receive only)

	st      *serverState
	cancel  context.CancelFunc
	workers sync.WaitGroup

	sendLog, recvLog, poolLog, authLog, dtlsLog stats.LogLimiter
}

func newServerActor(name string, set ServerSettings, env protocols.Env) actor.Actor {
	if env.Log == nil {
		env.Log = zap.NewNop()
	}
	maxBatch := env.MaxBatch
	if maxBatch <= 0 || maxBatch > packet.MaxBatch {
		maxBatch = packet.MaxBatch
	}
	return &serverActor{name: name, set: set, env: env, maxBatch: maxBatch, peers: map[netip.Addr]*peer{}}
}

// Receive implements actor.Actor.
func (a *serverActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *packet.Batch:
		a.send(msg)
	case *peerUp:
		a.peers[msg.p.addr] = msg.p
	case *peerDown:
		if a.peers[msg.p.addr] == msg.p {
			delete(a.peers, msg.p.addr)
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

// start opens the listeners. A failure panics, so the supervisor counts a
// restart and retries after its backoff.
func (a *serverActor) start() {
	a.st = newServerState(a.set.Pool)
	lc := net.ListenConfig{Control: markControl(a.env.Mark)} // replies around a full tunnel
	ln, err := lc.Listen(context.Background(), "tcp", a.set.Listen.String())
	if err != nil {
		panic(fmt.Errorf("openconnect %s: listen tcp %s: %w", a.name, a.set.Listen, err))
	}
	var udp *net.UDPConn
	if a.set.DTLS {
		var pc net.PacketConn
		pc, err = lc.ListenPacket(context.Background(), "udp", a.set.Listen.String())
		if err == nil {
			udp = pc.(*net.UDPConn)
		}
		if err != nil {
			ln.Close()
			panic(fmt.Errorf("openconnect %s: listen udp %s: %w", a.name, a.set.Listen, err))
		}
		_ = udp.SetReadBuffer(udpBufferBytes)
		_ = udp.SetWriteBuffer(udpBufferBytes)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	a.env.ToNetwork.SetInfo(func() any { return a.st.info(a.set.Listen) })
	a.workers.Add(1)
	go a.acceptLoop(ctx, ln)
	if udp != nil {
		d := newDTLSDemux(a, udp)
		a.st.setDemux(d)
		a.workers.Add(1)
		go d.run(ctx)
	}
	go func() {
		<-ctx.Done()
		ln.Close()
		if udp != nil {
			udp.Close()
		}
	}()
	a.env.Log.Info("openconnect server listening", zap.String("instance", a.name),
		zap.Stringer("listen", a.set.Listen), zap.Bool("dtls", a.set.DTLS), zap.Stringer("pool", a.set.Pool))
}

func (a *serverActor) stop() {
	if a.cancel == nil {
		return
	}
	a.cancel()
	a.st.closeAll()
	a.workers.Wait()
	a.cancel = nil
	clear(a.peers)
}

// send takes ownership of b, sends each packet to its peer and releases b.
func (a *serverActor) send(b *packet.Batch) {
	defer b.Release()
	noPeer, malformed := 0, 0
	sent, bytes := 0, 0
	for _, buf := range b.Bufs {
		pkt := buf[packet.Headroom:]
		dst, ok := packet.Destination(pkt)
		if !ok || len(pkt) > cstp.MaxPayload {
			malformed++
			continue
		}
		p := a.peers[dst]
		if p == nil || p.isDone() {
			noPeer++
			continue
		}
		if d := p.dtls.Load(); d != nil && len(pkt) <= a.set.MTU {
			buf[packet.Headroom-1] = byte(cstp.Data)
			if _, err := d.Write(buf[packet.Headroom-1:]); err == nil {
				p.txDTLS.Add(1)
				p.txBytes.Add(uint64(len(pkt)))
				sent++
				bytes += len(pkt)
				continue
			}
		}
		if len(pkt) > maxFramePayload {
			malformed++
			continue
		}
		if p.wcount == 0 && p.werr == nil {
			a.touched = append(a.touched, p)
			_ = p.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
			p.wire.begin()
		}
		if p.werr != nil {
			p.wcount++ // counted as a send error at the flush
			continue
		}
		// The frame header goes into the headroom: one TLS record per
		// frame, no copy of ours; the records leave at the flush.
		frame := buf[packet.Headroom-cstp.HeaderBytes:]
		cstp.PutHeader(frame, cstp.Data, len(pkt))
		if _, err := p.conn.Write(frame); err != nil {
			p.werr = err
		}
		p.wcount++
		p.wbytes += len(pkt)
	}
	for _, p := range a.touched {
		n, nb := p.wcount, p.wbytes
		if a.flushPeer(p) {
			sent += n
			bytes += nb
		}
	}
	clear(a.touched)
	a.touched = a.touched[:0]
	a.env.ToNetwork.Drop(NoPeer, noPeer)
	a.env.ToNetwork.Drop(stats.Malformed, malformed)
	if sent > 0 {
		a.env.ToNetwork.Out(sent, bytes)
	}
}

// flushPeer sends p's gathered records in one write; it reports success.
// A failure drops the batch's frames for p (send_error) and ends its
// session.
func (a *serverActor) flushPeer(p *peer) bool {
	n, nb := p.wcount, p.wbytes
	err := p.wire.flush()
	if p.werr != nil {
		err = p.werr
	}
	p.wcount, p.wbytes, p.werr = 0, 0, nil
	if n == 0 {
		return true
	}
	if err != nil {
		a.env.ToNetwork.Drop(stats.SendError, n)
		a.sendLog.Event(a.env.Log, "openconnect: TLS write to a client failed, session ends", a.name, n, err)
		p.fail(err)
		return false
	}
	p.txCSTP.Add(uint64(n))
	p.txBytes.Add(uint64(nb))
	return true
}

// serverState is what the connection goroutines share: logins (cookies),
// the address pool, DTLS app IDs. It is also what the stats info shows.
type serverState struct {
	mu      sync.Mutex
	pool    netip.Prefix
	used    map[netip.Addr]bool
	cookies map[string]*login
	appIDs  map[string]*peer
	peers   map[*peer]bool
	conns   map[net.Conn]bool // every open TLS connection, closed on stop
	demux   *dtlsDemux

	authFailures, badRequests, dtlsUnknown, dtlsHandshakeFailures atomic.Uint64
	open                                                          atomic.Int64 // TLS connections open
}

// login is an authenticated user's cookie and address; it outlives a
// session broken by the network for cookieTimeout.
type login struct {
	user    string
	addr    netip.Addr
	peer    *peer     // the live session, nil between sessions
	expires time.Time // when no session is live
}

// cookieTimeout (5 min) is how long a cookie stays valid after its session
// broke without a DISCONNECT (ocserv's default is 300 s too).
const cookieTimeout = 5 * time.Minute

func newServerState(pool netip.Prefix) *serverState {
	return &serverState{pool: pool, used: map[netip.Addr]bool{}, cookies: map[string]*login{},
		appIDs: map[string]*peer{}, peers: map[*peer]bool{}, conns: map[net.Conn]bool{}}
}

func (st *serverState) setDemux(d *dtlsDemux) { st.mu.Lock(); st.demux = d; st.mu.Unlock() }

// gateway is the server's own address in the pool.
func (st *serverState) gateway() netip.Addr { return st.pool.Addr().Next() }

// newLogin allocates an address and a cookie for user.
func (st *serverState) newLogin(user string) (string, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.expireLocked(time.Now())
	var addr netip.Addr
	for a := st.gateway().Next(); st.pool.Contains(a); a = a.Next() {
		if !st.pool.Contains(a.Next()) {
			break // the broadcast address
		}
		if !st.used[a] {
			addr = a
			break
		}
	}
	if !addr.IsValid() {
		return "", fmt.Errorf("address pool %s exhausted", st.pool)
	}
	var rnd [32]byte
	_, _ = rand.Read(rnd[:])
	cookie := hex.EncodeToString(rnd[:])
	st.used[addr] = true
	st.cookies[cookie] = &login{user: user, addr: addr, expires: time.Now().Add(cookieTimeout)}
	return cookie, nil
}

func (st *serverState) expireLocked(now time.Time) {
	for c, l := range st.cookies {
		if l.peer == nil && now.After(l.expires) {
			delete(st.cookies, c)
			delete(st.used, l.addr)
		}
	}
}

// attach binds a new session to cookie; it returns the login, or nil when
// the cookie is unknown or expired. A live older session is replaced.
func (st *serverState) attach(cookie string, p *peer) (*login, *peer) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.expireLocked(time.Now())
	l := st.cookies[cookie]
	if l == nil {
		return nil, nil
	}
	old := l.peer
	l.peer = p
	p.user, p.addr = l.user, l.addr
	st.peers[p] = true
	st.appIDs[string(p.appID)] = p
	return l, old
}

// detach ends p's hold on its login; with forget (the client said
// DISCONNECT) the cookie and address are released at once.
func (st *serverState) detach(p *peer, forget bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	delete(st.peers, p)
	delete(st.appIDs, string(p.appID))
	l := st.cookies[p.cookie]
	if l == nil || l.peer != p {
		return
	}
	l.peer = nil
	l.expires = time.Now().Add(cookieTimeout)
	if forget {
		delete(st.cookies, p.cookie)
		delete(st.used, l.addr)
	}
}

func (st *serverState) peerByAppID(id []byte) *peer {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.appIDs[string(id)]
}

func (st *serverState) track(c net.Conn, on bool) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if on {
		if st.conns == nil {
			return false // stopping
		}
		st.conns[c] = true
	} else if st.conns != nil {
		delete(st.conns, c)
	}
	return true
}

// closeAll closes every connection (peers say DISCONNECT first).
func (st *serverState) closeAll() {
	st.mu.Lock()
	peers := make([]*peer, 0, len(st.peers))
	for p := range st.peers {
		peers = append(peers, p)
	}
	conns := st.conns
	st.conns = nil
	st.mu.Unlock()
	for _, p := range peers {
		p.bye()
	}
	for c := range conns {
		c.Close()
	}
}

// ServerInfo is a server instance's stats info.
type ServerInfo struct {
	Mode                  string     `json:"mode"`
	Listen                string     `json:"listen"`
	Pool                  string     `json:"pool"`
	Peers                 []PeerInfo `json:"peers"`
	AuthFailures          uint64     `json:"auth_failures"`
	BadRequests           uint64     `json:"bad_requests"`
	DTLSUnknownSessions   uint64     `json:"dtls_unknown_sessions"`
	DTLSHandshakeFailures uint64     `json:"dtls_handshake_failures"`
}

// PeerInfo is one connected client.
type PeerInfo struct {
	User      string     `json:"user"`
	Address   netip.Addr `json:"address"`
	Remote    string     `json:"remote"`
	Channel   string     `json:"channel"` // dtls or cstp
	Since     time.Time  `json:"since"`
	RxPackets uint64     `json:"rx_packets"`
	TxPackets uint64     `json:"tx_packets"`
	RxBytes   uint64     `json:"rx_bytes"`
	TxBytes   uint64     `json:"tx_bytes"`
	RxDTLS    uint64     `json:"rx_dtls_packets"`
	TxDTLS    uint64     `json:"tx_dtls_packets"`
}

func (st *serverState) info(listen netip.AddrPort) ServerInfo {
	st.mu.Lock()
	in := ServerInfo{Mode: "server", Listen: listen.String(), Pool: st.pool.String(), Peers: []PeerInfo{}}
	for p := range st.peers {
		ch := "cstp"
		if p.dtls.Load() != nil {
			ch = "dtls"
		}
		in.Peers = append(in.Peers, PeerInfo{
			User: p.user, Address: p.addr, Remote: p.conn.RemoteAddr().String(), Channel: ch, Since: p.since,
			RxPackets: p.rxCSTP.Load() + p.rxDTLS.Load(), TxPackets: p.txCSTP.Load() + p.txDTLS.Load(),
			RxBytes: p.rxBytes.Load(), TxBytes: p.txBytes.Load(), RxDTLS: p.rxDTLS.Load(), TxDTLS: p.txDTLS.Load(),
		})
	}
	st.mu.Unlock()
	sort.Slice(in.Peers, func(i, j int) bool { return in.Peers[i].Address.Less(in.Peers[j].Address) })
	in.AuthFailures, in.BadRequests = st.authFailures.Load(), st.badRequests.Load()
	in.DTLSUnknownSessions, in.DTLSHandshakeFailures = st.dtlsUnknown.Load(), st.dtlsHandshakeFailures.Load()
	return in
}

// Gauges implements stats.MetricsInfo: per-peer counters for /metrics.
func (in ServerInfo) Gauges() []stats.Gauge {
	var g []stats.Gauge
	for _, p := range in.Peers {
		// No channel label: it flips between dtls and cstp, and each flip
		// would start a new series.
		labels := map[string]string{"user": p.User, "address": p.Address.String()}
		g = append(g,
			stats.Gauge{Name: "openconnect_peer_rx_packets", Help: "Packets received from an openconnect client.", Labels: labels, Value: float64(p.RxPackets)},
			stats.Gauge{Name: "openconnect_peer_tx_packets", Help: "Packets sent to an openconnect client.", Labels: labels, Value: float64(p.TxPackets)},
			stats.Gauge{Name: "openconnect_peer_rx_bytes", Help: "Bytes received from an openconnect client.", Labels: labels, Value: float64(p.RxBytes)},
			stats.Gauge{Name: "openconnect_peer_tx_bytes", Help: "Bytes sent to an openconnect client.", Labels: labels, Value: float64(p.TxBytes)},
			stats.Gauge{Name: "openconnect_peer_since_seconds", Help: "When an openconnect client's session started (Unix time).", Labels: labels, Value: float64(p.Since.Unix())},
		)
	}
	g = append(g,
		stats.Gauge{Name: "openconnect_auth_failures", Help: "Logins refused by an openconnect server.", Labels: map[string]string{}, Value: float64(in.AuthFailures)},
		stats.Gauge{Name: "openconnect_dtls_unknown_sessions", Help: "DTLS datagrams naming no known session.", Labels: map[string]string{}, Value: float64(in.DTLSUnknownSessions)},
	)
	return g
}
