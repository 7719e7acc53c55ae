package remote

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"switchyard/actors/remote/remotetest"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"switchyard/actors/remote/wire"
	"switchyard/packet"
	"switchyard/stats"
)

// fill writes packet i of batch tag into p (len(p) ≥ 4): the tag and the
// index in its first four bytes, then a pattern of both, so a packet that
// is lost, repeated, reordered or corrupted is seen.
func fill(p []byte, tag, i int) {
	binary.BigEndian.PutUint16(p[0:], uint16(tag))
	binary.BigEndian.PutUint16(p[2:], uint16(i))
	for j := 4; j < len(p); j++ {
		p[j] = byte(tag*131 + i*31 + j)
	}
}

// packetOf returns packet i of batch tag, of size bytes.
func packetOf(size, tag, i int) []byte {
	p := make([]byte, size)
	fill(p, tag, i)
	return p
}

// newBatch takes len(sizes) buffers from pool and fills packet i with
// packetOf(sizes[i], tag, i).
func newBatch(tb testing.TB, pool *packet.Pool, sizes []int, tag int) *packet.Batch {
	tb.Helper()
	bufs := make([][]byte, len(sizes))
	if !pool.GetBufs(bufs) {
		tb.Fatalf("pool cannot supply %d buffers (%d outstanding)", len(sizes), pool.Outstanding())
	}
	b := pool.GetBatch()
	for i, n := range sizes {
		fill(bufs[i][packet.Headroom:packet.Headroom+n], tag, i)
		b.Append(bufs[i], n)
	}
	return b
}

// repeat returns n sizes of size bytes.
func repeat(n, size int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = size
	}
	return s
}

// spread returns n sizes from 20 to 65535 bytes (both ends included when
// n > 1), in a scrambled order.
func spread(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = 20 + (i*7919)%(packet.MaxPacketBytes-20+1)
	}
	if n > 1 {
		s[n-1] = packet.MaxPacketBytes
	}
	return s
}

// expected returns the packets of batches made by newBatch with the given
// tags, in order.
func expected(sizes []int, tags ...int) [][]byte {
	var out [][]byte
	for _, tag := range tags {
		for i, n := range sizes {
			out = append(out, packetOf(n, tag, i))
		}
	}
	return out
}

// samePackets reports the first difference between got and want.
func samePackets(t *testing.T, what string, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d packets, want %d", what, len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		if string(got[i]) != string(want[i]) {
			t.Errorf("%s: packet %d is %s, want %s", what, i, describe(got[i]), describe(want[i]))
			return
		}
	}
}

// describe names a packet made by fill: its tag, index and size.
func describe(p []byte) string {
	if len(p) < 4 {
		return fmt.Sprintf("a runt of %d bytes", len(p))
	}
	return fmt.Sprintf("batch %d packet %d (%d bytes)", binary.BigEndian.Uint16(p), binary.BigEndian.Uint16(p[2:]), len(p))
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// verifyNoLeaks starts the test transports if need be and checks for
// leaked goroutines after every other cleanup of the test has run (cleanups
// run last registered first).
func verifyNoLeaks(t *testing.T) {
	t.Helper()
	startSides(t)                    // before the snapshot: they live as long as the binary
	opts := remotetest.LeakOptions() // IgnoreCurrent: now, before the test starts any
	t.Cleanup(func() { goleak.VerifyNone(t, opts...) })
}

// side is one process of a remote test: an actor system with a started
// transport and its guard's counters.
type side struct {
	system *actor.ActorSystem
	tr     *Transport
	guard  *stats.Counters
}

func quietSystem() *actor.ActorSystem {
	return actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}))
}

// sideA and sideB are two processes' worth of remote, started once for the
// test binary (by the first test that calls verifyNoLeaks, so a benchmark
// run starts none) and connected both ways: tests use their own process ids
// on them. They are never stopped (the binary exits).
//
// Why once: protoactor's Remote.Start sets grpc's global logger
// (grpclog.SetLoggerV2) while the servers and connections of transports
// started before read it, so a transport started while others run is a data
// race in the library (go test -race reports it; so does
// node/hosttest/loop's TestNodeLoopsPacketsThroughAHost). Starting both up front,
// and ordering each server's first log line before the next Start with
// syncServe, leaves no write after the reads. Stopping is racy too
// (endpointManager.stop writes em.connections while an endpoint writer that
// a peer's shutdown disconnected reads it), so they are not stopped.
var (
	sideA, sideB *side
	sidesOnce    sync.Once
	sidesErr     error
)

func startSides(t *testing.T) {
	t.Helper()
	sidesOnce.Do(func() {
		if sideA, sidesErr = startSide(); sidesErr == nil {
			sideB, sidesErr = startSide()
		}
		if sidesErr == nil {
			sidesErr = warmUp(sideA, sideB)
		}
	})
	if sidesErr != nil {
		t.Fatalf("start the test transports: %v", sidesErr)
	}
}

// testSecret is the secret the test transports share (auth.go).
const testSecret = "test-secret-0123456789abcdef"

// startSide starts an actor system with a transport on a free loopback port.
func startSide() (*side, error) {
	s := &side{system: quietSystem(), guard: &stats.Counters{Name: "remote", Kind: "remote"}}
	tr, err := Start(s.system, netip.MustParseAddrPort("127.0.0.1:0"), Security{Secret: testSecret}, NewGuard(s.guard, zap.NewNop()))
	if err != nil {
		return nil, err
	}
	s.tr = tr
	return s, syncServe(tr.Address)
}

// syncServe connects to a transport's gRPC server and reads its HTTP/2
// settings, which it writes after its Serve goroutine logged: a read
// syscall after the server's write orders the two for the race detector,
// which treats file descriptors as synchronising. It answers with a client
// preface so the server does not log a failed handshake later, and leaves
// the connection open.
func syncServe(address string) error {
	conn, err := net.Dial("tcp", address)
	if err != nil {
		return err
	}
	if _, err := conn.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")); err != nil {
		return err
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(conn, make([]byte, 9)); err != nil { // one frame header
		return fmt.Errorf("read the server's settings: %w", err)
	}
	conn.SetReadDeadline(time.Time{})
	idle = append(idle, conn)
	return nil
}

// idle holds syncServe's connections for the life of the binary.
var idle []net.Conn

// warmUp sends a message each way between a and b and waits for both, so
// the connections' long-lived goroutines exist before any test looks for
// leaks.
func warmUp(a, b *side) error {
	for _, p := range [][2]*side{{a, b}, {b, a}} {
		pr := &probe{got: make(chan any, 1)}
		pid, ok := p[1].system.ProcessRegistry.Add(pr, "warm-up")
		if !ok {
			return errors.New("warm-up id taken")
		}
		p[0].system.Root.Send(pid, &wire.Envelope{Kind: wire.Kind_STATS})
		select {
		case <-pr.got:
		case <-time.After(10 * time.Second):
			return errors.New("warm-up message did not arrive")
		}
		p[1].system.ProcessRegistry.Remove(pid)
	}
	return nil
}

// probe is a Process that hands every user message it is sent to a channel.
type probe struct{ got chan any }

func (p *probe) SendUserMessage(_ *actor.PID, m any) { p.got <- m }
func (p *probe) SendSystemMessage(*actor.PID, any)   {}
func (p *probe) Stop(*actor.PID)                     {}

// addProbe registers a probe under id.
func addProbe(t *testing.T, system *actor.ActorSystem, id string) (*probe, *actor.PID) {
	t.Helper()
	p := &probe{got: make(chan any, 64)}
	pid, ok := system.ProcessRegistry.Add(p, id)
	if !ok {
		t.Fatalf("id %q taken", id)
	}
	t.Cleanup(func() { system.ProcessRegistry.Remove(pid) })
	return p, pid
}
