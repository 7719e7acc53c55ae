package ipsec

// The responder's side of IKE_SA_INIT and IKE_AUTH (mode: responder), in
// the IKE goroutine:
//
//  1. IKE_SA_INIT request from remote_addrs (any source port): a
//     retransmission gets the cached response. Past cookieThreshold
//     half-open SAs, a request without a valid COOKIE gets one to return
//     (RFC 7296 §2.6: the hash of its nonce, address and SPI under a secret
//     of ours, so no state is kept); past maxHalfOpen it is dropped.
//  2. The first of the initiator's proposals we also have is chosen
//     (NO_PROPOSAL_CHOSEN otherwise); a KE of another group than the
//     chosen proposal's gets INVALID_KE_PAYLOAD naming it (no state kept).
//  3. Keys are derived and the SA is kept half-open (bounded, expiring
//     after halfOpenTimeout) until IKE_AUTH.
//  4. IKE_AUTH on the NAT-T port: IDi must be remote_id and AUTH must verify
//     with the PSK (AUTHENTICATION_FAILED, counted, otherwise); the first
//     ESP proposal we have is chosen, the selectors narrowed to ours
//     (TS_UNACCEPTABLE when nothing is left). The response carries IDr,
//     AUTH, SA, TSi, TSr; the CHILD SA goes to the data path and the
//     initiator's NAT-T address becomes where ESP is sent. An IKE SA
//     established earlier with the same peer is replaced.

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"go.uber.org/zap"

	"switchyard/protocols/ipsec/ike"
	"switchyard/protocols/udpbind"
)

// cookie is the COOKIE we demand from an initiator.
func (c *controller) cookie(ni []byte, from netip.AddrPort, spii uint64) []byte {
	m := hmac.New(sha256.New, c.cookieSecret)
	m.Write(ni)
	m.Write(from.Addr().AsSlice())
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], spii)
	m.Write(b[:])
	return m.Sum(nil)
}

// respondInit sends an unencrypted IKE_SA_INIT response of only a notify.
func (c *controller) respondInitNotify(h ike.Header, to netip.AddrPort, natt bool, typ uint16, data []byte) {
	msg := ike.Encode(ike.Header{SPIi: h.SPIi, Exchange: ike.IKE_SA_INIT, Flags: ike.FlagResponse},
		[]ike.Payload{{Type: ike.PayloadNotify, Body: ike.NotifyBody(0, nil, typ, data)}})
	c.sendTo(msg, to, natt)
}

// sendTo sends an IKE message to an address (with the marker on the NAT-T
// port).
func (c *controller) sendTo(msg []byte, to netip.AddrPort, natt bool) {
	var err error
	if natt {
		err = c.a.bind.Send([][]byte{withMarker(msg)}, udpbind.NewEndpoint(to))
	} else {
		_, err = c.c500.WriteToUDPAddrPort(msg, to)
	}
	if err != nil {
		c.log.Debug("ipsec: IKE send", zap.Error(err))
	}
}

func (c *controller) onInitRequest(h ike.Header, d ikeDatagram, now time.Time) {
	if h.SPIr != 0 || h.MessageID != 0 || h.Flags&ike.FlagInitiator == 0 {
		c.bad("IKE_SA_INIT request with responder SPI, message ID or without the I flag")
		return
	}
	if hs := c.halfOpen[h.SPIi]; hs != nil {
		if string(hs.initReq) == string(d.b) {
			c.sendTo(hs.initResp, d.from, d.natt) // a retransmission
		}
		return
	}
	ps, err := ike.ParsePayloads(h.NextPayload, d.b[ike.HeaderLen:], nil)
	if err != nil {
		c.bad("%v", err)
		return
	}
	saP, ok1 := ike.Find(ps, ike.PayloadSA)
	keP, ok2 := ike.Find(ps, ike.PayloadKE)
	nP, ok3 := ike.Find(ps, ike.PayloadNonce)
	if !ok1 || !ok2 || !ok3 || len(nP.Body) < minNonceLen || len(nP.Body) > maxNonceLen {
		c.bad("IKE_SA_INIT request lacks SA, KE or a good Nonce")
		return
	}
	if len(c.halfOpen) >= maxHalfOpen {
		c.a.ike.HalfOpenDropped.Add(1)
		return
	}
	if len(c.halfOpen) >= cookieThreshold {
		want := c.cookie(nP.Body, d.from, h.SPIi)
		got := []byte(nil)
		for _, n := range ike.Notifies(ps) {
			if n.Type == ike.NotifyCookie {
				got = n.Data
			}
		}
		if !hmac.Equal(got, want) {
			c.a.ike.CookiesSent.Add(1)
			c.respondInitNotify(h, d.from, d.natt, ike.NotifyCookie, want)
			return
		}
	}
	props, err := ike.ParseSA(saP.Body)
	if err != nil {
		c.bad("%v", err)
		return
	}
	var chosen ike.Proposal
	var prop IKEProposal
	found := false
	for _, p := range props {
		for _, mine := range c.set.Proposals {
			if t, ok := pickIKE(p, mine); ok {
				chosen, prop, found = t, mine, true
				break
			}
		}
		if found {
			break
		}
	}
	if !found {
		c.respondInitNotify(h, d.from, d.natt, ike.NotifyNoProposalChosen, nil)
		c.log.Warn("ipsec: no IKE proposal in common with the initiator")
		return
	}
	group, pub, err := ike.ParseKE(keP.Body)
	if err != nil {
		c.bad("%v", err)
		return
	}
	if group != prop.DH {
		c.a.ike.InvalidKESent.Add(1)
		c.respondInitNotify(h, d.from, d.natt, ike.NotifyInvalidKE, binary.BigEndian.AppendUint16(nil, prop.DH))
		return
	}
	priv, ourPub, err := newDH(group)
	if err != nil {
		c.bad("%v", err)
		return
	}
	shared, err := dhShared(group, priv, pub)
	if err != nil {
		c.bad("%v", err)
		return
	}
	sa := &ikeSA{spii: h.SPIi, spir: randSPI(), prop: prop, ni: append([]byte(nil), nP.Body...), nr: randBytes(nonceLen),
		initReq: d.b, state: stateInit, natt: d.natt, lastRecv: now, peerID: 1}
	sa.keys, err = deriveIKE(prop, sa.ni, sa.nr, shared, sa.spii, sa.spir)
	if err != nil {
		c.bad("%v", err)
		return
	}
	chosen.SPI = nil
	resp := ike.Encode(ike.Header{SPIi: sa.spii, SPIr: sa.spir, Exchange: ike.IKE_SA_INIT, Flags: ike.FlagResponse}, append([]ike.Payload{
		{Type: ike.PayloadSA, Body: ike.AppendSA(nil, []ike.Proposal{chosen})},
		{Type: ike.PayloadKE, Body: ike.KEBody(group, ourPub)},
		{Type: ike.PayloadNonce, Body: sa.nr},
		// A source hash that matches nothing: both ends encapsulate.
		{Type: ike.PayloadNotify, Body: ike.NotifyBody(0, nil, ike.NotifyNATDetectionSourceIP, randBytes(20))},
		{Type: ike.PayloadNotify, Body: ike.NotifyBody(0, nil, ike.NotifyNATDetectionDestIP, natHash(sa.spii, sa.spir, d.from))},
		{Type: ike.PayloadNotify, Body: ike.NotifyBody(0, nil, ike.NotifySignatureHashAlgorithms, signatureHashes)},
	}, c.certReqs()...))
	sa.initResp = resp
	sa.established = now // half-open since
	c.halfOpen[sa.spii] = sa
	c.sendTo(resp, d.from, d.natt)
}

// pickIKE reports whether proposal p offers mine, and returns the one-of-
// each proposal to answer with.
func pickIKE(p ike.Proposal, mine IKEProposal) (ike.Proposal, bool) {
	if p.Protocol != ike.ProtoIKE {
		return ike.Proposal{}, false
	}
	var e, f, g bool
	for _, t := range p.Transforms {
		switch {
		case t.Type == ike.TransformENCR && t.ID == mine.Encr && t.KeyLen == mine.KeyLen:
			e = true
		case t.Type == ike.TransformPRF && t.ID == mine.PRF:
			f = true
		case t.Type == ike.TransformDH && t.ID == mine.DH:
			g = true
		}
	}
	if !e || !f || !g {
		return ike.Proposal{}, false
	}
	return ike.Proposal{Num: p.Num, Protocol: ike.ProtoIKE, Transforms: []ike.Transform{
		{Type: ike.TransformENCR, ID: mine.Encr, KeyLen: mine.KeyLen},
		{Type: ike.TransformPRF, ID: mine.PRF},
		{Type: ike.TransformDH, ID: mine.DH},
	}}, true
}

// pickESP returns the first of the initiator's ESP proposals we have.
func (c *controller) pickESP(props []ike.Proposal) (ike.Proposal, ESPProposal, bool, bool) {
	for _, p := range props {
		if p.Protocol != ike.ProtoESP || len(p.SPI) != 4 {
			continue
		}
		for _, mine := range c.set.ESPProposals {
			kb := mine.KeyLen
			if mine.Encr == ike.ENCR_CHACHA20_POLY1305 {
				kb = 0
			}
			hasEnc := false
			esn, hasESN := uint16(0), false
			offered := map[uint16]bool{}
			for _, t := range p.Transforms {
				switch t.Type {
				case ike.TransformENCR:
					if t.ID == mine.Encr && t.KeyLen == kb {
						hasEnc = true
					}
				case ike.TransformESN:
					offered[t.ID] = true
				}
			}
			if len(offered) == 0 {
				offered[ike.ESN_NONE] = true
			}
			for _, e := range mine.ESN {
				if offered[e] {
					esn, hasESN = e, true
					break
				}
			}
			if hasEnc && hasESN {
				out := ike.Proposal{Num: p.Num, Protocol: ike.ProtoESP, SPI: p.SPI, Transforms: []ike.Transform{
					{Type: ike.TransformENCR, ID: mine.Encr, KeyLen: kb}, {Type: ike.TransformESN, ID: esn}}}
				return out, mine, esn == ike.ESN_ON, true
			}
		}
	}
	return ike.Proposal{}, ESPProposal{}, false, false
}

// narrow returns our prefixes within the peer's selectors (or the peer's
// narrower prefixes within ours).
func narrow(ours []netip.Prefix, theirs []ike.Selector) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range theirs {
		if s.Proto != 0 || s.StartPort != 0 || s.EndPort != 0xffff {
			continue
		}
		for _, q := range s.Prefixes() {
			for _, p := range ours {
				var r netip.Prefix
				switch {
				case p.Bits() >= q.Bits() && q.Contains(p.Addr()):
					r = p
				case q.Bits() > p.Bits() && p.Contains(q.Addr()):
					r = q
				default:
					continue
				}
				if !slices.Contains(out, r) {
					out = append(out, r)
				}
			}
		}
	}
	return out
}

func (c *controller) onAuthRequest(sa *ikeSA, h ike.Header, d ikeDatagram, now time.Time) {
	if h.Exchange != ike.IKE_AUTH || h.MessageID != 1 || !d.natt {
		c.bad("half-open SA: exchange %d, message %d", h.Exchange, h.MessageID)
		return
	}
	outer, err := ike.ParsePayloads(h.NextPayload, d.b[ike.HeaderLen:], nil)
	if err != nil || len(outer) != 1 || outer[0].Type != ike.PayloadSK {
		c.bad("IKE_AUTH: %v", err)
		return
	}
	sk := outer[0]
	first := d.b[len(d.b)-len(sk.Body)-4]
	ps, err := sa.keys.ei.Open(d.b, sk, first)
	if err != nil {
		c.bad("IKE_AUTH: %v", err)
		return
	}
	delete(c.halfOpen, sa.spii)
	sa.natt = true
	fail := func(code uint16, why string) {
		// Answered where the request came from: ESP (and an SA already
		// up) keep their address until an AUTH verifies.
		msg := sa.sendKey().Seal(ike.Header{SPIi: sa.spii, SPIr: sa.spir, Exchange: ike.IKE_AUTH, Flags: ike.FlagResponse,
			MessageID: h.MessageID}, []ike.Payload{{Type: ike.PayloadNotify, Body: ike.NotifyBody(0, nil, code, nil)}})
		c.sendTo(msg, d.from, true)
		c.a.ike.Failures.Add(1)
		c.log.Warn("ipsec: IKE_AUTH refused", zap.String("why", why), zap.String("notify", notifyName(code)))
	}
	idi, ok1 := ike.Find(ps, ike.PayloadIDi)
	authP, ok2 := ike.Find(ps, ike.PayloadAUTH)
	if !ok1 || !ok2 || len(idi.Body) < 4 {
		fail(ike.NotifyAuthenticationFailed, "IDi or AUTH missing (EAP is not supported)")
		c.a.ike.AuthFailures.Add(1)
		return
	}
	peerID := Identity{Type: idi.Body[0], Data: idi.Body[4:]}
	prf := ike.PRF(sa.prop.PRF)
	if !peerID.Equal(c.set.RemoteID) {
		c.a.ike.AuthFailures.Add(1)
		fail(ike.NotifyAuthenticationFailed, fmt.Sprintf("initiator is %q, want %q", peerID, c.set.RemoteID))
		return
	}
	if err := c.checkAuth(prf, ps, peerID, authP.Body, sa.initReq, sa.nr, sa.keys.skpi, idi.Body); err != nil {
		c.a.ike.AuthFailures.Add(1)
		fail(ike.NotifyAuthenticationFailed, fmt.Sprintf("initiator %q: %v", peerID, err))
		return
	}
	idr := ike.IDBody(c.set.LocalID.Type, c.set.LocalID.Data)
	auth, err := c.ourAuth(prf, sa.initResp, sa.ni, sa.keys.skpr, idr)
	if err != nil {
		fail(ike.NotifyAuthenticationFailed, fmt.Sprintf("sign AUTH: %v", err))
		return
	}
	resp := []ike.Payload{{Type: ike.PayloadIDr, Body: idr}}
	if pk := c.set.Pubkey; pk != nil {
		resp = append(resp, pk.certPayloads()...)
	}
	resp = append(resp, ike.Payload{Type: ike.PayloadAUTH, Body: auth})
	// The IKE SA is up; an older one with this peer goes, and ESP goes
	// where this one's IKE_AUTH came from.
	if old := c.sa; old != nil {
		c.sendDelete(old)
		c.down(old)
	}
	c.a.peerNATT.Store(udpbind.NewEndpoint(d.from))
	c.sa = sa
	sa.state = stateEstablished
	sa.established = now
	sa.nextID = 0
	sa.peerID = 2
	c.a.ike.Established.Add(1)
	childErr := func(code uint16, why string) {
		resp = append(resp, ike.Payload{Type: ike.PayloadNotify, Body: ike.NotifyBody(0, nil, code, nil)})
		c.respond(sa, ike.IKE_AUTH, h.MessageID, resp)
		c.log.Warn("ipsec: CHILD SA refused", zap.String("why", why), zap.String("notify", notifyName(code)))
	}
	saP, ok1 := ike.Find(ps, ike.PayloadSA)
	tsi, ok2 := ike.Find(ps, ike.PayloadTSi)
	tsr, ok3 := ike.Find(ps, ike.PayloadTSr)
	if !ok1 || !ok2 || !ok3 {
		childErr(ike.NotifyNoProposalChosen, "no SA, TSi or TSr (childless IKE SAs are not supported)")
		return
	}
	props, err1 := ike.ParseSA(saP.Body)
	isel, err2 := ike.ParseTS(tsi.Body)
	rsel, err3 := ike.ParseTS(tsr.Body)
	if err1 != nil || err2 != nil || err3 != nil {
		childErr(ike.NotifyInvalidSyntax, "child SA payloads")
		return
	}
	chosen, ep, esn, ok := c.pickESP(props)
	if !ok {
		childErr(ike.NotifyNoProposalChosen, "no ESP proposal in common")
		return
	}
	remoteTS := c.set.RemoteTS
	var cpReply []ike.Payload
	if c.set.Pool.IsValid() {
		vip, ok := c.assignVIP(ps)
		if !ok {
			childErr(ike.NotifyFailedCPRequired, "the initiator asked for no virtual IP, and pool is set")
			return
		}
		sa.vip = vip
		remoteTS = []netip.Prefix{netip.PrefixFrom(vip, vip.BitLen())}
		cpReply = []ike.Payload{{Type: ike.PayloadCP, Body: ike.AppendCP(nil, ike.CFGReply, []ike.CPAttr{
			{Type: ike.AttrInternalIP4Address, Value: vip.AsSlice()}})}}
	}
	remote, local := narrow(remoteTS, isel), narrow(c.set.LocalTS, rsel)
	if len(remote) == 0 || len(local) == 0 {
		childErr(ike.NotifyTSUnacceptable, "traffic selectors outside local_ts/remote_ts")
		return
	}
	outSPI := binary.BigEndian.Uint32(chosen.SPI)
	sa.inSPI = randESPSPI()
	i2r, r2i := deriveChild(prf, sa.keys.skd, sa.ni, sa.nr, ep)
	out, in, err := newESP(ep, esn, outSPI, sa.inSPI, r2i, i2r)
	if err != nil {
		childErr(ike.NotifyNoProposalChosen, err.Error())
		return
	}
	chosen.SPI = binary.BigEndian.AppendUint32(nil, sa.inSPI)
	resp = append(resp, cpReply...)
	resp = append(resp,
		ike.Payload{Type: ike.PayloadSA, Body: ike.AppendSA(nil, []ike.Proposal{chosen})},
		ike.Payload{Type: ike.PayloadTSi, Body: ike.AppendTS(nil, selectors(remote))},
		ike.Payload{Type: ike.PayloadTSr, Body: ike.AppendTS(nil, selectors(local))},
	)
	c.respond(sa, ike.IKE_AUTH, h.MessageID, resp)
	c.publishChild(sa, &child{in: in, out: out, prop: ep, esn: esn, local: local, remote: remote, since: now})
}

// expireHalfOpen drops half-open SAs older than halfOpenTimeout.
func (c *controller) expireHalfOpen(now time.Time) {
	for spi, sa := range c.halfOpen {
		if now.Sub(sa.established) >= halfOpenTimeout {
			delete(c.halfOpen, spi)
		}
	}
}
