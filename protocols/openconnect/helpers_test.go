package openconnect

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"switchyard/packet"
	"switchyard/packet/packettest"
	"switchyard/protocols"
	"switchyard/stats"
)

// testPKI is a CA with a server and a client certificate, as PEM files.
type testPKI struct {
	dir                       string
	caFile, certFile, keyFile string // server
	clientCert, clientKey     string
	serverCert                *x509.Certificate
}

func newPKI(t *testing.T, dir string, serverIP net.IP, clientCN string) *testPKI {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "switchyard test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(cn string, server bool) ([]byte, *ecdsa.PrivateKey) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature,
		}
		if server {
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
			tmpl.IPAddresses = []net.IP{serverIP}
		} else {
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, key
	}
	p := &testPKI{dir: dir}
	write := func(name string, typ string, der []byte, mode os.FileMode) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
			t.Fatal(err)
		}
		return path
	}
	keyDER := func(k *ecdsa.PrivateKey) []byte {
		b, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	p.caFile = write("ca.pem", "CERTIFICATE", caDER, 0o644)
	sDER, sKey := issue("server", true)
	p.serverCert, _ = x509.ParseCertificate(sDER)
	p.certFile = write("server.pem", "CERTIFICATE", sDER, 0o644)
	p.keyFile = write("server.key", "PRIVATE KEY", keyDER(sKey), 0o600)
	cDER, cKey := issue(clientCN, false)
	p.clientCert = write("client.pem", "CERTIFICATE", cDER, 0o644)
	p.clientKey = write("client.key", "PRIVATE KEY", keyDER(cKey), 0o600)
	return p
}

// harness is one actor system with a protocol instance, a collector
// injector and an observed logger.
type harness struct {
	t         *testing.T
	system    *actor.ActorSystem
	pool      *packet.Pool
	stats     *stats.Counters
	recvStats *stats.Counters
	coll      *packettest.Collector
	injector  *actor.PID
	logs      *observer.ObservedLogs
	log       *zap.Logger
	pid       *actor.PID
}

func quietSystem() *actor.ActorSystem {
	return actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}))
}

func newHarness(t *testing.T) *harness {
	core, logs := observer.New(zapcore.DebugLevel)
	h := &harness{
		t:         t,
		system:    quietSystem(),
		pool:      packet.NewPool(2048),
		stats:     &stats.Counters{Name: "oc", Kind: "openconnect"},
		recvStats: &stats.Counters{Name: "oc.recv", Kind: "openconnect"},
		coll:      &packettest.Collector{},
		logs:      logs,
		log:       zap.New(core),
	}
	if testing.Verbose() {
		h.log = zap.New(zapcore.NewTee(core, zapcore.NewCore(zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig()),
			zapcore.AddSync(os.Stderr), zapcore.DebugLevel)))
	}
	h.injector = h.system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return h.coll }))
	return h
}

func (h *harness) env() protocols.Env {
	return protocols.Env{System: h.system, Injector: h.injector, Pool: h.pool,
		ToNetwork: h.stats, FromNetwork: h.recvStats, MaxBatch: packet.MaxBatch, Log: h.log}
}

// spawn starts an actor made by mk.
func (h *harness) spawn(mk func(env protocols.Env) actor.Actor) {
	env := h.env()
	h.pid = h.system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return mk(env) }))
}

func (h *harness) stop() {
	h.t.Helper()
	if h.pid == nil {
		return
	}
	if err := h.system.Root.StopFuture(h.pid).Wait(); err != nil {
		h.t.Fatalf("stop actor: %v", err)
	}
	h.pid = nil
}

// send sends packets (copied into pool buffers) to the actor as one batch.
func (h *harness) send(pkts ...[]byte) {
	h.t.Helper()
	b := packettest.BatchOf(h.t, h.pool, pkts...)
	h.stats.In(b.Len(), b.Bytes())
	h.system.Root.Send(h.pid, b)
}

// checkBalance asserts In = Out + drops on the receive counters.
func (h *harness) checkBalance() {
	h.t.Helper()
	s := h.recvStats.Snapshot()
	if s.InPackets != s.OutPackets+s.DroppedTotal() {
		h.t.Errorf("recv stats: in %d != out %d + drops %v", s.InPackets, s.OutPackets, s.Drops)
	}
}

func (h *harness) clientInfo() ClientInfo {
	in, _ := h.stats.Info().(ClientInfo)
	return in
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// icmpEcho returns an IPv4 ICMP echo request from src to dst.
func icmpEcho(src, dst [4]byte, id, seq uint16, size int) []byte {
	p := make([]byte, size)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:4], uint16(size))
	p[8], p[9] = 64, packet.ProtoICMP
	copy(p[12:16], src[:])
	copy(p[16:20], dst[:])
	cs := packet.Checksum(p[:20], 0)
	binary.BigEndian.PutUint16(p[10:12], cs)
	p[20] = 8 // echo request
	binary.BigEndian.PutUint16(p[24:26], id)
	binary.BigEndian.PutUint16(p[26:28], seq)
	for i := 28; i < size; i++ {
		p[i] = byte(i)
	}
	cs = packet.Checksum(p[20:], 0)
	binary.BigEndian.PutUint16(p[22:24], cs)
	return p
}

// isEchoReply reports whether p is an ICMP echo reply from src with id/seq.
func isEchoReply(p []byte, from [4]byte, id, seq uint16) bool {
	return len(p) >= 28 && p[0]>>4 == 4 && p[9] == packet.ProtoICMP && [4]byte(p[12:16]) == from &&
		p[20] == 0 && binary.BigEndian.Uint16(p[24:26]) == id && binary.BigEndian.Uint16(p[26:28]) == seq
}

// icmp6Echo returns an IPv6 ICMPv6 echo request from src to dst.
func icmp6Echo(src, dst netip.Addr, id, seq uint16, size int) []byte {
	p := make([]byte, size)
	p[0] = 0x60
	binary.BigEndian.PutUint16(p[4:6], uint16(size-40))
	p[6], p[7] = packet.ProtoICMPv6, 64
	s, d := src.As16(), dst.As16()
	copy(p[8:24], s[:])
	copy(p[24:40], d[:])
	p[40] = 128 // echo request
	binary.BigEndian.PutUint16(p[44:46], id)
	binary.BigEndian.PutUint16(p[46:48], seq)
	for i := 48; i < size; i++ {
		p[i] = byte(i)
	}
	cs := packet.Checksum(p[40:], packet.PseudoHeaderSum(src, dst, packet.ProtoICMPv6, size-40))
	binary.BigEndian.PutUint16(p[42:44], cs)
	return p
}

// isEcho6Reply reports whether p is an ICMPv6 echo reply from src with id/seq.
func isEcho6Reply(p []byte, from netip.Addr, id, seq uint16) bool {
	return len(p) >= 48 && p[0]>>4 == 6 && p[6] == packet.ProtoICMPv6 && netip.AddrFrom16([16]byte(p[8:24])) == from &&
		p[40] == 129 && binary.BigEndian.Uint16(p[44:46]) == id && binary.BigEndian.Uint16(p[46:48]) == seq
}
