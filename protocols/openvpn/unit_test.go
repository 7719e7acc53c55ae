package openvpn

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"switchyard/config"
	"switchyard/packet"
	"switchyard/protocols"
)

func testKeyMaterial() []byte {
	m := make([]byte, keyMaterialBytes)
	for i := range m {
		m[i] = byte(i * 7)
	}
	return m
}

func testStaticKey() [staticKeyBytes]byte {
	var k [staticKeyBytes]byte
	for i := range k {
		k[i] = byte(i*13 + 1)
	}
	return k
}

// pair returns the client's and the server's data keys of one key id.
func pair(t testing.TB, cipherName string) (client, server *dataKey) {
	t.Helper()
	mat := testKeyMaterial()
	c, err := newDataKey(1, cipherName, mat, false, 7)
	if err != nil {
		t.Fatal(err)
	}
	s, err := newDataKey(1, cipherName, mat, true, 7)
	if err != nil {
		t.Fatal(err)
	}
	return c, s
}

// batchOf returns a batch of n packets of size bytes from pool.
func batchOf(t testing.TB, pool *packet.Pool, n, size int) *packet.Batch {
	b := pool.GetBatch()
	bufs := make([][]byte, n)
	if !pool.GetBufs(bufs) {
		t.Fatal("pool")
	}
	for i, buf := range bufs {
		for j := 0; j < size; j++ {
			buf[packet.Headroom+j] = byte(i + j)
		}
		buf[packet.Headroom] = 0x45
		b.Append(buf, size)
	}
	return b
}

func TestSealOpenBothCiphers(t *testing.T) {
	for _, c := range []string{cipherAES256GCM, cipherChaCha} {
		t.Run(c, func(t *testing.T) {
			pool := packet.NewPool(512)
			cl, sv := pair(t, c)
			b := batchOf(t, pool, 5, 1400)
			out := make([][]byte, 5)
			pool.GetBufs(out)
			if err := cl.sealBatch(b.Bufs, out); err != nil {
				t.Fatal(err)
			}
			for i, d := range out {
				if got, want := d[0], byte(opDataV2<<opShift|1); got != want {
					t.Fatalf("opcode %#x, want %#x", got, want)
				}
				if got, want := int(d[3]), 7; got != want {
					t.Fatalf("peer id %d, want %d", got, want)
				}
				n, err := sv.openLocked(d, len(d))
				if err != nil {
					t.Fatalf("packet %d: %v", i, err)
				}
				if !bytes.Equal(d[packet.Headroom:packet.Headroom+n], b.Packet(i)) {
					t.Fatalf("packet %d differs after open", i)
				}
				// The same datagram again is a replay.
				if _, err := sv.openLocked(d, len(d)); err == nil {
					t.Fatalf("replayed packet %d accepted", i)
				}
			}
			pool.PutBufs(out)
			b.Release()
			if err := pool.CheckLeaks(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// openLocked is open with the key's lock taken (tests).
func (k *dataKey) openLocked(d []byte, n int) (int, error) {
	k.recvMu.Lock()
	defer k.recvMu.Unlock()
	buf := make([]byte, n, n+dataTag+packet.Headroom)
	copy(buf, d[:n])
	m, err := k.open(buf, n)
	if err == nil {
		copy(d[packet.Headroom:], buf[packet.Headroom:packet.Headroom+m])
	}
	return m, err
}

func TestOpenRejectsTampered(t *testing.T) {
	cl, sv := pair(t, cipherAES256GCM)
	in := [][]byte{make([]byte, packet.Headroom+100)}
	out := [][]byte{make([]byte, 0, packet.BufferBytes)}
	if err := cl.sealBatch(in, out); err != nil {
		t.Fatal(err)
	}
	for _, pos := range []int{0, 3, 5, 10, 30, len(out[0]) - 1} {
		d := append([]byte(nil), out[0]...)
		d[pos] ^= 1
		if _, err := sv.openLocked(d, len(d)); err == nil {
			t.Errorf("flipped byte %d accepted", pos)
		}
	}
	if _, err := sv.openLocked(out[0][:10], 10); err == nil {
		t.Error("short packet accepted")
	}
}

// TestSealOpenAllocs: sealing and opening a batch allocate nothing.
func TestSealOpenAllocs(t *testing.T) {
	pool := packet.NewPool(1024)
	cl, sv := pair(t, cipherAES256GCM)
	b := batchOf(t, pool, packet.MaxBatch, 1400)
	defer b.Release()
	out := make([][]byte, packet.MaxBatch)
	pool.GetBufs(out)
	defer pool.PutBufs(out)
	full := make([][]byte, len(out))
	allocs := testing.AllocsPerRun(20, func() {
		for i := range out {
			out[i] = out[i][:cap(out[i])]
		}
		if err := cl.sealBatch(b.Bufs, out); err != nil {
			t.Fatal(err)
		}
		sv.recvMu.Lock()
		for i, d := range out {
			full[i] = d[:cap(d)]
			if _, err := sv.open(full[i], len(d)); err != nil {
				t.Fatal(err)
			}
		}
		sv.recvMu.Unlock()
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per batch of %d, want 0", allocs, packet.MaxBatch)
	}
}

func TestReplayWindow(t *testing.T) {
	var r replayWindow
	steps := []struct {
		id   uint32
		want bool
	}{
		{0, false}, {1, true}, {1, false}, {3, true}, {2, true}, {2, false},
		{5000, true}, {4999, true}, {5000 - replayWindowPackets, false}, {3, false}, {4000, true}, {4000, false},
		{100000, true}, {99999, true}, {5000, false},
	}
	for i, s := range steps {
		if got := r.mark(s.id); got != s.want {
			t.Fatalf("step %d: mark(%d) = %v, want %v", i, s.id, got, s.want)
		}
	}
}

func TestTLSCryptRoundTrip(t *testing.T) {
	key := testStaticKey()
	cl, sv := newTLSCrypt(&key, false), newTLSCrypt(&key, true)
	sid := sessionID{1, 2, 3, 4, 5, 6, 7, 8}
	body := appendControlBody(nil, []uint32{0, 1}, sessionID{9, 9, 9, 9, 9, 9, 9, 9}, opControlV1, 2, []byte("hello"))
	pkt, err := cl.wrap(nil, opControlV1<<opShift|2, sid, body)
	if err != nil {
		t.Fatal(err)
	}
	replay := append([]byte(nil), pkt...)
	var m controlMsg
	if err := parseControl(sv, pkt, &m); err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(m.Op, m.KeyID, m.SID, m.NAcks, m.Acks[:m.NAcks], m.MsgID, string(m.Payload)),
		fmt.Sprint(opControlV1, 2, sid, 2, []uint32{0, 1}, 2, "hello"); got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	if err := parseControl(sv, replay, &m); err == nil {
		t.Fatal("replayed control packet accepted")
	}
	// The client cannot read its own packets (the directions differ).
	pkt2, _ := cl.wrap(nil, opControlV1<<opShift, sid, body)
	if err := parseControl(newTLSCrypt(&key, false), pkt2, &m); err == nil {
		t.Fatal("a packet was accepted in the wrong direction")
	}
}

func TestParseStaticKey(t *testing.T) {
	key := testStaticKey()
	var b strings.Builder
	b.WriteString("#\n# 2048 bit OpenVPN static key\n#\n-----BEGIN OpenVPN Static key V1-----\n")
	h := hex.EncodeToString(key[:])
	for i := 0; i < len(h); i += 32 {
		b.WriteString(h[i:i+32] + "\n")
	}
	b.WriteString("-----END OpenVPN Static key V1-----\n")
	got, err := parseStaticKey([]byte(b.String()))
	if err != nil || got != key {
		t.Fatalf("parse: %v", err)
	}
	if _, err := parseStaticKey([]byte("garbage")); err == nil {
		t.Fatal("garbage accepted")
	}
}

func TestParsePush(t *testing.T) {
	var p pushReply
	more, err := parsePush(&p, "PUSH_REPLY,route-gateway 10.8.0.1,topology subnet,ping 10,ping-restart 60,ifconfig 10.8.0.2 255.255.255.0,route 10.77.0.0 255.255.0.0,route-ipv6 fd77::/64,ifconfig-ipv6 fd08::1000/64 fd08::1,peer-id 3,cipher AES-256-GCM,protocol-flags cc-exit tls-ekm dyn-tls-crypt")
	if err != nil || more {
		t.Fatal(err, more)
	}
	got := fmt.Sprint(p.Addr, p.Addr6, p.Routes, p.PeerID, p.HasPeerID, p.Cipher, p.TLSEKM, p.Ping, p.PingRestart)
	want := fmt.Sprint(netip.MustParsePrefix("10.8.0.2/24"), netip.MustParsePrefix("fd08::1000/64"),
		[]netip.Prefix{netip.MustParsePrefix("10.77.0.0/16"), netip.MustParsePrefix("fd77::/64")}, 3, true, "AES-256-GCM", true, 10*time.Second, 60*time.Second)
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if _, err := parsePush(&p, "PUSH_REPLY,comp-lzo no"); err == nil {
		t.Fatal("compression accepted")
	}
	if more, _ := parsePush(&p, "PUSH_REPLY,route 10.1.0.0 255.255.0.0,push-continuation 2"); !more {
		t.Fatal("continuation not seen")
	}
}

func TestKeyMethod2(t *testing.T) {
	msg := keyMethod2(false, localOptions, peerInfo([]string{cipherAES256GCM}))
	for i := 0; i < len(msg); i++ {
		if _, _, err := parseKeyMethod2(msg[:i], false); err == nil {
			t.Fatalf("parsed a %d-byte prefix", i)
		}
	}
	k, n, err := parseKeyMethod2(msg, false)
	if err != nil || n != len(msg) || k.Options != localOptions || !strings.Contains(k.PeerInfo, "IV_CIPHERS=AES-256-GCM") {
		t.Fatalf("%+v %d %v", k, n, err)
	}
}

func TestReliableWindows(t *testing.T) {
	var r reliableRecv
	if r.accept(recvWindow, opControlV1, nil) {
		t.Fatal("message beyond the window accepted")
	}
	if len(r.acks) != 0 {
		t.Fatal("message beyond the window acked")
	}
	if !r.accept(1, opControlV1, []byte("b")) || r.next() != nil {
		t.Fatal("out of order message delivered early")
	}
	if !r.accept(0, opControlV1, []byte("a")) || string(r.next().payload) != "a" {
		t.Fatal("in-order message not delivered")
	}
	r.pop()
	if string(r.next().payload) != "b" {
		t.Fatal("buffered message lost")
	}
	r.pop()
	if r.accept(0, opControlV1, nil) {
		t.Fatal("old message accepted as new")
	}
	if got := r.takeAcks(nil, maxAcks); fmt.Sprint(got) != "[1 0]" {
		t.Fatalf("acks %v, want [1 0]", got)
	}

	var s reliableSend
	for i := 0; i < 10; i++ {
		s.enqueue(opControlV1, []byte{byte(i)})
	}
	s.fill()
	now := time.Now()
	if got := len(s.due(now, nil)); got != sendWindow {
		t.Fatalf("%d sent, want the window %d", got, sendWindow)
	}
	if got := len(s.due(now, nil)); got != 0 {
		t.Fatalf("%d resent at once", got)
	}
	if got := len(s.due(now.Add(retransmitMin+time.Millisecond), nil)); got != sendWindow {
		t.Fatalf("%d retransmitted, want %d", got, sendWindow)
	}
	if m := s.inflight[0]; m.timeout != 2*retransmitMin {
		t.Fatalf("timeout %v after one retransmission, want %v", m.timeout, 2*retransmitMin)
	}
	s.ack(0)
	s.fill()
	if got := s.inflight[len(s.inflight)-1].id; got != sendWindow {
		t.Fatalf("next id %d, want %d", got, sendWindow)
	}
}

func TestParseSettings(t *testing.T) {
	dir := t.TempDir()
	p := newPKI(t, dir, "unit", nil)
	key := testStaticKey()
	tc := filepath.Join(dir, "tc.key")
	text := "-----BEGIN OpenVPN Static key V1-----\n" + hex.EncodeToString(key[:]) + "\n-----END OpenVPN Static key V1-----\n"
	if err := os.WriteFile(tc, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	good := fmt.Sprintf("remote: 192.0.2.1:1194\nca_file: %s\ncert_file: %s\nkey_file: %s\ntls_crypt_file: %s\n", p.ca, p.clientCert, p.clientKey, tc)
	tests := []struct {
		name, yaml, wantErr string
	}{
		{"good", good, ""},
		{"no remote", strings.Replace(good, "remote: 192.0.2.1:1194", "remote: nowhere", 1), "remote: must be ip:port"},
		{"cipher", good + "data_ciphers: [BF-CBC]\n", `"BF-CBC" is not supported`},
		{"compress", good + "compress: lz4\n", "compression is not supported"},
		{"secret", good + "secret: s.key\n", "static-key mode is not supported"},
		{"server with remote", good + "mode: server\nlisten: 0.0.0.0:1194\nserver: 10.8.0.0/24\n", "remote: is a client setting"},
		{"remote cert", good + "remote_cert_tls: client\n", "must be server"},
		{"mtu", good + "mtu: 100\n", "mtu: must be"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse(mustSettings(t, tt.yaml))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
	// A tls-crypt key others can read is refused.
	if err := os.Chmod(tc, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := parse(mustSettings(t, good))
	if err == nil || !strings.Contains(err.Error(), "accessible to group or others") {
		t.Fatalf("readable tls-crypt key: got %v", err)
	}
}

// FuzzControl: the control-packet parser never panics on any input, and
// whatever it accepts it accepted through tls-crypt.
func FuzzControl(f *testing.F) {
	key := testStaticKey()
	cl := newTLSCrypt(&key, false)
	body := appendControlBody(nil, []uint32{0}, sessionID{}, opControlV1, 1, []byte("x"))
	pkt, _ := cl.wrap(nil, opControlV1<<opShift, sessionID{1}, body)
	f.Add(pkt)
	f.Add([]byte{opAckV1 << opShift, 1, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		var m controlMsg
		_ = parseControlBody(&m, append([]byte(nil), b...))
		sv := newTLSCrypt(&key, true)
		_ = parseControl(sv, b, &m)
	})
}

// FuzzDataOpen: opening any datagram never panics and never accepts
// something that was not sealed with the key.
func FuzzDataOpen(f *testing.F) {
	cl, _ := pair(f, cipherAES256GCM)
	in := [][]byte{make([]byte, packet.Headroom+40)}
	out := [][]byte{make([]byte, 0, 200)}
	_ = cl.sealBatch(in, out)
	f.Add(out[0])
	f.Add([]byte{opDataV2 << opShift})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, sv := pair(t, cipherAES256GCM)
		buf := make([]byte, len(b), len(b)+dataTag+packet.Headroom)
		copy(buf, b)
		sv.recvMu.Lock()
		_, err := sv.open(buf, len(b))
		sv.recvMu.Unlock()
		if err == nil && !bytes.Equal(b, out[0]) {
			t.Fatalf("accepted a datagram not sealed with the key: %x", b)
		}
	})
}

func mustSettings(t *testing.T, yaml string) config.Settings {
	t.Helper()
	s, err := config.NewSettings("/etc/switchyard/test.yaml", "protocols[0].settings", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func fmtSession(s protocols.Session) string { return fmt.Sprint(s.Addrs, " ", s.Routes) }

func hexOf(b []byte) string { return hex.EncodeToString(b) }

func writeFile0600(path, text string) error { return os.WriteFile(path, []byte(text), 0o600) }
