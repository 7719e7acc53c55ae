package actors

// Injector: the end of the inbound data path.
//
//  1. Receives *packet.Batch from protocols (and ICMP errors from the
//     router), taking ownership.
//  2. Drops packets that are not valid IP (malformed): the TUN would refuse
//     the whole batch for one of them.
//  3. Writes the batch with one tun.Device.Write call (the device coalesces
//     TCP/UDP segments in place, GRO) and returns the buffers to the pool.

import (
	"errors"
	"os"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"
	"golang.zx2c4.com/wireguard/tun"

	"switchyard/packet"
	"switchyard/stats"
)

// Injector writes batches to the TUN device.
type Injector struct {
	dev      tun.Device
	stats    *stats.Counters
	log      *zap.Logger
	writeErr stats.LogLimiter
}

// NewInjector returns the injector actor for dev.
func NewInjector(dev tun.Device, st *stats.Counters, log *zap.Logger) *Injector {
	return &Injector{dev: dev, stats: st, log: log}
}

func validPacket(pkt []byte) bool { return packet.Check(pkt) == nil }

// Receive handles batches (takes ownership) and the lifecycle.
func (in *Injector) Receive(ctx actor.Context) {
	switch b := ctx.Message().(type) {
	case *packet.Batch:
		in.write(b)
	}
}

func (in *Injector) write(b *packet.Batch) {
	if dropped := b.Filter(validPacket); dropped > 0 {
		in.stats.Drop(stats.Malformed, dropped)
	}
	n, bytes := b.Len(), b.Bytes()
	if n == 0 {
		b.Release()
		return
	}
	_, err := in.dev.Write(b.Bufs, packet.Headroom)
	failed := 0
	switch {
	case err == nil:
	case errors.Is(err, os.ErrClosed):
		failed = n
		in.stats.Drop(stats.Stopped, n)
	default:
		// Write returns one joined error per failed write; each failed write
		// is at least one packet (a coalesced one may be several).
		failed = 1
		var joined interface{ Unwrap() []error }
		if errors.As(err, &joined) {
			failed = len(joined.Unwrap())
		}
		failed = min(failed, n)
		in.stats.Drop(stats.WriteError, failed)
		in.writeErr.Event(in.log, "tun write failed", "injector", failed, err)
	}
	if failed < n {
		in.stats.Out(n-failed, bytes)
	}
	b.Release()
}
