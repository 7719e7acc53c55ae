package wireguard

import (
	"encoding/binary"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"switchyard/packet"
	"switchyard/packet/packettest"
)

// ipv4Packet returns a valid IPv4 packet of size bytes (≥ 24) from src to
// dst whose payload starts with seq.
func ipv4Packet(src, dst [4]byte, seq, size int) []byte {
	p := make([]byte, size)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:4], uint16(size))
	p[8], p[9] = 64, packet.ProtoUDP
	copy(p[12:16], src[:])
	copy(p[16:20], dst[:])
	binary.BigEndian.PutUint32(p[20:24], uint32(seq))
	for i := 24; i < size; i++ {
		p[i] = byte(seq + i)
	}
	return p
}

// ipv6Packet returns a valid IPv6 packet of size bytes (≥ 44) from src to
// dst whose payload starts with seq.
func ipv6Packet(src, dst [16]byte, seq, size int) []byte {
	p := make([]byte, size)
	p[0] = 0x60
	binary.BigEndian.PutUint16(p[4:6], uint16(size-40))
	p[6], p[7] = packet.ProtoUDP, 64
	copy(p[8:24], src[:])
	copy(p[24:40], dst[:])
	binary.BigEndian.PutUint32(p[40:44], uint32(seq))
	for i := 44; i < size; i++ {
		p[i] = byte(seq * i)
	}
	return p
}

// batchOf copies pkts into a batch from pool.
func batchOf(t testing.TB, pool *packet.Pool, pkts [][]byte) *packet.Batch {
	t.Helper()
	return packettest.BatchOf(t, pool, pkts...)
}

func quietSystem() *actor.ActorSystem {
	return actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}))
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func freePort(t testing.TB) uint16 { t.Helper(); return packettest.FreeUDPPort(t) }
