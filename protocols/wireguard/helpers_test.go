package wireguard

import (
	"bytes"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"switchyard/packet"
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
	bufs := make([][]byte, len(pkts))
	if !pool.GetBufs(bufs) {
		t.Fatal("pool exhausted")
	}
	b := pool.GetBatch()
	for i, p := range pkts {
		n := copy(bufs[i][packet.Headroom:], p)
		b.Append(bufs[i], n)
	}
	return b
}

// collector is a stand-in injector: it keeps every batch it is sent.
type collector struct {
	mu      sync.Mutex
	batches []*packet.Batch
	n       int
}

func (c *collector) Receive(ctx actor.Context) {
	if b, ok := ctx.Message().(*packet.Batch); ok {
		c.mu.Lock()
		c.batches = append(c.batches, b)
		c.n += b.Len()
		c.mu.Unlock()
	}
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// packets copies the packets collected so far, in order.
func (c *collector) packets() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out [][]byte
	for _, b := range c.batches {
		for i := 0; i < b.Len(); i++ {
			out = append(out, bytes.Clone(b.Packet(i)))
		}
	}
	return out
}

func (c *collector) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, b := range c.batches {
		b.Release()
	}
	c.batches, c.n = nil, 0
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

// freePort returns a UDP port free on the wildcard address of both families
// (StdNetBind binds both).
func freePort(t testing.TB) uint16 {
	t.Helper()
	for range 20 {
		c4, err := net.ListenUDP("udp4", &net.UDPAddr{})
		if err != nil {
			t.Fatal(err)
		}
		port := c4.LocalAddr().(*net.UDPAddr).Port
		c6, err := net.ListenPacket("udp6", ":"+strconv.Itoa(port))
		c4.Close()
		if err == nil {
			c6.Close()
			return uint16(port)
		}
	}
	t.Fatal("no free UDP port")
	return 0
}
