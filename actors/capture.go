package actors

// Capture: the start of the outbound data path.
//
//  1. On *actor.Started the actor starts its reader goroutine; the goroutine
//     owns packet.MaxBatch pool buffers and the read scratch.
//  2. The reader calls tun.Device.Read, which fills up to MaxBatch buffers
//     with the segments of one kernel read (offloads on: one TCP super-packet
//     is ~47 segments at MTU 1420).
//  3. The filled buffers move into batches of at most maxBatch packets (no
//     copy), the reader refills its slots from the pool in one call, and each
//     batch is sent to the router (ownership passes).
//  4. When the pool cannot refill, the read is dropped (no_buffers) and the
//     buffers are reused: memory never grows past the pool's limit.
//  5. The reader ends when the device is closed; the node closes the device
//     before it stops the actors.

import (
	"errors"
	"os"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"
	"golang.zx2c4.com/wireguard/tun"

	"switchyard/packet"
	"switchyard/stats"
)

// Capture reads batches from a TUN device and sends them to the router.
type Capture struct {
	dev      tun.Device
	router   *actor.PID
	pool     *packet.Pool
	stats    *stats.Counters
	log      *zap.Logger
	maxBatch int
	done     chan struct{} // closed when the reader exits
}

// NewCapture returns the capture actor. It does not touch dev until started.
// done is closed when the reader goroutine has exited.
func NewCapture(dev tun.Device, router *actor.PID, pool *packet.Pool, st *stats.Counters, maxBatch int, log *zap.Logger, done chan struct{}) *Capture {
	return &Capture{dev: dev, router: router, pool: pool, stats: st, log: log, maxBatch: maxBatch, done: done}
}

// Receive handles the actor's lifecycle; capture takes no data messages.
func (c *Capture) Receive(ctx actor.Context) {
	if _, ok := ctx.Message().(*actor.Started); ok {
		go c.read(ctx.ActorSystem().Root)
	}
}

func (c *Capture) read(root *actor.RootContext) {
	defer close(c.done)
	h, ok := packet.NewHarvester(c.pool, packet.MaxBatch, c.maxBatch)
	for !ok {
		time.Sleep(ReadErrorBackoff) // the pool is exhausted at start: wait for buffers
		h, ok = packet.NewHarvester(c.pool, packet.MaxBatch, c.maxBatch)
	}
	defer h.Release()
	sizes := make([]int, packet.MaxBatch)
	emit := func(b *packet.Batch, bytes int) {
		c.stats.Out(b.Len(), bytes)
		root.Send(c.router, b)
	}
	var readErrs, noBufs stats.LogLimiter

	for {
		n, err := c.dev.Read(h.Slots, sizes, packet.Headroom)
		if err != nil {
			switch {
			case errors.Is(err, os.ErrClosed):
				return
			case errors.Is(err, tun.ErrTooManySegments):
				// n segments are valid; the rest of the super-packet is lost.
				c.stats.Drop(stats.TooManySegments, 1)
			default:
				readErrs.Event(c.log, "tun read failed", "capture", 1, err)
				if n == 0 {
					time.Sleep(ReadErrorBackoff)
					continue
				}
			}
		}
		if n == 0 {
			continue
		}
		total := 0
		for _, s := range sizes[:n] {
			total += s
		}
		c.stats.In(n, total)
		if !h.Move(h.All(n), sizes, emit) {
			// No buffers to read into next time: drop this read, keep its buffers.
			c.stats.Drop(stats.NoBuffers, n)
			noBufs.Event(c.log, "buffer pool exhausted; dropping reads", "capture", n, nil)
		}
	}
}
