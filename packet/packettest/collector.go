package packettest

import (
	"bytes"
	"net"
	"strconv"
	"sync"
	"testing"

	"github.com/asynkron/protoactor-go/actor"

	"switchyard/packet"
)

// Collector is a stand-in injector for protocol tests: it takes ownership
// of every batch it is sent and keeps it until Release.
type Collector struct {
	mu      sync.Mutex
	batches []*packet.Batch
	n       int
}

// Receive implements actor.Actor.
func (c *Collector) Receive(ctx actor.Context) {
	if b, ok := ctx.Message().(*packet.Batch); ok {
		c.mu.Lock()
		c.batches = append(c.batches, b)
		c.n += b.Len()
		c.mu.Unlock()
	}
}

// Count reports the packets collected so far.
func (c *Collector) Count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// Packets copies the packets collected so far, in order.
func (c *Collector) Packets() [][]byte {
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

// BatchSizes reports the packets in each collected batch, in order.
func (c *Collector) BatchSizes() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]int, len(c.batches))
	for i, b := range c.batches {
		out[i] = b.Len()
	}
	return out
}

// Release returns every collected batch to its pool.
func (c *Collector) Release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, b := range c.batches {
		b.Release()
	}
	c.batches, c.n = nil, 0
}

// FreeUDPPort returns a UDP port free on the wildcard address of both
// families (conn.StdNetBind binds both).
func FreeUDPPort(tb testing.TB) uint16 {
	tb.Helper()
	for range 20 {
		c4, err := net.ListenUDP("udp4", &net.UDPAddr{})
		if err != nil {
			tb.Fatal(err)
		}
		port := c4.LocalAddr().(*net.UDPAddr).Port
		c6, err := net.ListenPacket("udp6", ":"+strconv.Itoa(port))
		c4.Close()
		if err == nil {
			c6.Close()
			return uint16(port)
		}
	}
	tb.Fatal("no free UDP port")
	return 0
}
