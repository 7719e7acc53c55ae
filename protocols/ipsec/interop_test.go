package ipsec

import (
	"net/netip"

	"fmt"
	"strings"
	"switchyard/packet/packettest"
	"testing"
	"time"
)

const testPSK = "switchyard ipsec test psk 0123456789"

func charonResponder(t *testing.T, l *netLab, proposals, esp string) *charon {
	return startCharon(t, l.ns, l.dir, charonConn{
		Local: l.far, Remote: l.ip, LocalID: "a", RemoteID: "b", PSK: testPSK,
		Proposals: proposals, ESP: esp,
		LocalTS: l.innerFar.String() + "/32", RemoteTS: l.innerNear.String() + "/32",
	})
}

// TestCharonResponder: our initiator against strongSwan 5.9.8 as responder,
// for each IKE and ESP algorithm: the SAs come up, a ping from us is
// answered by the namespace's kernel through charon's libipsec, a ping from
// the namespace reaches us and our answer gets back, and stop deletes the
// IKE SA at charon.
func TestCharonResponder(t *testing.T) {
	needCharon(t)
	tests := []struct {
		name             string
		charonIKE        string
		charonESP        string
		ours             string
		wantIKE, wantESP string
	}{
		{"x25519-gcm256", "aes256gcm16-prfsha256-x25519", "aes256gcm16", "", "AES_GCM_16-256/PRF_HMAC_SHA2_256/CURVE_25519", "ESP:AES_GCM_16-256"},
		{"ecp256-gcm128-invalid-ke", "aes128gcm16-prfsha384-ecp256", "aes128gcm16",
			"proposals: [aes256gcm16-prfsha256-x25519, aes128gcm16-prfsha384-ecp256]\nesp_proposals: [aes256gcm16, aes128gcm16]\n",
			"AES_GCM_16-128/PRF_HMAC_SHA2_384/ECP_256", "ESP:AES_GCM_16-128"},
		{"chacha", "aes256gcm16-prfsha256-x25519", "chacha20poly1305",
			"esp_proposals: [chacha20poly1305]\n", "AES_GCM_16-256/PRF_HMAC_SHA2_256/CURVE_25519", "ESP:CHACHA20_POLY1305"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := newNetLab(t)
			ch := charonResponder(t, l, tc.charonIKE, tc.charonESP)
			h := newHarness(t)
			set := mustParse(t, initiatorYAML(t, l, pskFile(t, l.dir, "psk", testPSK), tc.ours))
			h.spawn(set)
			defer h.stop()
			waitFor(t, "CHILD SA", 15*time.Second, func() bool { return h.act.out.Load() != nil })
			s, _ := h.lastSession()
			if got := fmt.Sprint(s.Routes); got != "["+l.innerFar.String()+"/32]" {
				t.Errorf("session routes %s, want [%s/32]", got, l.innerFar)
			}
			out, _ := ch.swanctl("--list-sas")
			for _, want := range []string{tc.wantIKE, tc.wantESP} {
				if !strings.Contains(out, want) {
					t.Errorf("charon's SAs lack %s:\n%s", want, out)
				}
			}

			// Us → them: echo requests, answered by the namespace's kernel.
			for seq := uint16(1); seq <= 3; seq++ {
				h.send(icmpEcho(8, l.innerNear, l.innerFar, 7, seq, 100+int(seq)*300))
			}
			waitFor(t, "3 echo replies", 5*time.Second, func() bool {
				n := 0
				for _, p := range h.coll.Packets() {
					if isICMP(p, 0, l.innerFar) {
						n++
					}
				}
				return n == 3
			})

			// Them → us: ping from the namespace; we answer each request.
			done := make(chan string, 1)
			go func() {
				out, _ := execOut("ip", "netns", "exec", l.ns, "ping", "-c", "3", "-i", "0.2", "-W", "2", "-I", l.innerFar.String(), l.innerNear.String())
				done <- out
			}()
			answered := 0
			deadline := time.Now().Add(8 * time.Second)
			seen := 0
			var pingOut string
		loop:
			for time.Now().Before(deadline) {
				select {
				case pingOut = <-done:
					break loop
				default:
				}
				pkts := h.coll.Packets()
				for _, p := range pkts[seen:] {
					if isICMP(p, 8, l.innerFar) {
						reply := append([]byte(nil), p...)
						copy(reply[12:16], p[16:20])
						copy(reply[16:20], p[12:16])
						reply[20] = 0
						reply[22], reply[23] = 0, 0
						fixICMP(reply)
						h.send(reply)
						answered++
					}
				}
				seen = len(pkts)
				time.Sleep(5 * time.Millisecond)
			}
			if !strings.Contains(pingOut, " 0% packet loss") {
				t.Errorf("ping from charon's side (answered %d):\n%s", answered, pingOut)
			}

			h.stop()
			h.checkBalance()
			waitFor(t, "charon to drop the IKE SA", 5*time.Second, func() bool {
				out, _ := ch.swanctl("--list-sas")
				return !strings.Contains(out, "ESTABLISHED")
			})
			if s, n := h.lastSession(); !s.IsZero() || n < 2 {
				t.Errorf("last session %+v after %d reports, want the zero Session", s, n)
			}
			h.coll.Release()
			if err := h.pool.CheckLeaks(); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestCharonWrongPSK: charon refuses our AUTH; the failure is counted and
// no CHILD SA comes up.
func TestCharonWrongPSK(t *testing.T) {
	needCharon(t)
	l := newNetLab(t)
	charonResponder(t, l, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	h := newHarness(t)
	set := mustParse(t, initiatorYAML(t, l, pskFile(t, l.dir, "bad", "not the psk"), ""))
	h.spawn(set)
	defer h.stop()
	waitFor(t, "an authentication failure", 15*time.Second, func() bool {
		return h.act.ike.AuthFailures.Load() > 0
	})
	if h.act.out.Load() != nil || h.act.ike.Established.Load() != 0 {
		t.Error("SA up with the wrong PSK")
	}
}

// TestCharonRekey: against strongSwan, CHILD SA and IKE SA rekeys every few
// seconds, started by us or by charon, while echo requests flow: every
// request is answered.
func TestCharonRekey(t *testing.T) {
	needCharon(t)
	tests := []struct {
		name                string
		ours                string
		charonIKE, charonCh string
	}{
		{"ours", "child_rekey_time: 2s\nrekey_time: 3s\n", "", ""},
		{"charon's", "", "rekey_time = 3s\n    over_time = 20s\n    rand_time = 0s", "rekey_time = 2s\n        life_time = 20s\n        rand_time = 0s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := newNetLab(t)
			ch := startCharon(t, l.ns, l.dir, charonConn{
				Local: l.far, Remote: l.ip, LocalID: "a", RemoteID: "b", PSK: testPSK,
				Proposals: "aes256gcm16-prfsha256-x25519", ESP: "aes256gcm16",
				LocalTS: l.innerFar.String() + "/32", RemoteTS: l.innerNear.String() + "/32",
				Extra: tc.charonIKE, ChildExtra: tc.charonCh,
			})
			h := newHarness(t)
			h.spawn(mustParse(t, initiatorYAML(t, l, pskFile(t, l.dir, "psk", testPSK), tc.ours)))
			defer h.stop()
			waitFor(t, "CHILD SA", 15*time.Second, func() bool { return h.act.out.Load() != nil })
			sent := 0
			deadline := time.Now().Add(8 * time.Second)
			for seq := uint16(1); time.Now().Before(deadline); seq++ {
				h.send(icmpEcho(8, l.innerNear, l.innerFar, 9, seq, 100+int(seq)%1200))
				sent++
				time.Sleep(20 * time.Millisecond)
			}
			waitFor(t, "every echo answered", 5*time.Second, func() bool {
				n := 0
				for _, p := range h.coll.Packets() {
					if isICMP(p, 0, l.innerFar) {
						n++
					}
				}
				return n == sent
			})
			if c, k := h.act.ike.ChildRekeys.Load(), h.act.ike.IKERekeys.Load(); c < 1 || k < 1 {
				t.Errorf("%d CHILD SA and %d IKE SA rekeys, want at least 1 each", c, k)
			}
			if !strings.Contains(ch.log(), "rekeyed") {
				t.Error("charon logged no rekey")
			}
			h.stop()
			h.checkBalance()
			h.coll.Release()
		})
	}
}

// TestCharonCertificates: certificates with RFC 7427 ECDSA signatures
// against strongSwan, in both roles, with a virtual IP from the responder's
// pool: the SAs come up, the initiator gets the VIP, and an echo through
// the tunnel is answered.
func TestCharonCertificates(t *testing.T) {
	needCharon(t)
	t.Run("charon responds with a pool", func(t *testing.T) {
		l := newNetLab(t)
		pki := newTestPKI(t, l.dir, "ca")
		cc, ck := pki.issue(t, "a.example", false)
		oc, ok := pki.issue(t, "b.example", false)
		ch := startCharon(t, l.ns, l.dir, charonConn{
			Local: l.far, Remote: l.ip, LocalID: "a.example", RemoteID: "b.example",
			Proposals: "aes256gcm16-prfsha256-x25519", ESP: "aes256gcm16",
			LocalTS: l.innerFar.String() + "/32", RemoteTS: "dynamic",
			Cert: cc, Key: ck, CA: pki.caFile, Pool: "10.100.7.0/24",
		})
		h := newHarness(t)
		h.spawn(mustParse(t, fmt.Sprintf(`local_addrs: %s
remote_addrs: %s
local_port: %d
natt_port: %d
local_id: b.example
remote_id: a.example
auth: pubkey
cert_file: %s
key_file: %s
ca_file: %s
vips: [0.0.0.0]
remote_ts: [%s/32]
`, l.ip, l.far, packettest.FreeUDPPort(t), packettest.FreeUDPPort(t), oc, ok, pki.caFile, l.innerFar)))
		defer h.stop()
		waitFor(t, "CHILD SA", 15*time.Second, func() bool { return h.act.out.Load() != nil })
		s, _ := h.lastSession()
		if len(s.Addrs) != 1 || !netip.MustParsePrefix("10.100.7.0/24").Contains(s.Addrs[0].Addr()) {
			t.Fatalf("session %+v: no VIP from 10.100.7.0/24", s)
		}
		vip := s.Addrs[0].Addr()
		h.send(icmpEcho(8, vip, l.innerFar, 5, 1, 120))
		waitFor(t, "the echo reply to the VIP", 5*time.Second, func() bool {
			for _, p := range h.coll.Packets() {
				if isICMP(p, 0, l.innerFar) {
					return true
				}
			}
			return false
		})
		if !strings.Contains(ch.log(), "authentication of 'b.example' with ECDSA_WITH_SHA256_DER successful") &&
			!strings.Contains(ch.log(), "authentication of 'b.example' with ECDSA-256 signature successful") {
			t.Logf("charon's log does not name the ECDSA authentication")
		}
		h.stop()
		h.coll.Release()
	})
	t.Run("charon initiates for a VIP", func(t *testing.T) {
		l := newNetLab(t)
		pki := newTestPKI(t, l.dir, "ca")
		cc, ck := pki.issue(t, "a.example", false)
		oc, ok := pki.issue(t, "b.example", false)
		h := newHarness(t)
		h.spawn(mustParse(t, fmt.Sprintf(`mode: responder
local_addrs: %s
remote_addrs: %s
local_port: %d
natt_port: %d
local_id: b.example
remote_id: a.example
auth: pubkey
cert_file: %s
key_file: %s
ca_file: %s
pool: 10.100.8.0/24
local_ts: [%s/32]
remote_ts: [10.100.8.0/24]
`, l.ip, l.far, 500, 4500, oc, ok, pki.caFile, l.innerNear)))
		defer h.stop()
		ch := startCharon(t, l.ns, l.dir, charonConn{
			Local: l.far, Remote: l.ip, LocalID: "a.example", RemoteID: "b.example",
			Proposals: "aes256gcm16-prfsha256-x25519", ESP: "aes256gcm16",
			LocalTS: "dynamic", RemoteTS: l.innerNear.String() + "/32",
			Cert: cc, Key: ck, CA: pki.caFile, VIP: true,
		})
		if out, err := ch.swanctl("--initiate", "--child", "net", "--timeout", "15"); err != nil {
			t.Fatalf("swanctl --initiate: %v\n%s", err, out)
		}
		waitFor(t, "CHILD SA", 5*time.Second, func() bool { return h.act.out.Load() != nil })
		out, _ := ch.swanctl("--list-sas")
		if !strings.Contains(out, "local  10.100.8.1/32") {
			t.Errorf("charon's SA does not use the VIP 10.100.8.1:\n%s", out)
		}
		if s, _ := h.lastSession(); fmt.Sprint(s.Routes) != "[10.100.8.1/32]" {
			t.Errorf("responder session %+v, want routes [10.100.8.1/32]", s)
		}
		vip := netip.MustParseAddr("10.100.8.1")
		h.send(icmpEcho(8, l.innerNear, vip, 6, 1, 120))
		waitFor(t, "the echo reply from charon's VIP", 5*time.Second, func() bool {
			for _, p := range h.coll.Packets() {
				if isICMP(p, 0, vip) {
					return true
				}
			}
			return false
		})
		h.stop()
		h.coll.Release()
	})
}
