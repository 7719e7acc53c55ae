package ipsec

// The IKE goroutine: one per instance, it owns every IKE and CHILD SA state
// and talks to the data path only through the actor's atomic pointers (out,
// inbound) and the Session hook.
//
//  1. Start: it initiates (IKE_SA_INIT to remote_addrs:remote_port from
//     local_port, with a fake NAT_DETECTION_SOURCE_IP so that both ends use
//     UDP encapsulation, as strongSwan's encap = yes does).
//  2. The response: COOKIE → the same request again with the cookie first;
//     INVALID_KE_PAYLOAD → again with the group asked for (if configured);
//     otherwise the chosen proposal, KE and nonce give the keys (RFC 7296
//     §2.14).
//  3. IKE_AUTH goes to port 4500 with the non-ESP marker: IDi, INITIAL_CONTACT,
//     IDr, AUTH (PSK), the ESP proposals with our inbound SPI, TSi, TSr. The
//     response's AUTH is verified, the chosen ESP proposal and narrowed
//     selectors give the CHILD SA: the inbound half is published for the
//     readers, the outbound half for the actor's send, and the routes (TSr)
//     go to Env.Session.
//  4. Established: requests of ours (liveness, delete) wait for their
//     response one at a time (window 1), retransmitted with doubling
//     timeouts; the peer's requests are answered in message-ID order and a
//     retransmitted one gets the cached response again. NAT-T keepalives
//     go out every `keepalive`; a peer quiet for `dpd_delay` is asked for an
//     empty INFORMATIONAL. At rekey_time / child_rekey_time the IKE SA is
//     deleted and established afresh.
//  5. Failure (no answer, AUTHENTICATION_FAILED, a peer's Delete): the SAs
//     are dropped, the zero Session reported, and a new IKE SA initiated
//     after a backoff that doubles up to retryMax.
//  6. Stop: a Delete of the IKE SA, answered or after deleteTimeout.

import (
	"crypto/ecdh"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gaissmai/bart"
	"go.uber.org/zap"

	"switchyard/protocols"
	"switchyard/protocols/ipsec/esp"
	"switchyard/protocols/ipsec/ike"
	"switchyard/protocols/udpbind"
)

type ikeDatagram struct {
	b    []byte
	from netip.AddrPort
	natt bool
}

// Counters of the IKE goroutine (read by tests and logs).
type ikeCounters struct {
	Established  atomic.Uint64 // IKE SAs established
	AuthFailures atomic.Uint64 // AUTHENTICATION_FAILED received or AUTH that did not verify
	Failures     atomic.Uint64 // IKE SAs failed for any reason
	BadMessages  atomic.Uint64 // IKE messages that did not parse or decrypt
	Retransmits  atomic.Uint64
	QueueFull    atomic.Uint64 // IKE messages on the IKE port dropped: the IKE goroutine's queue was full
	// Responder.
	HalfOpenDropped atomic.Uint64 // IKE_SA_INIT requests dropped: maxHalfOpen half-open SAs
	CookiesSent     atomic.Uint64 // COOKIE demanded (past cookieThreshold half-open SAs)
	InvalidKESent   atomic.Uint64 // INVALID_KE_PAYLOAD sent
	ChildRekeys     atomic.Uint64 // CHILD SAs rekeyed (either end starting)
	IKERekeys       atomic.Uint64 // IKE SAs rekeyed (either end starting)
}

type controller struct {
	a    *ipsecActor
	set  *Settings
	log  *zap.Logger
	c500 *net.UDPConn

	queue chan ikeDatagram
	pokeC chan struct{}
	stopC chan struct{}
	wg    sync.WaitGroup

	// Owned by the run goroutine.
	sa           *ikeSA
	retryAt      time.Time
	failures     int
	group        uint16            // DH group of the next KE
	peer500      netip.AddrPort    // where IKE_SA_INIT goes: remote_addrs:remote_port, or the initiator's source
	retiring     *ikeSA            // an IKE SA replaced by a rekey, until its Delete is done
	halfOpen     map[uint64]*ikeSA // responder: IKE SAs between IKE_SA_INIT and IKE_AUTH, by SPIi
	cookieSecret []byte            // responder: the key of the COOKIE hash
	lastKA       time.Time
}

type saState int

const (
	stateInit saState = iota
	stateAuth
	stateEstablished
	stateDeleting
)

// pending is our outstanding request.
type pending struct {
	id     uint32
	wire   []byte // what goes on the wire (with the marker on 4500)
	natt   bool
	due    time.Time
	tries  int
	onResp func(h ike.Header, ps []ike.Payload)
}

type ikeSA struct {
	initiator   bool // we sent the IKE_SA_INIT request
	state       saState
	spii, spir  uint64
	prop        IKEProposal
	priv        *ecdh.PrivateKey
	ni, nr      []byte
	cookie      []byte
	cookieTries int
	initReq     []byte // our IKE_SA_INIT request (signed in AUTH)
	initResp    []byte // the peer's IKE_SA_INIT response
	keys        *ikeKeys
	natt        bool
	nextID      uint32
	req         *pending
	peerID      uint32 // the next request ID expected from the peer
	lastResp    []byte // the wire bytes of our last response
	lastRecv    time.Time
	established time.Time

	inSPI   uint32        // the inbound SPI proposed in IKE_AUTH
	child   *child        // the CHILD SA on the data path, or nil
	oldIn   *esp.Inbound  // a rekeyed CHILD SA's inbound half, until its Delete is done
	holdOut *esp.Outbound // rekey responder: the old outbound half, used until the peer deletes it
	retired bool          // rekeyed: only its Delete is awaited
	vip     netip.Addr    // the virtual IP assigned to the initiator (configuration payload)
}

func newController(a *ipsecActor, c500 *net.UDPConn) *controller {
	c := &controller{a: a, set: &a.set, log: a.env.Log.With(zap.String("instance", a.name)), c500: c500,
		queue: make(chan ikeDatagram, ikeQueue), pokeC: make(chan struct{}, 1), stopC: make(chan struct{})}
	c.group = a.set.Proposals[0].DH
	c.peer500 = netip.AddrPortFrom(a.set.Remote, a.set.RemotePort)
	c.halfOpen = map[uint64]*ikeSA{}
	c.cookieSecret = randBytes(32)
	return c
}

func (c *controller) start() {
	c.wg.Add(2)
	go c.read500()
	go c.run()
}

// shutdown deletes the IKE SA and stops the goroutines.
func (c *controller) shutdown() {
	close(c.stopC)
	c.wg.Wait()
}

// deliver copies an IKE message for the IKE goroutine; false when its queue
// is full. Any goroutine may call it.
func (c *controller) deliver(b []byte, from netip.AddrPort, natt bool) bool {
	if len(b) > maxIKEMessage {
		return false
	}
	select {
	case c.queue <- ikeDatagram{b: append([]byte(nil), b...), from: from, natt: natt}:
		return true
	default:
		return false
	}
}

// poke asks the IKE goroutine to look at its timers now.
func (c *controller) poke() {
	select {
	case c.pokeC <- struct{}{}:
	default:
	}
}

func (c *controller) read500() {
	defer c.wg.Done()
	buf := make([]byte, maxIKEMessage)
	for {
		n, from, err := c.c500.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(udpbind.RecvErrorPause)
			continue
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		if from.Addr() != c.set.Remote {
			c.log.Debug("ipsec: IKE datagram from a stranger", zap.Stringer("from", from))
			continue
		}
		if !c.deliver(buf[:n], from, false) {
			c.a.ike.QueueFull.Add(1)
		}
	}
}

func (c *controller) run() {
	defer c.wg.Done()
	tick := time.NewTicker(tickInterval)
	defer tick.Stop()
	if c.set.Mode == "initiator" {
		c.initiate(time.Now())
	}
	for {
		select {
		case <-c.stopC:
			c.closeGracefully()
			_ = c.c500.Close()
			return
		case d := <-c.queue:
			c.handle(d, time.Now())
		case <-c.pokeC:
			c.tick(time.Now())
		case now := <-tick.C:
			c.tick(now)
		}
	}
}

// initiate starts a new IKE SA with IKE_SA_INIT.
func (c *controller) initiate(now time.Time) {
	sa := &ikeSA{initiator: true, spii: randSPI(), ni: randBytes(nonceLen)}
	c.sa = sa
	if err := c.sendInit(sa, now); err != nil {
		c.fail(now, fmt.Sprintf("IKE_SA_INIT: %v", err))
	}
}

func (c *controller) sendInit(sa *ikeSA, now time.Time) error {
	priv, pub, err := newDH(c.group)
	if err != nil {
		return err
	}
	sa.priv = priv
	var props []ike.Proposal
	for _, p := range c.set.Proposals {
		props = append(props, ike.Proposal{Protocol: ike.ProtoIKE, Transforms: []ike.Transform{
			{Type: ike.TransformENCR, ID: p.Encr, KeyLen: p.KeyLen},
			{Type: ike.TransformPRF, ID: p.PRF},
			{Type: ike.TransformDH, ID: p.DH},
		}})
		props[len(props)-1].Num = uint8(len(props))
	}
	var ps []ike.Payload
	if sa.cookie != nil {
		ps = append(ps, ike.Payload{Type: ike.PayloadNotify, Body: ike.NotifyBody(0, nil, ike.NotifyCookie, sa.cookie)})
	}
	ps = append(ps,
		ike.Payload{Type: ike.PayloadSA, Body: ike.AppendSA(nil, props)},
		ike.Payload{Type: ike.PayloadKE, Body: ike.KEBody(c.group, pub)},
		ike.Payload{Type: ike.PayloadNonce, Body: sa.ni},
		// A source hash that matches nothing: the responder sees us behind
		// a NAT and both ends encapsulate (strongSwan's encap = yes).
		ike.Payload{Type: ike.PayloadNotify, Body: ike.NotifyBody(0, nil, ike.NotifyNATDetectionSourceIP, randBytes(sha1.Size))},
		ike.Payload{Type: ike.PayloadNotify, Body: ike.NotifyBody(0, nil, ike.NotifyNATDetectionDestIP,
			natHash(sa.spii, 0, netip.AddrPortFrom(c.set.Remote, c.set.RemotePort)))},
		ike.Payload{Type: ike.PayloadNotify, Body: ike.NotifyBody(0, nil, ike.NotifySignatureHashAlgorithms, signatureHashes)},
	)
	msg := ike.Encode(ike.Header{SPIi: sa.spii, Exchange: ike.IKE_SA_INIT, Flags: ike.FlagInitiator}, ps)
	sa.initReq = msg
	sa.state = stateInit
	sa.nextID = 1
	sa.req = &pending{id: 0, wire: msg, onResp: nil}
	return c.transmit(sa.req, now)
}

// natHash is a NAT detection hash: SHA-1(SPIi | SPIr | IP | port).
func natHash(spii, spir uint64, ap netip.AddrPort) []byte {
	h := sha1.New()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], spii)
	h.Write(b[:])
	binary.BigEndian.PutUint64(b[:], spir)
	h.Write(b[:])
	h.Write(ap.Addr().AsSlice())
	binary.BigEndian.PutUint16(b[:2], ap.Port())
	h.Write(b[:2])
	return h.Sum(nil)
}

// transmit sends a request (again) and sets its retransmission timer.
func (c *controller) transmit(p *pending, now time.Time) error {
	p.due = now.Add(retransmitBase << p.tries)
	p.tries++
	return c.sendWire(p.wire, p.natt)
}

// flags are the header flags of our messages on sa (I when we initiated it).
func (sa *ikeSA) flags() uint8 {
	if sa.initiator {
		return ike.FlagInitiator
	}
	return 0
}

// sendKey and recvKey are the SK ciphers of our messages and the peer's.
func (sa *ikeSA) sendKey() *ike.SKCipher {
	if sa.initiator {
		return sa.keys.ei
	}
	return sa.keys.er
}

func (sa *ikeSA) recvKey() *ike.SKCipher {
	if sa.initiator {
		return sa.keys.er
	}
	return sa.keys.ei
}

func (c *controller) sendWire(wire []byte, natt bool) error {
	c.log.Debug("ipsec: IKE send", zap.Int("bytes", len(wire)), zap.Bool("natt", natt))
	if natt {
		err := c.a.sendNATT(wire)
		if err != nil {
			c.log.Debug("ipsec: IKE send failed", zap.Error(err))
		}
		return err
	}
	_, err := c.c500.WriteToUDPAddrPort(wire, c.peer500)
	return err
}

// request sends an encrypted request of ours on the IKE SA.
func (c *controller) request(sa *ikeSA, exchange uint8, inner []ike.Payload, now time.Time, onResp func(ike.Header, []ike.Payload)) {
	h := ike.Header{SPIi: sa.spii, SPIr: sa.spir, Exchange: exchange, Flags: sa.flags(), MessageID: sa.nextID}
	msg := sa.sendKey().Seal(h, inner)
	p := &pending{id: sa.nextID, wire: withMarker(msg), natt: true, onResp: onResp}
	sa.nextID++
	sa.req = p
	if err := c.transmit(p, now); err != nil {
		c.log.Debug("ipsec: IKE send", zap.Error(err))
	}
}

func withMarker(msg []byte) []byte {
	return append([]byte{0, 0, 0, 0}, msg...)
}

// respond answers the peer's request id on the IKE SA.
func (c *controller) respond(sa *ikeSA, exchange uint8, id uint32, inner []ike.Payload) {
	h := ike.Header{SPIi: sa.spii, SPIr: sa.spir, Exchange: exchange, Flags: sa.flags() | ike.FlagResponse, MessageID: id}
	sa.lastResp = withMarker(sa.sendKey().Seal(h, inner))
	if err := c.sendWire(sa.lastResp, true); err != nil {
		c.log.Debug("ipsec: IKE send", zap.Error(err))
	}
}

func (c *controller) bad(format string, args ...any) {
	c.a.ike.BadMessages.Add(1)
	c.log.Debug("ipsec: IKE message dropped", zap.String("why", fmt.Sprintf(format, args...)))
}

// handle processes one IKE message from the peer.
func (c *controller) handle(d ikeDatagram, now time.Time) {
	c.log.Debug("ipsec: IKE message", zap.Stringer("from", d.from), zap.Int("bytes", len(d.b)), zap.Bool("natt", d.natt))
	h, err := ike.ParseHeader(d.b)
	if err != nil {
		c.bad("%v", err)
		return
	}
	if c.set.Mode == "responder" && !h.IsResponse() {
		if h.Exchange == ike.IKE_SA_INIT {
			c.onInitRequest(h, d, now)
			return
		}
		if hs := c.halfOpen[h.SPIi]; hs != nil && h.SPIr == hs.spir {
			c.onAuthRequest(hs, h, d, now)
			return
		}
	}
	sa := c.sa
	if r := c.retiring; r != nil && h.SPIi == r.spii && h.SPIr == r.spir {
		sa = r
	}
	if sa == nil || h.SPIi != sa.spii {
		c.bad("unknown SPI %016x", h.SPIi)
		return
	}
	if h.Exchange == ike.IKE_SA_INIT {
		if !h.IsResponse() || sa.state != stateInit || h.MessageID != 0 {
			c.bad("unexpected IKE_SA_INIT")
			return
		}
		ps, err := ike.ParsePayloads(h.NextPayload, d.b[ike.HeaderLen:], nil)
		if err != nil {
			c.bad("%v", err)
			return
		}
		c.onInitResponse(sa, h, d.b, ps, now)
		return
	}
	if sa.keys == nil || h.SPIr != sa.spir {
		c.bad("message for an IKE SA without keys")
		return
	}
	outer, err := ike.ParsePayloads(h.NextPayload, d.b[ike.HeaderLen:], nil)
	if err != nil {
		c.bad("%v", err)
		return
	}
	if len(outer) != 1 || outer[0].Type != ike.PayloadSK {
		c.bad("unencrypted %d", h.Exchange)
		return
	}
	sk := outer[0]
	first := d.b[len(d.b)-len(sk.Body)-4]
	if h.IsResponse() {
		p := sa.req
		if p == nil || h.MessageID != p.id {
			c.bad("response %d to no request", h.MessageID)
			return
		}
		inner, err := sa.recvKey().Open(d.b, sk, first)
		if err != nil {
			c.bad("%v", err)
			return
		}
		sa.lastRecv = now
		sa.req = nil
		if p.onResp != nil {
			p.onResp(h, inner)
		}
		return
	}
	// A request of the peer.
	switch {
	case h.MessageID+1 == sa.peerID && sa.lastResp != nil:
		_ = c.sendWire(sa.lastResp, true) // retransmitted: the same answer
		return
	case h.MessageID != sa.peerID:
		c.bad("request %d, expected %d", h.MessageID, sa.peerID)
		return
	}
	inner, err := sa.recvKey().Open(d.b, sk, first)
	if err != nil {
		c.bad("%v", err)
		return
	}
	sa.lastRecv = now
	sa.peerID++
	switch h.Exchange {
	case ike.INFORMATIONAL:
		c.onInformational(sa, h, inner, now)
	case ike.CREATE_CHILD_SA:
		c.onCreateChild(sa, h, inner, now)
	default:
		c.respond(sa, h.Exchange, h.MessageID, []ike.Payload{{Type: ike.PayloadNotify,
			Body: ike.NotifyBody(0, nil, ike.NotifyInvalidSyntax, nil)}})
	}
}

func (c *controller) onInitResponse(sa *ikeSA, h ike.Header, msg []byte, ps []ike.Payload, now time.Time) {
	for _, n := range ike.Notifies(ps) {
		switch n.Type {
		case ike.NotifyCookie:
			if sa.cookieTries >= 2 || len(n.Data) == 0 || len(n.Data) > 64 {
				c.fail(now, "responder keeps asking for cookies")
				return
			}
			sa.cookieTries++
			sa.cookie = append([]byte(nil), n.Data...)
			if err := c.sendInit(sa, now); err != nil {
				c.fail(now, err.Error())
			}
			return
		case ike.NotifyInvalidKE:
			if len(n.Data) != 2 {
				c.fail(now, "INVALID_KE_PAYLOAD without a group")
				return
			}
			g := binary.BigEndian.Uint16(n.Data)
			if g == c.group || !slices.ContainsFunc(c.set.Proposals, func(p IKEProposal) bool { return p.DH == g }) {
				c.fail(now, fmt.Sprintf("responder wants DH group %d, not in proposals", g))
				return
			}
			c.log.Info("ipsec: responder asks for another DH group", zap.Uint16("group", g))
			c.group = g
			if err := c.sendInit(sa, now); err != nil {
				c.fail(now, err.Error())
			}
			return
		}
	}
	if code, ok := ike.ErrorNotify(ps); ok {
		c.fail(now, fmt.Sprintf("IKE_SA_INIT refused: %s", notifyName(code)))
		return
	}
	if h.SPIr == 0 {
		c.fail(now, "IKE_SA_INIT response without responder SPI")
		return
	}
	saP, ok1 := ike.Find(ps, ike.PayloadSA)
	keP, ok2 := ike.Find(ps, ike.PayloadKE)
	nP, ok3 := ike.Find(ps, ike.PayloadNonce)
	if !ok1 || !ok2 || !ok3 {
		c.fail(now, "IKE_SA_INIT response lacks SA, KE or Nonce")
		return
	}
	props, err := ike.ParseSA(saP.Body)
	if err != nil || len(props) != 1 {
		c.fail(now, fmt.Sprintf("IKE_SA_INIT response SA: %v", err))
		return
	}
	prop, ok := c.matchIKE(props[0])
	if !ok {
		c.fail(now, "responder chose a proposal we did not offer")
		return
	}
	group, pub, err := ike.ParseKE(keP.Body)
	if err != nil || group != prop.DH || group != c.group {
		c.fail(now, "responder's KE group does not match")
		return
	}
	if len(nP.Body) < minNonceLen || len(nP.Body) > maxNonceLen {
		c.fail(now, "responder's nonce length")
		return
	}
	shared, err := dhShared(group, sa.priv, pub)
	if err != nil {
		c.fail(now, err.Error())
		return
	}
	sa.spir = h.SPIr
	sa.prop = prop
	sa.nr = append([]byte(nil), nP.Body...)
	sa.initResp = msg
	sa.keys, err = deriveIKE(prop, sa.ni, sa.nr, shared, sa.spii, sa.spir)
	if err != nil {
		c.fail(now, err.Error())
		return
	}
	sa.priv = nil
	sa.req = nil
	sa.natt = true
	sa.state = stateAuth
	sa.lastRecv = now
	c.sendAuth(sa, now)
}

// matchIKE returns the configured proposal the responder's choice is.
func (c *controller) matchIKE(p ike.Proposal) (IKEProposal, bool) {
	var got IKEProposal
	for _, t := range p.Transforms {
		switch t.Type {
		case ike.TransformENCR:
			got.Encr, got.KeyLen = t.ID, t.KeyLen
		case ike.TransformPRF:
			got.PRF = t.ID
		case ike.TransformDH:
			got.DH = t.ID
		default:
			return got, false
		}
	}
	return got, p.Protocol == ike.ProtoIKE && len(p.Transforms) == 3 && slices.Contains(c.set.Proposals, got)
}

// matchESP returns the configured ESP proposal the responder's choice is,
// and whether it chose ESN.
func (c *controller) matchESP(p ike.Proposal) (ESPProposal, bool, bool) {
	var enc, bits, esn uint16
	nEnc, nESN := 0, 0
	for _, t := range p.Transforms {
		switch t.Type {
		case ike.TransformENCR:
			enc, bits = t.ID, t.KeyLen
			nEnc++
		case ike.TransformESN:
			esn = t.ID
			nESN++
		default:
			return ESPProposal{}, false, false
		}
	}
	if p.Protocol != ike.ProtoESP || len(p.SPI) != 4 || nEnc != 1 || nESN > 1 {
		return ESPProposal{}, false, false
	}
	for _, e := range c.set.ESPProposals {
		kb := e.KeyLen
		if e.Encr == ike.ENCR_CHACHA20_POLY1305 {
			kb = 0
		}
		if e.Encr == enc && kb == bits && slices.Contains(e.ESN, esn) {
			return e, esn == ike.ESN_ON, true
		}
	}
	return ESPProposal{}, false, false
}

func (c *controller) espProposals(spi uint32) []ike.Proposal {
	var spiB [4]byte
	binary.BigEndian.PutUint32(spiB[:], spi)
	var out []ike.Proposal
	for i, e := range c.set.ESPProposals {
		kb := e.KeyLen
		if e.Encr == ike.ENCR_CHACHA20_POLY1305 {
			kb = 0
		}
		ts := []ike.Transform{{Type: ike.TransformENCR, ID: e.Encr, KeyLen: kb}}
		for _, x := range e.ESN {
			ts = append(ts, ike.Transform{Type: ike.TransformESN, ID: x})
		}
		out = append(out, ike.Proposal{Num: uint8(i + 1), Protocol: ike.ProtoESP, SPI: spiB[:], Transforms: ts})
	}
	return out
}

func selectors(ps []netip.Prefix) []ike.Selector {
	out := make([]ike.Selector, len(ps))
	for i, p := range ps {
		out[i] = ike.SelectorFromPrefix(p)
	}
	return out
}

func (c *controller) sendAuth(sa *ikeSA, now time.Time) {
	prf := ike.PRF(sa.prop.PRF)
	idi := ike.IDBody(c.set.LocalID.Type, c.set.LocalID.Data)
	auth, err := c.ourAuth(prf, sa.initReq, sa.nr, sa.keys.skpi, idi)
	if err != nil {
		c.fail(now, fmt.Sprintf("sign AUTH: %v", err))
		return
	}
	sa.inSPI = randESPSPI()
	inner := []ike.Payload{{Type: ike.PayloadIDi, Body: idi}}
	if pk := c.set.Pubkey; pk != nil {
		inner = append(inner, pk.certPayloads()...)
	}
	inner = append(inner, ike.Payload{Type: ike.PayloadNotify, Body: ike.NotifyBody(0, nil, ike.NotifyInitialContact, nil)})
	if pk := c.set.Pubkey; pk != nil {
		inner = append(inner, pk.certReq())
	}
	inner = append(inner,
		ike.Payload{Type: ike.PayloadIDr, Body: ike.IDBody(c.set.RemoteID.Type, c.set.RemoteID.Data)},
		ike.Payload{Type: ike.PayloadAUTH, Body: auth},
	)
	inner = append(inner, c.cpRequest()...)
	inner = append(inner,
		ike.Payload{Type: ike.PayloadSA, Body: ike.AppendSA(nil, c.espProposals(sa.inSPI))},
		ike.Payload{Type: ike.PayloadTSi, Body: ike.AppendTS(nil, selectors(c.initiatorTSi()))},
		ike.Payload{Type: ike.PayloadTSr, Body: ike.AppendTS(nil, selectors(c.set.RemoteTS))},
	)
	c.request(sa, ike.IKE_AUTH, inner, now, func(h ike.Header, ps []ike.Payload) { c.onAuthResponse(sa, ps, time.Now()) })
}

func (c *controller) onAuthResponse(sa *ikeSA, ps []ike.Payload, now time.Time) {
	idr, ok1 := ike.Find(ps, ike.PayloadIDr)
	authP, ok2 := ike.Find(ps, ike.PayloadAUTH)
	if !ok1 || !ok2 {
		if code, ok := ike.ErrorNotify(ps); ok {
			if code == ike.NotifyAuthenticationFailed {
				c.a.ike.AuthFailures.Add(1)
			}
			c.fail(now, fmt.Sprintf("IKE_AUTH refused: %s", notifyName(code)))
			return
		}
		c.fail(now, "IKE_AUTH response lacks IDr or AUTH")
		return
	}
	if len(idr.Body) < 4 || !(Identity{Type: idr.Body[0], Data: idr.Body[4:]}).Equal(c.set.RemoteID) {
		c.authFailed(sa, now, fmt.Sprintf("responder identity %q, want %q", Identity{Type: idr.Body[0], Data: idr.Body[4:]}, c.set.RemoteID))
		return
	}
	if err := c.checkAuth(ike.PRF(sa.prop.PRF), ps, c.set.RemoteID, authP.Body, sa.initResp, sa.ni, sa.keys.skpr, idr.Body); err != nil {
		c.authFailed(sa, now, "responder's AUTH: "+err.Error())
		return
	}
	// The IKE SA is up; now the CHILD SA.
	sa.state = stateEstablished
	sa.established = now
	c.a.ike.Established.Add(1)
	if code, ok := ike.ErrorNotify(ps); ok {
		c.abandon(sa, now, "CHILD SA refused: "+notifyName(code))
		return
	}
	if err := c.installChild(sa, ps); err != nil {
		c.abandon(sa, now, "CHILD SA: "+err.Error())
		return
	}
}

func (c *controller) installChild(sa *ikeSA, ps []ike.Payload) error {
	saP, ok1 := ike.Find(ps, ike.PayloadSA)
	tsi, ok2 := ike.Find(ps, ike.PayloadTSi)
	tsr, ok3 := ike.Find(ps, ike.PayloadTSr)
	if !ok1 || !ok2 || !ok3 {
		return errors.New("IKE_AUTH response lacks SA, TSi or TSr")
	}
	props, err := ike.ParseSA(saP.Body)
	if err != nil || len(props) != 1 {
		return fmt.Errorf("child SA payload: %v", err)
	}
	ep, esn, ok := c.matchESP(props[0])
	if !ok {
		return errors.New("responder chose an ESP proposal we did not offer")
	}
	if _, err := ike.ParseTS(tsi.Body); err != nil {
		return err
	}
	rsel, err := ike.ParseTS(tsr.Body)
	if err != nil {
		return err
	}
	var routes []netip.Prefix
	for _, s := range rsel {
		for _, p := range s.Prefixes() {
			if slices.ContainsFunc(c.set.RemoteTS, func(q netip.Prefix) bool { return q.Contains(p.Addr()) && q.Bits() <= p.Bits() }) {
				routes = append(routes, p)
			}
		}
	}
	if len(routes) == 0 {
		return errors.New("responder's TSr is outside remote_ts")
	}
	outSPI := binary.BigEndian.Uint32(props[0].SPI)
	i2r, r2i := deriveChild(ike.PRF(sa.prop.PRF), sa.keys.skd, sa.ni, sa.nr, ep)
	out, in, err := newESP(ep, esn, outSPI, sa.inSPI, i2r, r2i)
	if err != nil {
		return err
	}
	var local []netip.Prefix
	if isel, err := ike.ParseTS(tsi.Body); err == nil {
		local = narrow(c.initiatorTSi(), isel)
	}
	if vip, ok := cpReplyAddr(ps); ok {
		sa.vip = vip
		local = []netip.Prefix{netip.PrefixFrom(vip, vip.BitLen())}
	} else if len(c.set.Vips) > 0 {
		return errors.New("asked for a virtual IP, got none")
	}
	if len(local) == 0 {
		local = c.set.LocalTS
	}
	c.publishChild(sa, &child{in: in, out: out, prop: ep, esn: esn, local: local, remote: routes, since: time.Now()})
	return nil
}

// publishChild puts a CHILD SA on the data path and reports the session.
// child is a CHILD SA: its two ESP halves and what was negotiated.
type child struct {
	in     *esp.Inbound
	out    *esp.Outbound
	prop   ESPProposal
	esn    bool
	local  []netip.Prefix // our side's selectors
	remote []netip.Prefix // the peer's: the routes into this instance
	since  time.Time
}

// publishChild makes ch sa's CHILD SA, puts it on the data path and
// reports the session (when it is the first CHILD SA of the session).
func (c *controller) publishChild(sa *ikeSA, ch *child) {
	first := sa.child == nil
	sa.child = ch
	c.failures = 0
	c.publish(sa)
	allowed := new(bart.Lite)
	for _, p := range ch.remote {
		allowed.Insert(p)
	}
	c.a.allowed.Store(allowed)
	if first {
		var addrs []netip.Prefix
		if sa.vip.IsValid() {
			addrs = []netip.Prefix{netip.PrefixFrom(sa.vip, sa.vip.BitLen())}
		}
		c.a.env.ReportSession(protocols.Session{Addrs: addrs, Routes: ch.remote})
	}
	c.log.Info("ipsec: CHILD SA established",
		zap.String("ike", fmt.Sprintf("%s/%s/%s", encrName(sa.prop.Encr, sa.prop.KeyLen), prfName(sa.prop.PRF), dhName(sa.prop.DH))),
		zap.String("esp", encrName(ch.prop.Encr, ch.prop.KeyLen)), zap.Bool("esn", ch.esn),
		zap.String("spi_in", fmt.Sprintf("%08x", ch.in.SPI)), zap.String("spi_out", fmt.Sprintf("%08x", ch.out.SPI)),
		zap.Stringers("routes", ch.remote))
}

// publish puts sa's ESP halves on the data path: the current inbound and
// the one being retired; the held outbound half, or the current one.
func (c *controller) publish(sa *ikeSA) {
	c.snapshot(sa)
	if sa.child == nil {
		c.a.out.Store(nil)
		c.a.inbound.Store(nil)
		return
	}
	set := inboundSAs{sa.child.in}
	if sa.oldIn != nil {
		set = append(set, sa.oldIn)
	}
	c.a.inbound.Store(&set)
	out := sa.child.out
	if sa.holdOut != nil {
		out = sa.holdOut
	}
	c.a.out.Store(out)
}

func (c *controller) authFailed(sa *ikeSA, now time.Time, why string) {
	c.a.ike.AuthFailures.Add(1)
	c.fail(now, why)
}

// onInformational answers an INFORMATIONAL request of the peer.
func (c *controller) onInformational(sa *ikeSA, h ike.Header, ps []ike.Payload, now time.Time) {
	var resp []ike.Payload
	deleteIKE, deleteChild := false, false
	for _, p := range ps {
		if p.Type != ike.PayloadDelete {
			continue
		}
		d, err := ike.ParseDelete(p.Body)
		if err != nil {
			continue
		}
		switch d.Protocol {
		case ike.ProtoIKE:
			deleteIKE = true
		case ike.ProtoESP:
			switch {
			case sa.holdOut != nil && slices.Contains(d.SPIs, sa.holdOut.SPI):
				// The end of a rekey the peer started: its old SA goes,
				// and we send on the new one from now on.
				resp = append(resp, ike.Payload{Type: ike.PayloadDelete, Body: ike.DeleteBody(ike.ProtoESP, sa.oldIn.SPI)})
				sa.holdOut, sa.oldIn = nil, nil
				c.publish(sa)
			case sa.child != nil && slices.Contains(d.SPIs, sa.child.out.SPI):
				deleteChild = true
				resp = append(resp, ike.Payload{Type: ike.PayloadDelete, Body: ike.DeleteBody(ike.ProtoESP, sa.child.in.SPI)})
			}
		}
	}
	if deleteIKE {
		resp = nil
	}
	c.respond(sa, h.Exchange, h.MessageID, resp)
	if sa != c.sa {
		// A rekeyed IKE SA: the CHILD SAs live on in its successor.
		if deleteIKE && c.retiring == sa {
			c.retiring = nil
		}
		return
	}
	switch {
	case deleteIKE:
		c.log.Info("ipsec: peer deleted the IKE SA")
		c.down(sa)
		c.sa = nil
		c.retryAt = now.Add(retryMin)
	case deleteChild:
		c.log.Info("ipsec: peer deleted the CHILD SA; establishing afresh")
		c.rekeyIKE(sa, now)
	}
}

// down removes an IKE SA's CHILD SA from the data path.
func (c *controller) down(sa *ikeSA) {
	if sa.child == nil {
		return
	}
	c.a.out.Store(nil)
	c.a.inbound.Store(nil)
	sa.child, sa.oldIn, sa.holdOut = nil, nil, nil
	c.snapshot(nil)
	c.a.env.ReportSession(protocols.Session{})
}

// fail abandons the current IKE SA and schedules a new attempt.
func (c *controller) fail(now time.Time, why string) {
	c.a.ike.Failures.Add(1)
	c.failures++
	backoff := retryMin << min(c.failures-1, 5)
	backoff = min(backoff, retryMax)
	c.log.Warn("ipsec: IKE SA failed", zap.String("why", why), zap.Duration("retry_in", backoff))
	if c.sa != nil {
		c.down(c.sa)
	}
	c.sa = nil
	c.retryAt = now.Add(backoff)
}

// abandon deletes an established IKE SA whose CHILD SA failed (not
// waiting for the answer) and schedules a new attempt after the backoff.
func (c *controller) abandon(sa *ikeSA, now time.Time, why string) {
	c.sendDelete(sa)
	c.fail(now, why)
}

func (c *controller) sendDelete(sa *ikeSA) {
	if sa.keys == nil {
		return
	}
	h := ike.Header{SPIi: sa.spii, SPIr: sa.spir, Exchange: ike.INFORMATIONAL, Flags: sa.flags(), MessageID: sa.nextID}
	sa.nextID++
	_ = c.sendWire(withMarker(sa.sendKey().Seal(h, []ike.Payload{{Type: ike.PayloadDelete, Body: ike.DeleteBody(ike.ProtoIKE)}})), true)
}

// rekeyIKE deletes the IKE SA (not waiting for the answer) and establishes
// a new one at once.
func (c *controller) rekeyIKE(sa *ikeSA, now time.Time) {
	c.sendDelete(sa)
	c.down(sa)
	c.sa = nil
	c.initiate(now)
}

func (c *controller) tick(now time.Time) {
	c.expireHalfOpen(now)
	sa := c.sa
	if sa == nil {
		if c.set.Mode == "initiator" && !now.Before(c.retryAt) {
			c.initiate(now)
		}
		return
	}
	if p := sa.req; p != nil && !now.Before(p.due) {
		if p.tries >= retransmitTries {
			c.fail(now, "peer does not answer")
			return
		}
		c.a.ike.Retransmits.Add(1)
		_ = c.transmit(p, now)
	}
	if sa.state != stateEstablished {
		return
	}
	c.rekeyTimers(sa, now)
	if c.sa != sa {
		return
	}
	if now.Sub(c.lastKA) >= c.set.Keepalive {
		c.lastKA = now
		_ = c.a.sendNATT([]byte{0xff})
	}
	last := sa.lastRecv
	if t := c.a.lastIn.Load(); t > last.UnixNano() {
		last = time.Unix(0, t)
	}
	if sa.req == nil && now.Sub(last) >= c.set.DPDDelay {
		c.request(sa, ike.INFORMATIONAL, nil, now, nil)
	}
}

// closeGracefully deletes the IKE SA at the peer and waits for the answer
// up to deleteTimeout.
func (c *controller) closeGracefully() {
	sa := c.sa
	if sa == nil || sa.keys == nil {
		if sa != nil {
			c.down(sa)
		}
		return
	}
	c.down(sa)
	now := time.Now()
	done := false
	sa.req = nil
	sa.state = stateDeleting
	c.request(sa, ike.INFORMATIONAL, []ike.Payload{{Type: ike.PayloadDelete, Body: ike.DeleteBody(ike.ProtoIKE)}}, now,
		func(ike.Header, []ike.Payload) { done = true })
	timeout := time.NewTimer(deleteTimeout)
	defer timeout.Stop()
	for !done {
		select {
		case d := <-c.queue:
			c.handle(d, time.Now())
		case <-timeout.C:
			c.log.Info("ipsec: no answer to the Delete")
			return
		}
		if c.sa == nil {
			return
		}
	}
	c.log.Info("ipsec: IKE SA deleted")
}

func notifyName(code uint16) string {
	switch code {
	case ike.NotifyAuthenticationFailed:
		return "AUTHENTICATION_FAILED"
	case ike.NotifyNoProposalChosen:
		return "NO_PROPOSAL_CHOSEN"
	case ike.NotifyTSUnacceptable:
		return "TS_UNACCEPTABLE"
	case ike.NotifyInvalidKE:
		return "INVALID_KE_PAYLOAD"
	case ike.NotifyInvalidSyntax:
		return "INVALID_SYNTAX"
	case ike.NotifyNoAdditionalSAs:
		return "NO_ADDITIONAL_SAS"
	case ike.NotifyTemporaryFailure:
		return "TEMPORARY_FAILURE"
	}
	return fmt.Sprintf("notify %d", code)
}

func encrName(id, bits uint16) string {
	if id == ike.ENCR_CHACHA20_POLY1305 {
		return "CHACHA20_POLY1305"
	}
	return fmt.Sprintf("AES_GCM_16_%d", bits)
}

func prfName(id uint16) string {
	if id == ike.PRF_HMAC_SHA2_384 {
		return "PRF_HMAC_SHA2_384"
	}
	return "PRF_HMAC_SHA2_256"
}

func dhName(id uint16) string {
	if id == ike.DH_ECP256 {
		return "ECP_256"
	}
	return "CURVE_25519"
}
