package wireguard

// The actor-fed TUN: the tun.Device the WireGuard device reads plaintext
// packets from and writes decrypted packets to.
//
// Outbound (router → device):
//
//  1. The actor's Receive takes ownership of a *packet.Batch and passes it
//     into feed (capacity feedDepth). A full channel blocks Receive: the
//     batches behind it wait in the actor's bounded mailbox, which drops by
//     its policy and counts — the backpressure is the mailbox's.
//  2. The device's TUN reader calls Read with its own BatchSize() buffers.
//     Read copies up to len(bufs) packets into them at offset, taking the
//     next batch from feed without waiting while it has room, and releases
//     each batch once its last packet is copied. The copy is unavoidable: the
//     device encrypts in place in message buffers of its own pool, which it
//     hands to Read and keeps.
//  3. Close makes Read return os.ErrClosed and Receive stop waiting; what is
//     left in feed is released and counted (stopped) by drain.
//
// Inbound (device → injector):
//
//  4. Each peer's receiver calls Write with the packets it decrypted, at
//     offset, in buffers the device reuses as soon as Write returns; several
//     peers call it concurrently. Write copies the packets into pool buffers
//     (one GetBufs per batch), appends them to a *packet.Batch and sends it
//     to the injector (ownership passes).

import (
	"os"
	"sync"
	"sync/atomic"

	"golang.zx2c4.com/wireguard/tun"

	"switchyard/packet"
	"switchyard/protocols"
	"switchyard/stats"
)

// feedTUN is the tun.Device of one device instance. Read is called by one
// goroutine (the device's TUN reader); Write by several.
type feedTUN struct {
	name     string
	env      *protocols.Env
	maxBatch int // packets per inbound batch, ≤ packet.MaxBatch

	feed   chan *packet.Batch
	events chan tun.Event
	closed chan struct{}
	mu     sync.Mutex // serializes up and Close (events is closed by Close)
	isShut atomic.Bool

	// Read's state: the batch being copied out and the next packet in it.
	cur *packet.Batch
	pos int

	poolLog stats.LogLimiter // pool exhaustion in Write
	emit    packet.Emit      // t.send, made once
}

func newFeedTUN(name string, env *protocols.Env, maxBatch int) *feedTUN {
	t := &feedTUN{
		name:     name,
		env:      env,
		maxBatch: maxBatch,
		feed:     make(chan *packet.Batch, feedDepth),
		events:   make(chan tun.Event, 1),
		closed:   make(chan struct{}),
	}
	t.emit = t.send
	return t
}

// up reports the interface up to the device (once, after it is configured).
func (t *feedTUN) up() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.isShut.Load() {
		return
	}
	select {
	case t.events <- tun.EventUp:
	default:
	}
}

// push takes ownership of b and queues it for Read, waiting while the feed
// is full. It reports false, having released b and counted it as stopped,
// when the TUN is closed.
func (t *feedTUN) push(b *packet.Batch) bool {
	if t.isShut.Load() {
		t.dropStopped(b)
		return false
	}
	select {
	case t.feed <- b:
		return true
	case <-t.closed:
		t.dropStopped(b)
		return false
	}
}

func (t *feedTUN) dropStopped(b *packet.Batch) {
	t.env.ToNetwork.Drop(stats.Stopped, b.Len())
	b.Release()
}

// Read implements tun.Device: it copies up to len(bufs) queued packets into
// bufs at offset and waits only while it has none.
func (t *feedTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, bytes := 0, 0
	for n < len(bufs) {
		if t.cur == nil {
			if n == 0 {
				select {
				case t.cur = <-t.feed:
				case <-t.closed:
					return 0, os.ErrClosed
				}
			} else {
				select {
				case t.cur = <-t.feed:
				default:
				}
				if t.cur == nil {
					break
				}
			}
			t.pos = 0
		}
		for t.pos < t.cur.Len() && n < len(bufs) {
			sizes[n] = copy(bufs[n][offset:], t.cur.Packet(t.pos))
			bytes += sizes[n]
			n++
			t.pos++
		}
		if t.pos == t.cur.Len() {
			t.cur.Release()
			t.cur = nil
		}
	}
	if n > 0 {
		t.env.ToNetwork.Out(n, bytes)
	}
	return n, nil
}

// Write implements tun.Device: it copies the packets in bufs (after offset)
// into pooled batches for the injector. Safe for concurrent use. It reports
// len(bufs): packets the pool cannot hold are dropped and counted
// (no_buffers), which the device could do nothing about.
func (t *feedTUN) Write(bufs [][]byte, offset int) (int, error) {
	env := t.env
	if t.isShut.Load() {
		// The device is closing: count what it still hands over.
		bytes := 0
		for _, buf := range bufs {
			bytes += len(buf) - offset
		}
		env.FromNetwork.In(len(bufs), bytes)
		env.FromNetwork.Drop(stats.Stopped, len(bufs))
		return 0, os.ErrClosed
	}
	inBytes := 0
	for _, buf := range bufs {
		inBytes += len(buf) - offset
	}
	env.FromNetwork.In(len(bufs), inBytes)
	if dropped := env.Pool.Copy(bufs, offset, t.maxBatch, t.emit); dropped > 0 {
		env.FromNetwork.Drop(stats.NoBuffers, dropped)
		t.poolLog.Event(env.Log, "wireguard receive: buffer pool exhausted, packets dropped", t.name, dropped, nil)
	}
	return len(bufs), nil
}

// send takes ownership of b: it counts it out and passes it to the
// injector.
func (t *feedTUN) send(b *packet.Batch, bytes int) {
	t.env.FromNetwork.Out(b.Len(), bytes)
	t.env.System.Root.Send(t.env.Injector, b)
}

// drain releases the batches left in the feed and the one Read was copying
// from, counting their packets as stopped. It is called once the device has
// closed, when no Read can run any more.
func (t *feedTUN) drain() {
	if t.cur != nil {
		t.env.ToNetwork.Drop(stats.Stopped, t.cur.Len()-t.pos)
		t.cur.Release()
		t.cur = nil
	}
	for {
		select {
		case b := <-t.feed:
			t.dropStopped(b)
		default:
			return
		}
	}
}

// BatchSize implements tun.Device: the device sizes its read batches as the
// larger of this and the bind's (128 on Linux).
func (t *feedTUN) BatchSize() int { return packet.MaxBatch }

// MTU implements tun.Device; the device uses it only for padding.
func (t *feedTUN) MTU() (int, error) { return tunMTU, nil }

// Name implements tun.Device.
func (t *feedTUN) Name() (string, error) { return t.name, nil }

// Events implements tun.Device: EventUp once the device is configured; the
// channel closes with the TUN, which ends the device's event reader.
func (t *feedTUN) Events() <-chan tun.Event { return t.events }

// File implements tun.Device: there is no file.
func (t *feedTUN) File() *os.File { return nil }

// Close implements tun.Device. The device calls it first thing in its own
// Close; calling it again is harmless.
func (t *feedTUN) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.isShut.Load() {
		t.isShut.Store(true)
		close(t.closed)
		close(t.events)
	}
	return nil
}
