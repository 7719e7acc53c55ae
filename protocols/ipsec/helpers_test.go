package ipsec

import (
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"switchyard/config"
	"switchyard/packet"
	"switchyard/packet/packettest"
	"switchyard/protocols"
	"switchyard/stats"
)

type harness struct {
	t         *testing.T
	system    *actor.ActorSystem
	pool      *packet.Pool
	stats     *stats.Counters
	recvStats *stats.Counters
	coll      *packettest.Collector
	injector  *actor.PID
	log       *zap.Logger
	pid       *actor.PID
	act       *ipsecActor

	mu       sync.Mutex
	sessions []protocols.Session
}

func newHarness(t *testing.T) *harness {
	h := &harness{
		t: t,
		system: actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
			return slog.New(slog.NewTextHandler(io.Discard, nil))
		})),
		pool:      packet.NewPool(2048),
		stats:     &stats.Counters{Name: "ipsec", Kind: "ipsec"},
		recvStats: &stats.Counters{Name: "ipsec.recv", Kind: "ipsec"},
		coll:      &packettest.Collector{},
		log:       zap.NewNop(),
	}
	if testing.Verbose() {
		h.log = zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig()),
			zapcore.AddSync(os.Stderr), zapcore.DebugLevel))
	}
	h.injector = h.system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return h.coll }))
	return h
}

func (h *harness) env() protocols.Env {
	return protocols.Env{System: h.system, Injector: h.injector, Pool: h.pool,
		ToNetwork: h.stats, FromNetwork: h.recvStats, MaxBatch: packet.MaxBatch, Log: h.log,
		Session: func(s protocols.Session) {
			h.mu.Lock()
			h.sessions = append(h.sessions, s)
			h.mu.Unlock()
		}}
}

func (h *harness) lastSession() (protocols.Session, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.sessions) == 0 {
		return protocols.Session{}, 0
	}
	return h.sessions[len(h.sessions)-1], len(h.sessions)
}

func (h *harness) spawn(set Settings) {
	env := h.env()
	h.act = newIPsecActor("ipsec", set, env)
	h.pid = h.system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return h.act }))
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

func (h *harness) checkBalance() {
	h.t.Helper()
	s := h.recvStats.Snapshot()
	if s.InPackets != s.OutPackets+s.DroppedTotal() {
		h.t.Errorf("recv stats: in %d != out %d + drops %v", s.InPackets, s.OutPackets, s.Drops)
	}
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			if testing.Verbose() {
				_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
			}
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// icmpEcho returns an IPv4 ICMP echo request (typ 8) or reply (typ 0).
func icmpEcho(typ byte, src, dst netip.Addr, id, seq uint16, size int) []byte {
	p := make([]byte, size)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:4], uint16(size))
	p[8], p[9] = 64, packet.ProtoICMP
	s, d := src.As4(), dst.As4()
	copy(p[12:16], s[:])
	copy(p[16:20], d[:])
	binary.BigEndian.PutUint16(p[10:12], packet.Checksum(p[:20], 0))
	p[20] = typ
	binary.BigEndian.PutUint16(p[24:26], id)
	binary.BigEndian.PutUint16(p[26:28], seq)
	for i := 28; i < size; i++ {
		p[i] = byte(i)
	}
	binary.BigEndian.PutUint16(p[22:24], packet.Checksum(p[20:], 0))
	return p
}

func isICMP(p []byte, typ byte, from netip.Addr) bool {
	return len(p) >= 28 && p[0]>>4 == 4 && p[9] == packet.ProtoICMP && netip.AddrFrom4([4]byte(p[12:16])) == from && p[20] == typ
}

// writeSecret writes a 0600 file.
func writeSecret(t testing.TB, path, text string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func mustParse(t testing.TB, yaml string) Settings {
	t.Helper()
	s, err := config.NewSettings("test.yaml", "protocols[0].settings", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	v, err := parse(s)
	if err != nil {
		t.Fatalf("parse:\n%s\n%v", yaml, err)
	}
	return v.(Settings)
}

// initiatorYAML is our settings against the charon of l.
func initiatorYAML(t testing.TB, l *netLab, pskFile string, extra string) string {
	return fmt.Sprintf(`local_addrs: %s
remote_addrs: %s
local_port: %d
natt_port: %d
local_id: b
remote_id: a
psk_file: %s
local_ts: [%s/32]
remote_ts: [%s/32]
%s`, l.ip, l.far, packettest.FreeUDPPort(t), packettest.FreeUDPPort(t), pskFile, l.innerNear, l.innerFar, extra)
}

func pskFile(t testing.TB, dir, name, psk string) string {
	return writeSecret(t, filepath.Join(dir, name), psk+"\n")
}

func execOut(args ...string) (string, error) {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	return string(out), err
}

func fixICMP(p []byte) {
	ihl := int(p[0]&0x0f) * 4
	binary.BigEndian.PutUint16(p[ihl+2:], packet.Checksum(p[ihl:], 0))
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// icmp6Echo returns an ICMPv6 echo request from src to dst.
func icmp6Echo(src, dst netip.Addr, id, seq uint16, size int) []byte {
	p := make([]byte, size)
	p[0] = 0x60
	binary.BigEndian.PutUint16(p[4:6], uint16(size-40))
	p[6], p[7] = packet.ProtoICMPv6, 64
	s, d := src.As16(), dst.As16()
	copy(p[8:24], s[:])
	copy(p[24:40], d[:])
	p[40] = 128
	binary.BigEndian.PutUint16(p[44:46], id)
	binary.BigEndian.PutUint16(p[46:48], seq)
	binary.BigEndian.PutUint16(p[42:44], packet.Checksum(p[40:], packet.PseudoHeaderSum(src, dst, packet.ProtoICMPv6, size-40)))
	return p
}
