// Package devicetest provides in-memory doubles of the data path's ends for
// tests and benchmarks: a tun.Device whose reads come from a queue (or an
// endless generator) and whose writes are recorded or counted, a conn.Bind
// sink, and a Collector that stands in for the injector.
package packettest

import (
	"os"
	"sync"
	"sync/atomic"

	"golang.zx2c4.com/wireguard/tun"

	"switchyard/packet"
)

// Device is an in-memory tun.Device. Reads return the packets queued with
// Inject (or, with a Generator, endless copies of a template); writes are
// recorded (Written) or only counted.
type Device struct {
	batch int // packets per Read, ≤ packet.MaxBatch

	mu      sync.Mutex
	cond    *sync.Cond
	queue   [][]byte
	closed  bool
	written [][]byte
	record  bool

	gen     []byte // template packet for endless reads; nil for queued reads
	genLeft atomic.Int64
	// Gate, if set, is called before each generated read and may block:
	// a benchmark uses it to keep a bounded number of packets in flight.
	Gate func()
	// HeaderOnly makes generated reads write only the template's first
	// HeaderBytes into each buffer (the packet length stays the template's):
	// the payload is whatever the buffer held. For benchmarks of a pipeline
	// that never reads payloads, so the source's memcpy is not measured.
	HeaderOnly bool
	events     chan tun.Event
	Reads      atomic.Uint64 // packets handed out by Read
	Writes     atomic.Uint64 // packets accepted by Write
	WriteErr   error         // returned by Write when set
}

// New returns a device that hands out queued packets up to batch per Read
// and records every written packet.
func New(batch int) *Device {
	d := &Device{batch: batch, record: true, events: make(chan tun.Event, 1)}
	d.cond = sync.NewCond(&d.mu)
	d.events <- tun.EventUp
	return d
}

// NewGenerator returns a device whose Read returns batch copies of tmpl per
// call, count packets in all (then it blocks until Close), and whose Write
// only counts.
func NewGenerator(tmpl []byte, batch int, count int64) *Device {
	d := New(batch)
	d.gen, d.record = tmpl, false
	d.genLeft.Store(count)
	return d
}

// Inject queues packets (copied) for Read.
func (d *Device) Inject(pkts ...[]byte) {
	d.mu.Lock()
	for _, p := range pkts {
		d.queue = append(d.queue, append([]byte(nil), p...))
	}
	d.mu.Unlock()
	d.cond.Broadcast()
}

// Written returns copies of the packets written so far, in order.
func (d *Device) Written() [][]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([][]byte(nil), d.written...)
}

// File is not supported.
func (d *Device) File() *os.File { return nil }

// Read implements tun.Device.
func (d *Device) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if d.gen != nil {
		return d.readGen(bufs, sizes, offset)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for len(d.queue) == 0 && !d.closed {
		d.cond.Wait()
	}
	if d.closed {
		return 0, os.ErrClosed
	}
	n := 0
	for n < len(bufs) && n < d.batch && len(d.queue) > 0 {
		sizes[n] = copy(bufs[n][offset:], d.queue[0])
		d.queue[0] = nil
		d.queue = d.queue[1:]
		n++
	}
	d.Reads.Add(uint64(n))
	return n, nil
}

func (d *Device) readGen(bufs [][]byte, sizes []int, offset int) (int, error) {
	if d.Gate != nil {
		d.Gate()
	}
	n := min(len(bufs), d.batch)
	left := d.genLeft.Add(-int64(n))
	if left < 0 {
		n += int(left)
		d.genLeft.Store(0)
	}
	if n <= 0 {
		d.mu.Lock()
		for !d.closed {
			d.cond.Wait()
		}
		d.mu.Unlock()
		return 0, os.ErrClosed
	}
	d.mu.Lock()
	closed := d.closed
	d.mu.Unlock()
	if closed {
		return 0, os.ErrClosed
	}
	src := d.gen
	if d.HeaderOnly {
		src = d.gen[:min(HeaderBytes, len(d.gen))]
	}
	for i := 0; i < n; i++ {
		copy(bufs[i][offset:], src)
		sizes[i] = len(d.gen)
	}
	d.Reads.Add(uint64(n))
	return n, nil
}

// HeaderBytes (64 bytes) is what a HeaderOnly generator writes per packet:
// any IPv4/IPv6 header with a transport header.
const HeaderBytes = 64

// Write implements tun.Device: it records (or counts) bufs[i][offset:].
func (d *Device) Write(bufs [][]byte, offset int) (int, error) {
	if d.WriteErr != nil {
		return 0, d.WriteErr
	}
	d.mu.Lock()
	closed := d.closed
	if d.record && !closed {
		for _, b := range bufs {
			d.written = append(d.written, append([]byte(nil), b[offset:]...))
		}
	}
	d.mu.Unlock()
	if closed {
		return 0, os.ErrClosed
	}
	total := 0
	for _, b := range bufs {
		total += len(b) - offset
	}
	d.Writes.Add(uint64(len(bufs)))
	return total, nil
}

// MTU implements tun.Device.
func (d *Device) MTU() (int, error) { return 1420, nil }

// Name implements tun.Device.
func (d *Device) Name() (string, error) { return "devicetest0", nil }

// Events implements tun.Device.
func (d *Device) Events() <-chan tun.Event { return d.events }

// BatchSize implements tun.Device.
func (d *Device) BatchSize() int { return d.batch }

// Close implements tun.Device: blocked reads return os.ErrClosed.
func (d *Device) Close() error {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	d.cond.Broadcast()
	return nil
}

// IPv4 returns a valid IPv4/UDP packet of size bytes (≥ 28) from src to dst
// whose payload starts with payload.
func IPv4(src, dst [4]byte, size int, payload []byte) []byte {
	p := make([]byte, size)
	p[0] = 0x45
	p[2], p[3] = byte(size>>8), byte(size)
	p[8] = 64
	p[9] = packet.ProtoUDP
	copy(p[12:16], src[:])
	copy(p[16:20], dst[:])
	cs := packet.Checksum(p[:20], 0)
	p[10], p[11] = byte(cs>>8), byte(cs)
	udpLen := size - 20
	p[20], p[21] = 0x30, 0x39 // source port 12345
	p[22], p[23] = 0x30, 0x39
	p[24], p[25] = byte(udpLen>>8), byte(udpLen)
	copy(p[28:], payload)
	return p
}

var _ tun.Device = (*Device)(nil)
