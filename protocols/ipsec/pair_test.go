package ipsec

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/goleak"

	"switchyard/packet/packettest"
	"switchyard/protocols/ipsec/ike"
)

// pairSettings returns an initiator and a responder on 127.0.0.1 with
// distinct ports (the responder's NAT-T port set directly: the protocol
// always sends to 4500, which two instances on one host cannot both bind).
func pairSettings(t *testing.T, iExtra, rExtra, rPSK string) (Settings, Settings) {
	dir := t.TempDir()
	psk := pskFile(t, dir, "psk", testPSK)
	rpsk := psk
	if rPSK != "" {
		rpsk = pskFile(t, dir, "rpsk", rPSK)
	}
	r500, r4500 := packettest.FreeUDPPort(t), packettest.FreeUDPPort(t)
	i := mustParse(t, fmt.Sprintf(`local_addrs: 127.0.0.1
remote_addrs: 127.0.0.1
local_port: %d
natt_port: %d
remote_port: %d
local_id: i.example
remote_id: r.example
psk_file: %s
local_ts: [10.61.0.0/24]
remote_ts: [10.62.0.0/24]
%s`, packettest.FreeUDPPort(t), packettest.FreeUDPPort(t), r500, psk, iExtra))
	i.RemoteNATT = r4500
	r := mustParse(t, fmt.Sprintf(`mode: responder
local_addrs: 127.0.0.1
remote_addrs: 127.0.0.1
local_port: %d
natt_port: %d
local_id: r.example
remote_id: i.example
psk_file: %s
local_ts: [10.62.0.0/24]
remote_ts: [10.61.0.0/24]
%s`, r500, r4500, rpsk, rExtra))
	return i, r
}

// TestPair: Switchyard initiator ↔ Switchyard responder in one process:
// the SAs come up (with an INVALID_KE_PAYLOAD round when the initiator's
// first group is not the responder's), packets cross both ways in batches,
// a replayed datagram is dropped and counted, and stopping the initiator
// deletes the SA at the responder.
func TestPair(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	tests := []struct {
		name        string
		iExtra      string
		rExtra      string
		wantInvalid bool
	}{
		{"defaults", "", "", false},
		{"invalid-ke", "proposals: [aes256gcm16-prfsha256-x25519, aes128gcm16-prfsha384-ecp256]\n",
			"proposals: [aes128gcm16-prfsha384-ecp256]\n", true},
		{"chacha-esn", "esp_proposals: [chacha20poly1305-esn]\n", "esp_proposals: [aes256gcm16, chacha20poly1305-esn-noesn]\n", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			iset, rset := pairSettings(t, tc.iExtra, tc.rExtra, "")
			ri := newHarness(t)
			ri.spawn(rset)
			defer ri.stop()
			ii := newHarness(t)
			ii.spawn(iset)
			defer ii.stop()
			waitFor(t, "CHILD SAs", 10*time.Second, func() bool {
				return ii.act.out.Load() != nil && ri.act.out.Load() != nil
			})
			if got := ri.act.ike.InvalidKESent.Load() > 0; got != tc.wantInvalid {
				t.Errorf("INVALID_KE_PAYLOAD sent: %v, want %v", got, tc.wantInvalid)
			}
			if s, _ := ii.lastSession(); fmt.Sprint(s.Routes) != "[10.62.0.0/24]" {
				t.Errorf("initiator routes %v", s.Routes)
			}
			if s, _ := ri.lastSession(); fmt.Sprint(s.Routes) != "[10.61.0.0/24]" {
				t.Errorf("responder routes %v", s.Routes)
			}
			a, b := netip.MustParseAddr("10.61.0.5"), netip.MustParseAddr("10.62.0.7")
			var batch [][]byte
			for seq := range 100 {
				batch = append(batch, icmpEcho(8, a, b, 1, uint16(seq), 60+seq*13))
			}
			ii.send(batch...)
			waitFor(t, "100 packets at the responder", 5*time.Second, func() bool { return ri.coll.Count() == 100 })
			ri.send(icmpEcho(0, b, a, 1, 1, 84), icmpEcho(0, b, a, 1, 2, 1400))
			waitFor(t, "2 packets at the initiator", 5*time.Second, func() bool { return ii.coll.Count() == 2 })
			for i, p := range ri.coll.Packets() {
				if string(p) != string(batch[i]) {
					t.Fatalf("packet %d changed on the way", i)
				}
			}
			iInfo, _ := ii.stats.Info().(Info)
			rInfo, _ := ri.stats.Info().(Info)
			if iInfo.State != "established" || iInfo.Child == nil || iInfo.Child.OutPackets != 100 || iInfo.IKE == nil || !iInfo.IKE.Initiator {
				t.Errorf("initiator info %+v (child %+v)", iInfo, iInfo.Child)
			}
			if rInfo.Child == nil || rInfo.Child.InPackets != 100 || rInfo.Child.SPIIn != iInfo.Child.SPIOut {
				t.Errorf("responder info %+v (child %+v)", rInfo, rInfo.Child)
			}
			if g := iInfo.Gauges(); len(g) < 4 || g[0].Name != "ipsec_sa_up" || g[0].Value != 1 {
				t.Errorf("gauges %+v", g)
			}
			// A packet from outside remote_ts is dropped.
			ri.send(icmpEcho(0, netip.MustParseAddr("10.99.0.1"), a, 1, 3, 84))
			waitFor(t, "the spoofed source counted", 5*time.Second, func() bool {
				return ii.recvStats.Snapshot().Drops["source_not_allowed"] == 1
			})
			ii.stop()
			waitFor(t, "the responder to drop the SA", 5*time.Second, func() bool { return ri.act.out.Load() == nil })
			ri.stop()
			ii.checkBalance()
			ri.checkBalance()
			ii.coll.Release()
			ri.coll.Release()
			for _, h := range []*harness{ii, ri} {
				if err := h.pool.CheckLeaks(); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// TestPairWrongPSK: the responder refuses an initiator with another PSK,
// both count it, and no SA comes up.
func TestPairWrongPSK(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	iset, rset := pairSettings(t, "", "", "another psk")
	ri := newHarness(t)
	ri.spawn(rset)
	defer ri.stop()
	ii := newHarness(t)
	ii.spawn(iset)
	defer ii.stop()
	waitFor(t, "authentication failures on both sides", 10*time.Second, func() bool {
		return ri.act.ike.AuthFailures.Load() > 0 && ii.act.ike.AuthFailures.Load() > 0
	})
	if ii.act.out.Load() != nil || ri.act.out.Load() != nil {
		t.Error("an SA came up with the wrong PSK")
	}
}

// TestResponderCookies: past cookieThreshold half-open SAs the responder
// demands a COOKIE, the initiator returns it, and the SA still comes up;
// the half-open table never passes maxHalfOpen.
func TestResponderCookies(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	iset, rset := pairSettings(t, "", "", "")
	ri := newHarness(t)
	ri.spawn(rset)
	defer ri.stop()
	// A flood of IKE_SA_INIT requests from one address, many SPIs, that
	// never return a cookie.
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(rset.Local, rset.LocalPort)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for range 3 * maxHalfOpen {
		_, pub, _ := newDH(ike.DH_CURVE25519)
		msg := ike.Encode(ike.Header{SPIi: randSPI(), Exchange: ike.IKE_SA_INIT, Flags: ike.FlagInitiator}, []ike.Payload{
			{Type: ike.PayloadSA, Body: ike.AppendSA(nil, []ike.Proposal{{Num: 1, Protocol: ike.ProtoIKE, Transforms: []ike.Transform{
				{Type: ike.TransformENCR, ID: ike.ENCR_AES_GCM_16, KeyLen: 256}, {Type: ike.TransformPRF, ID: ike.PRF_HMAC_SHA2_256},
				{Type: ike.TransformDH, ID: ike.DH_CURVE25519}}}})},
			{Type: ike.PayloadKE, Body: ike.KEBody(ike.DH_CURVE25519, pub)},
			{Type: ike.PayloadNonce, Body: randBytes(32)},
		})
		// Until the responder's socket is bound, writes are refused.
		waitFor(t, "the responder's IKE port", 5*time.Second, func() bool {
			_, err := conn.Write(msg)
			return err == nil
		})
	}
	waitFor(t, "cookies demanded", 5*time.Second, func() bool { return ri.act.ike.CookiesSent.Load() > 0 })
	ii := newHarness(t)
	ii.spawn(iset)
	defer ii.stop()
	waitFor(t, "CHILD SAs despite the flood", 10*time.Second, func() bool {
		return ii.act.out.Load() != nil && ri.act.out.Load() != nil
	})
	if got := ri.act.ike.CookiesSent.Load(); got < 2*maxHalfOpen {
		t.Errorf("%d cookies sent, want at least %d", got, 2*maxHalfOpen)
	}
}

// TestPairRekey: CHILD SA and IKE SA rekeys every few seconds, started by
// either end, while packets flow both ways: none is lost.
func TestPairRekey(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	tests := []struct {
		name           string
		iExtra, rExtra string
	}{
		{"initiator rekeys", "child_rekey_time: 2s\nrekey_time: 3s\n", ""},
		{"responder rekeys", "", "child_rekey_time: 2s\nrekey_time: 3s\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			iset, rset := pairSettings(t, tc.iExtra, tc.rExtra, "")
			ri := newHarness(t)
			ri.spawn(rset)
			defer ri.stop()
			ii := newHarness(t)
			ii.spawn(iset)
			defer ii.stop()
			waitFor(t, "CHILD SAs", 10*time.Second, func() bool {
				return ii.act.out.Load() != nil && ri.act.out.Load() != nil
			})
			a, b := netip.MustParseAddr("10.61.0.5"), netip.MustParseAddr("10.62.0.7")
			sent := 0
			deadline := time.Now().Add(7 * time.Second)
			for seq := 0; time.Now().Before(deadline); seq++ {
				ii.send(icmpEcho(8, a, b, 1, uint16(seq), 200+seq%1200))
				ri.send(icmpEcho(0, b, a, 1, uint16(seq), 1300-seq%1200))
				sent++
				time.Sleep(10 * time.Millisecond)
			}
			waitFor(t, "every packet", 5*time.Second, func() bool { return ri.coll.Count() == sent && ii.coll.Count() == sent })
			for _, h := range []*harness{ii, ri} {
				if c, k := h.act.ike.ChildRekeys.Load(), h.act.ike.IKERekeys.Load(); c < 1 || k < 1 {
					t.Errorf("%d CHILD SA and %d IKE SA rekeys, want at least 1 each", c, k)
				}
				if d := h.stats.Snapshot().Drops; len(d) != 0 {
					t.Errorf("send drops %v", d)
				}
				h.checkBalance()
			}
			ii.stop()
			ri.stop()
			ii.coll.Release()
			ri.coll.Release()
		})
	}
}

// certPairSettings: an initiator and a responder authenticating with
// certificates of pki (the initiator's RSA when rsaInit), the initiator
// asking for a virtual IP from the responder's pool.
func certPairSettings(t *testing.T, pki *testPKI, initCA string, rsaInit bool) (Settings, Settings) {
	ic, ik := pki.issue(t, "i.example", rsaInit)
	rc, rk := pki.issue(t, "r.example", false)
	r500, r4500 := packettest.FreeUDPPort(t), packettest.FreeUDPPort(t)
	i := mustParse(t, fmt.Sprintf(`local_addrs: 127.0.0.1
remote_addrs: 127.0.0.1
local_port: %d
natt_port: %d
remote_port: %d
local_id: i.example
remote_id: r.example
auth: pubkey
cert_file: %s
key_file: %s
ca_file: %s
vips: [0.0.0.0]
remote_ts: [10.62.0.0/24]
`, packettest.FreeUDPPort(t), packettest.FreeUDPPort(t), r500, ic, ik, initCA))
	i.RemoteNATT = r4500
	r := mustParse(t, fmt.Sprintf(`mode: responder
local_addrs: 127.0.0.1
remote_addrs: 127.0.0.1
local_port: %d
natt_port: %d
local_id: r.example
remote_id: i.example
auth: pubkey
cert_file: %s
key_file: %s
ca_file: %s
pool: 10.63.0.0/24
local_ts: [10.62.0.0/24]
remote_ts: [10.63.0.0/24]
`, r500, r4500, rc, rk, pki.caFile))
	return i, r
}

// TestPairCertificates: RFC 7427 signatures (ECDSA responder, ECDSA or RSA
// initiator) and a virtual IP from the responder's pool, reported to the
// node and carried both ways; a certificate from another CA is refused.
func TestPairCertificates(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	for _, rsaInit := range []bool{false, true} {
		t.Run(fmt.Sprintf("rsa=%v", rsaInit), func(t *testing.T) {
			pki := newTestPKI(t, t.TempDir(), "ca")
			iset, rset := certPairSettings(t, pki, pki.caFile, rsaInit)
			ri := newHarness(t)
			ri.spawn(rset)
			defer ri.stop()
			ii := newHarness(t)
			ii.spawn(iset)
			defer ii.stop()
			waitFor(t, "CHILD SAs", 10*time.Second, func() bool {
				return ii.act.out.Load() != nil && ri.act.out.Load() != nil
			})
			s, _ := ii.lastSession()
			if fmt.Sprint(s.Addrs) != "[10.63.0.1/32]" || fmt.Sprint(s.Routes) != "[10.62.0.0/24]" {
				t.Errorf("initiator session %+v, want addrs [10.63.0.1/32] routes [10.62.0.0/24]", s)
			}
			if s, _ := ri.lastSession(); fmt.Sprint(s.Routes) != "[10.63.0.1/32]" {
				t.Errorf("responder session %+v, want routes [10.63.0.1/32]", s)
			}
			vip, b := netip.MustParseAddr("10.63.0.1"), netip.MustParseAddr("10.62.0.9")
			ii.send(icmpEcho(8, vip, b, 1, 1, 100))
			ri.send(icmpEcho(0, b, vip, 1, 1, 100))
			waitFor(t, "a packet each way", 5*time.Second, func() bool { return ii.coll.Count() == 1 && ri.coll.Count() == 1 })
			ii.coll.Release()
			ri.coll.Release()
		})
	}
	t.Run("other CA", func(t *testing.T) {
		pki := newTestPKI(t, t.TempDir(), "ca")
		other := newTestPKI(t, pki.dir, "other")
		iset, rset := certPairSettings(t, other, pki.caFile, false)
		// The initiator trusts pki's CA but holds a certificate of other's.
		ri := newHarness(t)
		rset.Pubkey.cas = newTestPKIPool(pki)
		ri.spawn(rset)
		defer ri.stop()
		ii := newHarness(t)
		ii.spawn(iset)
		defer ii.stop()
		waitFor(t, "the refusal", 10*time.Second, func() bool { return ri.act.ike.AuthFailures.Load() > 0 })
		if ri.act.out.Load() != nil {
			t.Error("SA up with a certificate from another CA")
		}
	})
}

// TestPairHostile: garbage on both ports of an established pair — short
// datagrams, non-ESP markers with bad IKE, IKE with broken payload chains,
// unknown SPIs, replayed and tampered ESP — is counted and dropped; the SA
// stays up and still carries traffic.
func TestPairHostile(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	iset, rset := pairSettings(t, "", "", "")
	ri := newHarness(t)
	ri.spawn(rset)
	defer ri.stop()
	ii := newHarness(t)
	ii.spawn(iset)
	defer ii.stop()
	waitFor(t, "CHILD SAs", 10*time.Second, func() bool { return ii.act.out.Load() != nil && ri.act.out.Load() != nil })

	// Datagrams from the initiator's address (127.0.0.1) to the
	// responder's ports.
	nat, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(rset.Local, rset.NATTPort)))
	if err != nil {
		t.Fatal(err)
	}
	defer nat.Close()
	ike500, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(rset.Local, rset.LocalPort)))
	if err != nil {
		t.Fatal(err)
	}
	defer ike500.Close()
	broken := ike.Encode(ike.Header{SPIi: 7, Exchange: ike.IKE_SA_INIT, Flags: ike.FlagInitiator},
		[]ike.Payload{{Type: ike.PayloadNonce, Body: make([]byte, 16)}})
	broken[ike.HeaderLen+3] = 0xff // payload length beyond the message
	garbage := [][]byte{
		{1}, {0, 0}, {0xff},
		{0, 0, 0, 0, 1, 2, 3},                                 // marker, then a short IKE header
		append([]byte{0, 0, 0, 0}, broken...),                 // marker, broken payload chain
		append([]byte{0, 0, 0x12, 0x34}, make([]byte, 60)...), // unknown SPI
	}
	for _, g := range garbage {
		_, _ = nat.Write(g)
	}
	for range 50 {
		_, _ = ike500.Write(broken)
		_, _ = ike500.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
	}
	// Tampered ESP for the live SPI: fails authentication.
	spi := ri.act.inbound.Load()
	live := (*spi)[0].SPI
	tampered := append(spiBytes(live), make([]byte, 60)...)
	tampered[7] = 9
	_, _ = nat.Write(tampered)
	waitFor(t, "the garbage counted", 5*time.Second, func() bool {
		d := ri.recvStats.Snapshot().Drops
		return d["malformed"] >= 2 && d["no_sa"] >= 1 && d["auth_failed"] >= 1 &&
			ri.act.ike.BadMessages.Load()+ri.act.ike.QueueFull.Load() >= 100
	})
	// Still up: a packet crosses.
	a, b := netip.MustParseAddr("10.61.0.5"), netip.MustParseAddr("10.62.0.7")
	ii.send(icmpEcho(8, a, b, 1, 1, 100))
	waitFor(t, "a packet after the garbage", 5*time.Second, func() bool { return ri.coll.Count() == 1 })
	ri.checkBalance()
	ri.coll.Release()
}

// TestPairIPv6: IKE and ESP over IPv6 (::1) carrying IPv6 traffic between
// IPv6 selectors.
func TestPairIPv6(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dir := t.TempDir()
	psk := pskFile(t, dir, "psk", testPSK)
	r500, r4500 := packettest.FreeUDPPort(t), packettest.FreeUDPPort(t)
	iset := mustParse(t, fmt.Sprintf("local_addrs: \"::1\"\nremote_addrs: \"::1\"\nlocal_port: %d\nnatt_port: %d\nremote_port: %d\n"+
		"local_id: i\nremote_id: r\npsk_file: %s\nlocal_ts: [\"fd61::/64\"]\nremote_ts: [\"fd62::/64\"]\n",
		packettest.FreeUDPPort(t), packettest.FreeUDPPort(t), r500, psk))
	iset.RemoteNATT = r4500
	rset := mustParse(t, fmt.Sprintf("mode: responder\nlocal_addrs: \"::1\"\nremote_addrs: \"::1\"\nlocal_port: %d\nnatt_port: %d\n"+
		"local_id: r\nremote_id: i\npsk_file: %s\nlocal_ts: [\"fd62::/64\"]\nremote_ts: [\"fd61::/64\"]\n", r500, r4500, psk))
	ri := newHarness(t)
	ri.spawn(rset)
	defer ri.stop()
	ii := newHarness(t)
	ii.spawn(iset)
	defer ii.stop()
	waitFor(t, "CHILD SAs", 10*time.Second, func() bool { return ii.act.out.Load() != nil && ri.act.out.Load() != nil })
	a, b := netip.MustParseAddr("fd61::5"), netip.MustParseAddr("fd62::7")
	ii.send(icmp6Echo(a, b, 1, 1, 200), icmp6Echo(a, b, 1, 2, 1300))
	ri.send(icmp6Echo(b, a, 2, 1, 90))
	waitFor(t, "IPv6 packets both ways", 5*time.Second, func() bool { return ri.coll.Count() == 2 && ii.coll.Count() == 1 })
	if s, _ := ii.lastSession(); fmt.Sprint(s.Routes) != "[fd62::/64]" {
		t.Errorf("routes %v", s.Routes)
	}
	ii.coll.Release()
	ri.coll.Release()
}

// TestPairRetransmit: the initiator starts before the responder; its
// IKE_SA_INIT is retransmitted (after 1 s) until the responder answers.
func TestPairRetransmit(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	iset, rset := pairSettings(t, "", "", "")
	ii := newHarness(t)
	ii.spawn(iset)
	defer ii.stop()
	time.Sleep(1500 * time.Millisecond)
	ri := newHarness(t)
	ri.spawn(rset)
	defer ri.stop()
	waitFor(t, "CHILD SAs", 10*time.Second, func() bool { return ii.act.out.Load() != nil && ri.act.out.Load() != nil })
	if n := ii.act.ike.Retransmits.Load(); n < 1 {
		t.Errorf("%d retransmissions, want at least 1", n)
	}
}
