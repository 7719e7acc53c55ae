package ipsec

// Rekeying with CREATE_CHILD_SA (RFC 7296 §1.3.2, §1.3.3, §2.8), either
// end starting it, make-before-break so that no packet is lost:
//
//  1. CHILD SA, ours at child_rekey_time (or when a 32-bit sequence number
//     nears its end): N(REKEY_SA) naming our inbound SPI, the ESP
//     proposals with a new inbound SPI, a nonce and the selectors. On the
//     answer the new inbound half joins the old one on the data path and
//     the outbound half switches at once; then an INFORMATIONAL deletes the
//     old SA, and its inbound half goes when the peer has answered.
//  2. CHILD SA, the peer's: we answer with our new inbound SPI and nonce;
//     the new inbound half joins the old one, but we keep sending on the
//     old outbound half until the peer deletes the old SA (or
//     rekeyHoldTimeout passes), so nothing we send arrives before the peer
//     knows the new SA.
//  3. IKE SA, ours at rekey_time: SA (IKE, a new SPI), nonce and KE; the
//     answer gives SKEYSEED = prf(SK_d, g^ir | Ni | Nr) and keys with the
//     new SPIs; the CHILD SA moves to the new IKE SA and the old one is
//     deleted (its answer awaited as `retiring`).
//  4. IKE SA, the peer's: the same, answered; the peer deletes the old one.
//
// Rekey times are jittered (up to rekeyJitter earlier, per SA) so that both
// ends rarely rekey at once. Simultaneous rekeys are not resolved by nonces
// (RFC 7296 §2.8.1, §2.25.1): a peer's rekey that arrives while a request
// of ours is outstanding is refused with TEMPORARY_FAILURE, and the peer
// retries later (§2.25).

import (
	"encoding/binary"
	"fmt"
	"time"

	"go.uber.org/zap"

	"switchyard/protocols/ipsec/ike"
)

// rekeyTimers starts the rekeys that are due on sa (one request at a time).
func (c *controller) rekeyTimers(sa *ikeSA, now time.Time) {
	if sa.holdOut != nil && now.Sub(sa.child.since) >= rekeyHoldTimeout {
		// The peer never deleted its old SA: send on the new one anyway;
		// the old inbound half stays until the peer deletes it.
		sa.holdOut = nil
		c.publish(sa)
	}
	if sa.req != nil || sa.state != stateEstablished {
		return
	}
	if now.Sub(sa.established) >= jittered(c.set.RekeyTime, sa.spii) {
		c.rekeyIKESA(sa, now)
		return
	}
	ch := sa.child
	if ch == nil || sa.oldIn != nil || sa.holdOut != nil {
		return
	}
	if now.Sub(ch.since) >= jittered(c.set.ChildRekey, uint64(ch.in.SPI)) || (!ch.out.ESN && ch.out.Seq() > seqRekeyAt) {
		c.rekeyChild(sa, now)
	}
}

// jittered is d less up to rekeyJitter of it, picked by seed (an SPI, so
// the same for one SA and different at the two ends): RFC 7296 §2.8.1 asks
// for jittered rekey times, so that both ends rarely rekey at once.
func jittered(d time.Duration, seed uint64) time.Duration {
	seed ^= seed >> 31
	seed *= 0x9e3779b97f4a7c15
	return d - time.Duration(float64(d)*rekeyJitter*float64(seed>>11)/float64(1<<53))
}

func spiBytes(spi uint32) []byte { return binary.BigEndian.AppendUint32(nil, spi) }

// rekeyChild starts a rekey of sa's CHILD SA.
func (c *controller) rekeyChild(sa *ikeSA, now time.Time) {
	old := sa.child
	newIn := randESPSPI()
	ni := randBytes(nonceLen)
	inner := []ike.Payload{
		{Type: ike.PayloadNotify, Body: ike.NotifyBody(ike.ProtoESP, spiBytes(old.in.SPI), ike.NotifyRekeySA, nil)},
		{Type: ike.PayloadSA, Body: ike.AppendSA(nil, c.espProposals(newIn))},
		{Type: ike.PayloadNonce, Body: ni},
		{Type: ike.PayloadTSi, Body: ike.AppendTS(nil, selectors(old.local))},
		{Type: ike.PayloadTSr, Body: ike.AppendTS(nil, selectors(old.remote))},
	}
	c.request(sa, ike.CREATE_CHILD_SA, inner, now, func(h ike.Header, ps []ike.Payload) {
		c.onChildRekeyed(sa, old, newIn, ni, ps, time.Now())
	})
}

func (c *controller) onChildRekeyed(sa *ikeSA, old *child, newIn uint32, ni []byte, ps []ike.Payload, now time.Time) {
	if sa.child != old {
		return
	}
	retry := func(why string) {
		c.log.Warn("ipsec: CHILD SA rekey failed; retrying later", zap.String("why", why))
		old.since = now.Add(rekeyRetry - c.set.ChildRekey)
	}
	if code, ok := ike.ErrorNotify(ps); ok {
		retry(notifyName(code))
		return
	}
	saP, ok1 := ike.Find(ps, ike.PayloadSA)
	nP, ok2 := ike.Find(ps, ike.PayloadNonce)
	if !ok1 || !ok2 || len(nP.Body) < minNonceLen || len(nP.Body) > maxNonceLen {
		retry("answer lacks SA or Nonce")
		return
	}
	props, err := ike.ParseSA(saP.Body)
	if err != nil || len(props) != 1 {
		retry(fmt.Sprintf("SA: %v", err))
		return
	}
	ep, esn, ok := c.matchESP(props[0])
	if !ok {
		retry("an ESP proposal we did not offer")
		return
	}
	i2r, r2i := deriveChild(ike.PRF(sa.prop.PRF), sa.keys.skd, ni, nP.Body, ep)
	out, in, err := newESP(ep, esn, binary.BigEndian.Uint32(props[0].SPI), newIn, i2r, r2i)
	if err != nil {
		retry(err.Error())
		return
	}
	c.a.ike.ChildRekeys.Add(1)
	sa.oldIn = old.in
	c.publishChild(sa, &child{in: in, out: out, prop: ep, esn: esn, local: old.local, remote: old.remote, since: now})
	// The old SA goes; its inbound half stays until the peer has answered.
	c.request(sa, ike.INFORMATIONAL, []ike.Payload{{Type: ike.PayloadDelete, Body: ike.DeleteBody(ike.ProtoESP, old.in.SPI)}}, now,
		func(ike.Header, []ike.Payload) {
			sa.oldIn = nil
			c.publish(sa)
		})
}

// onCreateChild answers the peer's CREATE_CHILD_SA request.
func (c *controller) onCreateChild(sa *ikeSA, h ike.Header, ps []ike.Payload, now time.Time) {
	refuse := func(code uint16, why string) {
		c.log.Warn("ipsec: CREATE_CHILD_SA refused", zap.String("why", why), zap.String("notify", notifyName(code)))
		c.respond(sa, h.Exchange, h.MessageID, []ike.Payload{{Type: ike.PayloadNotify, Body: ike.NotifyBody(0, nil, code, nil)}})
	}
	if sa.retired || sa != c.sa {
		refuse(ike.NotifyTemporaryFailure, "the IKE SA is being replaced")
		return
	}
	saP, ok1 := ike.Find(ps, ike.PayloadSA)
	nP, ok2 := ike.Find(ps, ike.PayloadNonce)
	if !ok1 || !ok2 || len(nP.Body) < minNonceLen || len(nP.Body) > maxNonceLen {
		refuse(ike.NotifyInvalidSyntax, "no SA or Nonce")
		return
	}
	props, err := ike.ParseSA(saP.Body)
	if err != nil {
		refuse(ike.NotifyInvalidSyntax, err.Error())
		return
	}
	if props[0].Protocol == ike.ProtoIKE {
		c.onIKERekeyRequest(sa, h, ps, props, nP.Body, now, refuse)
		return
	}
	var rekeyed uint32
	for _, n := range ike.Notifies(ps) {
		if n.Type == ike.NotifyRekeySA && n.Protocol == ike.ProtoESP && len(n.SPI) == 4 {
			rekeyed = binary.BigEndian.Uint32(n.SPI)
		}
	}
	old := sa.child
	switch {
	case old == nil || rekeyed == 0 || rekeyed != old.out.SPI:
		refuse(ike.NotifyNoAdditionalSAs, fmt.Sprintf("only the rekey of the one CHILD SA is supported (REKEY_SA %08x)", rekeyed))
		return
	case sa.oldIn != nil || sa.holdOut != nil || sa.req != nil:
		refuse(ike.NotifyTemporaryFailure, "a rekey is under way")
		return
	}
	if _, ok := ike.Find(ps, ike.PayloadKE); ok {
		refuse(ike.NotifyNoProposalChosen, "PFS (a KE in a CHILD SA rekey) is not supported")
		return
	}
	chosen, ep, esn, ok := c.pickESP(props)
	if !ok {
		refuse(ike.NotifyNoProposalChosen, "no ESP proposal in common")
		return
	}
	nr := randBytes(nonceLen)
	newIn := randESPSPI()
	i2r, r2i := deriveChild(ike.PRF(sa.prop.PRF), sa.keys.skd, nP.Body, nr, ep)
	out, in, err := newESP(ep, esn, binary.BigEndian.Uint32(chosen.SPI), newIn, r2i, i2r)
	if err != nil {
		refuse(ike.NotifyNoProposalChosen, err.Error())
		return
	}
	chosen.SPI = spiBytes(newIn)
	c.respond(sa, h.Exchange, h.MessageID, []ike.Payload{
		{Type: ike.PayloadSA, Body: ike.AppendSA(nil, []ike.Proposal{chosen})},
		{Type: ike.PayloadNonce, Body: nr},
		{Type: ike.PayloadTSi, Body: ike.AppendTS(nil, selectors(old.remote))},
		{Type: ike.PayloadTSr, Body: ike.AppendTS(nil, selectors(old.local))},
	})
	c.a.ike.ChildRekeys.Add(1)
	sa.oldIn, sa.holdOut = old.in, old.out
	c.publishChild(sa, &child{in: in, out: out, prop: ep, esn: esn, local: old.local, remote: old.remote, since: now})
}

// ikeProposalsWithSPI are our IKE proposals carrying spi (an IKE rekey).
func (c *controller) ikeProposalsWithSPI(spi uint64) []ike.Proposal {
	var out []ike.Proposal
	for i, p := range c.set.Proposals {
		out = append(out, ike.Proposal{Num: uint8(i + 1), Protocol: ike.ProtoIKE, SPI: binary.BigEndian.AppendUint64(nil, spi),
			Transforms: []ike.Transform{{Type: ike.TransformENCR, ID: p.Encr, KeyLen: p.KeyLen},
				{Type: ike.TransformPRF, ID: p.PRF}, {Type: ike.TransformDH, ID: p.DH}}})
	}
	return out
}

// rekeyIKESA starts a rekey of the IKE SA, in the group it uses now.
func (c *controller) rekeyIKESA(sa *ikeSA, now time.Time) {
	spi := randSPI()
	ni := randBytes(nonceLen)
	priv, pub, err := newDH(sa.prop.DH)
	if err != nil {
		c.log.Warn("ipsec: IKE rekey", zap.Error(err))
		return
	}
	inner := []ike.Payload{
		{Type: ike.PayloadSA, Body: ike.AppendSA(nil, c.ikeProposalsWithSPI(spi))},
		{Type: ike.PayloadNonce, Body: ni},
		{Type: ike.PayloadKE, Body: ike.KEBody(sa.prop.DH, pub)},
	}
	c.request(sa, ike.CREATE_CHILD_SA, inner, now, func(h ike.Header, ps []ike.Payload) {
		now := time.Now()
		retry := func(why string) {
			c.log.Warn("ipsec: IKE SA rekey failed; retrying later", zap.String("why", why))
			sa.established = now.Add(rekeyRetry - c.set.RekeyTime)
		}
		if code, ok := ike.ErrorNotify(ps); ok {
			retry(notifyName(code))
			return
		}
		saP, ok1 := ike.Find(ps, ike.PayloadSA)
		nP, ok2 := ike.Find(ps, ike.PayloadNonce)
		keP, ok3 := ike.Find(ps, ike.PayloadKE)
		if !ok1 || !ok2 || !ok3 || len(nP.Body) < minNonceLen || len(nP.Body) > maxNonceLen {
			retry("answer lacks SA, Nonce or KE")
			return
		}
		props, err := ike.ParseSA(saP.Body)
		if err != nil || len(props) != 1 || len(props[0].SPI) != 8 {
			retry(fmt.Sprintf("SA: %v", err))
			return
		}
		p := props[0]
		p.SPI = nil
		prop, ok := c.matchIKE(p)
		group, kePub, err := ike.ParseKE(keP.Body)
		if !ok || err != nil || group != prop.DH || group != sa.prop.DH {
			retry("a proposal or group we did not offer")
			return
		}
		shared, err := dhShared(group, priv, kePub)
		if err != nil {
			retry(err.Error())
			return
		}
		c.replaceIKESA(sa, true, spi, binary.BigEndian.Uint64(props[0].SPI), prop, ni, nP.Body, shared, now)
	})
}

// onIKERekeyRequest answers the peer's rekey of the IKE SA.
func (c *controller) onIKERekeyRequest(sa *ikeSA, h ike.Header, ps []ike.Payload, props []ike.Proposal, ni []byte, now time.Time, refuse func(uint16, string)) {
	if sa.req != nil {
		refuse(ike.NotifyTemporaryFailure, "a request of ours is outstanding")
		return
	}
	keP, ok := ike.Find(ps, ike.PayloadKE)
	if !ok {
		refuse(ike.NotifyInvalidSyntax, "IKE rekey without KE")
		return
	}
	var chosen ike.Proposal
	var prop IKEProposal
	found := false
	for _, p := range props {
		if len(p.SPI) != 8 {
			continue
		}
		for _, mine := range c.set.Proposals {
			if t, ok := pickIKE(p, mine); ok {
				chosen, prop, found = t, mine, true
				chosen.SPI = p.SPI
				break
			}
		}
		if found {
			break
		}
	}
	if !found {
		refuse(ike.NotifyNoProposalChosen, "no IKE proposal in common")
		return
	}
	group, pub, err := ike.ParseKE(keP.Body)
	if err != nil || group != prop.DH {
		c.respond(sa, h.Exchange, h.MessageID, []ike.Payload{{Type: ike.PayloadNotify,
			Body: ike.NotifyBody(0, nil, ike.NotifyInvalidKE, binary.BigEndian.AppendUint16(nil, prop.DH))}})
		return
	}
	priv, ourPub, err := newDH(group)
	if err != nil {
		refuse(ike.NotifyNoProposalChosen, err.Error())
		return
	}
	shared, err := dhShared(group, priv, pub)
	if err != nil {
		refuse(ike.NotifyInvalidSyntax, err.Error())
		return
	}
	theirSPI := binary.BigEndian.Uint64(chosen.SPI)
	ourSPI := randSPI()
	nr := randBytes(nonceLen)
	chosen.SPI = binary.BigEndian.AppendUint64(nil, ourSPI)
	c.respond(sa, h.Exchange, h.MessageID, []ike.Payload{
		{Type: ike.PayloadSA, Body: ike.AppendSA(nil, []ike.Proposal{chosen})},
		{Type: ike.PayloadNonce, Body: nr},
		{Type: ike.PayloadKE, Body: ike.KEBody(group, ourPub)},
	})
	c.replaceIKESA(sa, false, theirSPI, ourSPI, prop, ni, nr, shared, now)
}

// replaceIKESA makes the IKE SA negotiated by a rekey of old current: the
// CHILD SA moves over; old is deleted by whoever started the rekey.
// initiator: we started it (spii is ours).
func (c *controller) replaceIKESA(old *ikeSA, initiator bool, spii, spir uint64, prop IKEProposal, ni, nr, shared []byte, now time.Time) {
	prf := ike.PRF(old.prop.PRF)
	var seedIn []byte
	seedIn = append(seedIn, shared...)
	seedIn = append(seedIn, ni...)
	seedIn = append(seedIn, nr...)
	skeyseed := prf.Sum(old.keys.skd, seedIn)
	keys, err := deriveIKEFromSeed(prop, skeyseed, ni, nr, spii, spir)
	if err != nil {
		c.log.Warn("ipsec: IKE rekey keys", zap.Error(err))
		return
	}
	sa := &ikeSA{initiator: initiator, state: stateEstablished, spii: spii, spir: spir, prop: prop, ni: ni, nr: nr,
		keys: keys, natt: true, lastRecv: now, established: now,
		child: old.child, oldIn: old.oldIn, holdOut: old.holdOut}
	old.child, old.oldIn, old.holdOut = nil, nil, nil
	old.retired = true
	c.sa = sa
	c.retiring = old
	c.a.ike.IKERekeys.Add(1)
	c.snapshot(sa)
	c.log.Info("ipsec: IKE SA rekeyed", zap.String("spi_i", fmt.Sprintf("%016x", spii)), zap.String("spi_r", fmt.Sprintf("%016x", spir)))
	if initiator {
		c.request(old, ike.INFORMATIONAL, []ike.Payload{{Type: ike.PayloadDelete, Body: ike.DeleteBody(ike.ProtoIKE)}}, now,
			func(ike.Header, []ike.Payload) {
				if c.retiring == old {
					c.retiring = nil
				}
			})
	}
}
