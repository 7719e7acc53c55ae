//go:build linux

package shm

// The daemon's end of one host's region.
//
//  1. New creates the region: a memfd sealed against shrink and grow, mapped
//     once, its header written, every RX slot lent to the host on the fill
//     ring. HostFiles hands the memfd and the host's doorbell end over
//     (ExtraFiles of a spawned host, or Listener.HandOver).
//  2. Send (on the remote protocol's actor) first reaps completions: each
//     is checked against the loan (slot in the TX range, lent as TX, same
//     generation) and its slot freed. It then copies packets into free TX
//     slots, one copy each, writes their descriptors, publishes them with
//     one store of the TX producer index, and rings the host if it sleeps.
//     It reports how far it got; the rest is the caller's to stage or drop.
//  3. Wait (on a dedicated goroutine) blocks on the doorbell until the RX
//     ring has packets, completions arrive after Send ran short of slots,
//     the host dies (ErrPeerGone: its doorbell end closed) or Close.
//  4. Receive copies each RX packet out of its slot into a buffer of the
//     daemon's pool before anything parses it, so the host cannot change
//     bytes the daemon checked. Each descriptor field is read once and
//     checked: ring advance, slot range, loan, generation, length. The slots
//     are then lent again on the fill ring under new generations.
//  5. A violation is latched: that call and every later one return it. The
//     caller counts malformed, kills the host and restarts it.
//  6. When the host is gone, Receive drains what it published, and Reclaim
//     takes back every lent slot, bumps their generations and reports what
//     was lost with the host. Counts are exact throughout: TXHanded =
//     TXCompleted + TXLost + TXInFlight. A restarted host gets a new Daemon.
//
// Concurrency: Send and Reap (the TX half) may run concurrently with
// Receive (the RX half) and with Wait; each half is serialized by its own
// mutex. Counts, Close and Reclaim may be called from any goroutine.

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"switchyard/packet"
)

// Daemon is the daemon's end of one host's region. It owns the region and
// all allocation state; the host only ever sees slot numbers.
type Daemon struct {
	reg     region
	id      RegionID
	memfd   int  // -1 for a region not backed by a memfd (tests)
	mapped  bool // reg.mem is an mmap to unmap on Close
	hostEnd int  // the host's doorbell end until HostFiles hands it over; -1 after
	bell    bell

	// TX half: the TX ring's producer, the completion ring's consumer.
	txMu      sync.Mutex
	tx        partition
	txProd    uint32        // our producer index on the TX ring
	txSeen    uint32        // the host's TX consumer index, as last checked
	cmCons    uint32        // our consumer index on the completion ring
	cmConsPub atomic.Uint32 // cmCons, for Wait
	wantSlots atomic.Bool   // Send ran short of slots: Wait reports EventSlots

	// RX half: the fill ring's producer, the RX ring's consumer.
	rxMu      sync.Mutex
	rx        partition
	fillProd  uint32
	fillSeen  uint32
	rxCons    uint32
	rxConsPub atomic.Uint32
	bufs      [packet.MaxBatch][]byte

	handed, completed, lostTX, received atomic.Uint64

	mu        sync.Mutex // closing and waiter registration
	closed    atomic.Bool
	waiting   atomic.Bool // a goroutine is in Wait
	reclaimed atomic.Bool
	fault     atomic.Pointer[Violation]
	waiters   sync.WaitGroup
}

// New creates a region for one host incarnation.
func New(cfg Config) (*Daemon, error) {
	cfg = cfg.withDefaults()
	l, err := newLayout(cfg.SlotBytes, cfg.TXSlots, cfg.RXSlots)
	if err != nil {
		return nil, fmt.Errorf("shm: config: %w", err)
	}
	var id RegionID
	if _, err := rand.Read(id[:]); err != nil {
		return nil, fmt.Errorf("shm: region id: %w", err)
	}
	fd, err := createSealed(int64(l.size))
	if err != nil {
		return nil, fmt.Errorf("shm: create region of %d bytes: %w", l.size, err)
	}
	mem, err := unix.Mmap(fd, 0, int(l.size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("shm: map region of %d bytes: %w", l.size, err)
	}
	dEnd, hEnd, err := newBellPair()
	if err != nil {
		unix.Munmap(mem)
		unix.Close(fd)
		return nil, fmt.Errorf("shm: %w", err)
	}
	l.writeHeader(mem, id)
	d := newDaemon(mem, l, id, dEnd)
	d.memfd, d.mapped, d.hostEnd = fd, true, hEnd
	d.rxMu.Lock()
	err = d.refillLocked()
	d.rxMu.Unlock()
	if err != nil { // cannot happen on a fresh region
		d.Close()
		return nil, err
	}
	return d, nil
}

// createSealed returns a memfd of size bytes that nobody can shrink or grow
// (so no mapping of it can ever fault past its end: no SIGBUS) and whose
// seals nobody can change.
func createSealed(size int64) (int, error) {
	const name = "switchyard-shm"
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING|unix.MFD_NOEXEC_SEAL)
	if errors.Is(err, unix.EINVAL) { // before Linux 6.3: no MFD_NOEXEC_SEAL
		fd, err = unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	}
	if err != nil {
		return -1, fmt.Errorf("memfd_create: %w", err)
	}
	if err := unix.Ftruncate(fd, size); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("ftruncate: %w", err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_SEAL); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("seal: %w", err)
	}
	return fd, nil
}

// newDaemon builds the daemon's state over a mapping whose header is
// written. bellFD may be -1 (no doorbell: tests that drive both ends).
func newDaemon(mem []byte, l layout, id RegionID, bellFD int) *Daemon {
	reg := view(mem, l)
	d := &Daemon{
		reg:     reg,
		id:      id,
		memfd:   -1,
		hostEnd: -1,
		bell:    bell{fd: bellFD, mine: reg.daemonSleep, peers: reg.hostSleep},
	}
	d.tx.init(0, l.txSlots)
	d.rx.init(l.txSlots, l.rxSlots)
	return d
}

// ID names the region (this host incarnation).
func (d *Daemon) ID() RegionID { return d.id }

// MaxPacketBytes is the longest packet that crosses.
func (d *Daemon) MaxPacketBytes() int { return int(d.reg.l.maxLen()) }

// RegionBytes is the size of the region (address space; only touched pages
// are resident).
func (d *Daemon) RegionBytes() int { return int(d.reg.l.size) }

// HostFiles hands over what the host needs to attach: a duplicate of the
// region's memfd and the host's end of the doorbell socket. The caller owns
// the files: pass them to the host and close them once it has them (after
// exec.Cmd.Start, or after sending them), so that the host's death closes
// the doorbell's last host end and Wait sees it. It can be called once.
func (d *Daemon) HostFiles() (Files, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.closed.Load():
		return Files{}, ErrClosed
	case d.hostEnd < 0 || d.memfd < 0:
		return Files{}, errors.New("shm: host files already handed over")
	}
	rfd, err := unix.FcntlInt(uintptr(d.memfd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return Files{}, fmt.Errorf("shm: dup region fd: %w", err)
	}
	f := Files{
		Region: os.NewFile(uintptr(rfd), "shm-region"),
		Bell:   os.NewFile(uintptr(d.hostEnd), "shm-bell"),
	}
	d.hostEnd = -1
	return f, nil
}

// usable reports why the region carries no more traffic, if it does not.
func (d *Daemon) usable() error {
	if d.closed.Load() {
		return ErrClosed
	}
	if v := d.fault.Load(); v != nil {
		return v
	}
	if d.reclaimed.Load() {
		return ErrReclaimed
	}
	return nil
}

// fail latches the first violation and returns the latched one.
func (d *Daemon) fail(v *Violation) error {
	d.fault.CompareAndSwap(nil, v)
	return d.fault.Load()
}

// Send borrows b: it copies b's packets, from index from on and in order,
// into free TX slots (one copy each) and publishes them to the host with
// one index store. It returns the index of the first packet not sent:
// b.Len() when all were. Less means the host holds every TX slot: the
// caller's drop policy decides about the packets from next on. b stays the
// caller's either way: release it, or keep it staged and call Send again
// from next once Wait reports EventSlots (descriptors already published
// cannot be recalled, so drop_oldest drops the oldest staged batch).
//
// ErrOversized: packet next does not fit a slot; the ones before it were
// sent (drop it and call again from next+1). A *Violation found while
// reaping completions, ErrReclaimed or ErrClosed: nothing was sent.
func (d *Daemon) Send(b *packet.Batch, from int) (int, error) {
	d.txMu.Lock()
	defer d.txMu.Unlock()
	if err := d.usable(); err != nil {
		return from, err
	}
	if err := d.reapLocked(); err != nil {
		return from, err
	}
	next := from
	for {
		var err error
		if next, err = d.sendLocked(b, next); err != nil || next == b.Len() {
			return next, err
		}
		// Short of slots: ask the waiter for EventSlots, then look once
		// more, since a completion published before the ask rang nobody.
		if !d.wantSlots.Swap(true) {
			d.bell.ask(bellSlots)
		}
		if d.reg.rings[ringCompletion].hdr.prod.Load() == d.cmCons {
			return next, nil
		}
		if err := d.reapLocked(); err != nil {
			return next, err
		}
	}
}

// sendLocked copies packets from index from into free slots and publishes
// them, and returns the index of the first packet not sent.
func (d *Daemon) sendLocked(b *packet.Batch, from int) (int, error) {
	r := &d.reg.rings[ringTX]
	cons := r.hdr.cons.Load()
	if k, detail := checkConsumed(cons, d.txSeen, d.txProd); k != 0 {
		return from, d.fail(violation(k, "tx", cons, "%s", detail))
	}
	d.txSeen = cons
	room := min(uint32(len(d.tx.free)), d.reg.l.ringEntries-(d.txProd-cons))
	maxLen := int(d.reg.l.maxLen())
	next, prod := from, d.txProd
	var err error
	for ; next < b.Len() && prod-d.txProd < room; next++ {
		pkt := b.Packet(next)
		if len(pkt) > maxLen {
			err = fmt.Errorf("shm: send packet %d of %d bytes: a slot holds %d: %w", next, len(pkt), maxLen, ErrOversized)
			break
		}
		slot, gen := d.tx.lend(slotTX)
		copy(d.reg.slot(slot)[packet.Headroom:], pkt)
		e := r.at(prod)
		atomic.StoreUint32(&e.slot, slot)
		atomic.StoreUint32(&e.len, uint32(len(pkt)))
		atomic.StoreUint32(&e.gen, gen)
		prod++
	}
	if n := prod - d.txProd; n > 0 {
		d.txProd = prod
		r.hdr.prod.Store(prod)
		d.handed.Add(uint64(n))
		d.bell.ring(bellReceive)
	}
	return next, err
}

// Reap takes back the TX slots the host completed and reports how many.
// Send reaps first, so only a caller that wants slots back without sending
// needs it.
func (d *Daemon) Reap() (int, error) {
	d.txMu.Lock()
	defer d.txMu.Unlock()
	if err := d.usable(); err != nil {
		return 0, err
	}
	before := d.cmCons
	err := d.reapLocked()
	return int(d.cmCons - before), err
}

func (d *Daemon) reapLocked() error {
	r := &d.reg.rings[ringCompletion]
	prod := r.hdr.prod.Load()
	n, k, detail := checkAdvance(prod, d.cmCons, d.reg.l.ringEntries)
	if k != 0 {
		return d.fail(violation(k, "completion", prod, "%s", detail))
	}
	if n == 0 {
		return nil
	}
	var err error
	done := uint32(0)
	for ; done < n; done++ {
		i := d.cmCons + done
		e := r.at(i)
		slot := atomic.LoadUint32(&e.slot)
		gen := atomic.LoadUint32(&e.gen)
		if k, detail := d.tx.check(slot, gen, slotTX); k != 0 {
			err = d.fail(violation(k, "completion", i, "%s", detail))
			break
		}
		d.tx.give(slot)
	}
	d.cmCons += done
	d.cmConsPub.Store(d.cmCons)
	r.hdr.cons.Store(d.cmCons)
	d.completed.Add(uint64(done))
	return err
}

// Wait blocks until there is work, and reports it: EventReceive (call
// Receive), EventSlots (completions came back after Send ran short: tell
// the sender to flush what it staged). It returns ErrPeerGone once the host
// closed its doorbell end (it exited or was killed) and everything it
// published was reported; ErrClosed after Close; a *Violation
// (DoorbellFlood) when the host rings uninvited. A host that rings for
// nothing is throttled (Counts.Throttled), not reported.
//
// Call Wait from one goroutine at a time, a dedicated one: it blocks its
// thread in read(2), which wakes faster than Go's netpoller.
func (d *Daemon) Wait() (Event, error) {
	if !d.enterWait() {
		return 0, ErrClosed
	}
	defer d.waiters.Done()
	if d.waiting.Swap(true) {
		return 0, errConcurrentWait
	}
	defer d.waiting.Store(false)
	mask := func() uint32 {
		if d.wantSlots.Load() {
			return bellReceive | bellSlots
		}
		return bellReceive
	}
	for {
		if err := d.usable(); err != nil {
			return 0, err
		}
		ev, eof, err := d.bell.sleep(mask, d.ready, d.progress)
		v, flood := err.(*Violation) // as sleep returns it; errors.As would allocate
		switch {
		case ev != 0:
			return d.took(ev), nil
		case flood:
			return 0, d.fail(v)
		case err != nil:
			return 0, fmt.Errorf("shm: daemon wait: %w", err)
		case d.closed.Load():
			return 0, ErrClosed
		}
		if ev = d.ready(mask()); ev != 0 {
			return d.took(ev), nil
		}
		if eof {
			return 0, ErrPeerGone
		}
	}
}

func (d *Daemon) enterWait() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed.Load() {
		return false
	}
	d.waiters.Add(1)
	return true
}

// ready reports what the rings hold for the daemon. It reads only indices.
func (d *Daemon) ready(mask uint32) Event {
	var ev Event
	if d.reg.rings[ringRX].hdr.prod.Load() != d.rxConsPub.Load() {
		ev |= EventReceive
	}
	if mask&bellSlots != 0 && d.reg.rings[ringCompletion].hdr.prod.Load() != d.cmConsPub.Load() {
		ev |= EventSlots
	}
	return ev
}

// progress is the producer indices Wait watches, as one value (bell.sleep).
func (d *Daemon) progress() uint64 {
	return uint64(d.reg.rings[ringRX].hdr.prod.Load()) | uint64(d.reg.rings[ringCompletion].hdr.prod.Load())<<32
}

// took reports ev, EventSlots once per shortage.
func (d *Daemon) took(ev Event) Event {
	if ev&EventSlots != 0 && !d.wantSlots.CompareAndSwap(true, false) {
		ev &^= EventSlots
	}
	return ev
}

// Receive borrows dst, a batch of the daemon's pool (from Pool.GetBatch)
// owned by the caller: it appends up to packet.MaxBatch - dst.Len() packets
// from the RX ring, each copied out of the host's slot into a buffer of
// dst's pool before anything reads it, and reports how many. The appended
// buffers are dst's owner's, like the rest of dst.
//
// ErrNoBuffers: the pool is empty; nothing was taken from the ring. A
// *Violation: the packets before the bad descriptor are in dst (the caller
// may deliver or release them); nothing after it is read, ever.
func (d *Daemon) Receive(dst *packet.Batch) (int, error) {
	d.rxMu.Lock()
	defer d.rxMu.Unlock()
	if err := d.usable(); err != nil {
		return 0, err
	}
	r := &d.reg.rings[ringRX]
	prod := r.hdr.prod.Load()
	avail, k, detail := checkAdvance(prod, d.rxCons, d.reg.l.ringEntries)
	if k != 0 {
		return 0, d.fail(violation(k, "rx", prod, "%s", detail))
	}
	n := min(int(avail), packet.MaxBatch-dst.Len())
	if n <= 0 {
		return 0, nil
	}
	bufs := d.bufs[:n]
	if !dst.Pool().GetBufs(bufs) {
		return 0, ErrNoBuffers
	}
	maxLen := d.reg.l.maxLen()
	var err error
	got := 0
	for ; got < n; got++ {
		i := d.rxCons + uint32(got)
		e := r.at(i)
		slot := atomic.LoadUint32(&e.slot)
		length := atomic.LoadUint32(&e.len)
		gen := atomic.LoadUint32(&e.gen)
		k, detail := d.rx.check(slot, gen, slotFill)
		if k == 0 {
			k, detail = checkLen(length, maxLen)
		}
		if k != 0 {
			err = d.fail(violation(k, "rx", i, "%s", detail))
			break
		}
		end := packet.Headroom + int(length)
		copy(bufs[got][packet.Headroom:end], d.reg.slot(slot)[packet.Headroom:end])
		dst.Append(bufs[got], int(length))
		bufs[got] = nil
		d.rx.give(slot)
	}
	if got < n {
		dst.Pool().PutBufs(bufs[got:])
	}
	d.rxCons += uint32(got)
	d.rxConsPub.Store(d.rxCons)
	r.hdr.cons.Store(d.rxCons)
	d.received.Add(uint64(got))
	if err != nil {
		return got, err
	}
	return got, d.refillLocked()
}

// refillLocked lends every free RX slot to the host on the fill ring, under
// a new generation, with one index store.
func (d *Daemon) refillLocked() error {
	r := &d.reg.rings[ringFill]
	cons := r.hdr.cons.Load()
	if k, detail := checkConsumed(cons, d.fillSeen, d.fillProd); k != 0 {
		return d.fail(violation(k, "fill", cons, "%s", detail))
	}
	d.fillSeen = cons
	room := min(uint32(len(d.rx.free)), d.reg.l.ringEntries-(d.fillProd-cons))
	if room == 0 {
		return nil
	}
	maxLen := d.reg.l.maxLen()
	prod := d.fillProd
	for ; prod-d.fillProd < room; prod++ {
		slot, gen := d.rx.lend(slotFill)
		e := r.at(prod)
		atomic.StoreUint32(&e.slot, slot)
		atomic.StoreUint32(&e.len, maxLen)
		atomic.StoreUint32(&e.gen, gen)
	}
	d.fillProd = prod
	r.hdr.prod.Store(prod)
	d.bell.ring(bellSlots)
	return nil
}

// Counts reports the traffic so far. Safe from any goroutine: the TX
// fields are one snapshot (it waits for a Send in progress), so
// TXHanded = TXCompleted + TXLost + TXInFlight holds exactly.
func (d *Daemon) Counts() Counts {
	d.txMu.Lock()
	c := Counts{
		TXHanded:    d.handed.Load(),
		TXCompleted: d.completed.Load(),
		TXLost:      d.lostTX.Load(),
		TXInFlight:  int(d.tx.lent.Load()),
		TXFree:      len(d.tx.free),
	}
	d.txMu.Unlock()
	c.RXReceived = d.received.Load()
	c.FillLent = int(d.rx.lent.Load())
	c.BellsRung = d.bell.rung.Load()
	c.Sleeps = d.bell.slept.Load()
	c.Throttled = d.bell.throttled.Load()
	return c
}

// Reclaim ends the region's traffic and takes back every slot lent to the
// host, bumping its generation so that nothing naming the old loan is ever
// accepted. It reports what was lost with the host: call it once the host
// is gone (dead, or killed for a violation or for being stuck), after
// draining with Receive. Send and Receive return ErrReclaimed afterwards;
// a second Reclaim reports nothing.
func (d *Daemon) Reclaim() Lost {
	d.txMu.Lock()
	defer d.txMu.Unlock()
	d.rxMu.Lock()
	defer d.rxMu.Unlock()
	if d.reclaimed.Swap(true) {
		return Lost{}
	}
	var lost Lost
	if !d.closed.Load() {
		prod := d.reg.rings[ringRX].hdr.prod.Load()
		if n, k, _ := checkAdvance(prod, d.rxCons, d.reg.l.ringEntries); k == 0 {
			lost.RXUnread = min(int(n), int(d.rx.lent.Load()))
		}
	}
	lost.TXPackets = d.tx.reclaim(slotTX)
	lost.FillSlots = d.rx.reclaim(slotFill)
	d.lostTX.Add(uint64(lost.TXPackets))
	return lost
}

// Close wakes the waiter, waits for it to leave, and releases the region
// and its descriptors. Call it after the last Send and Receive; they return
// ErrClosed afterwards. A host that is alive keeps its own mapping: kill it
// first.
func (d *Daemon) Close() error {
	d.mu.Lock()
	if d.closed.Load() {
		d.mu.Unlock()
		return nil
	}
	d.closed.Store(true)
	d.mu.Unlock()
	if d.bell.fd >= 0 {
		// A read on a socket shut down for reading returns 0 at once.
		unix.Shutdown(d.bell.fd, unix.SHUT_RD)
	}
	d.waiters.Wait()
	d.txMu.Lock()
	defer d.txMu.Unlock()
	d.rxMu.Lock()
	defer d.rxMu.Unlock()
	var errs []error
	if d.mapped {
		errs = append(errs, unix.Munmap(d.reg.mem))
	}
	for _, fd := range []int{d.memfd, d.hostEnd, d.bell.fd} {
		if fd >= 0 {
			errs = append(errs, unix.Close(fd))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("shm: close region: %w", err)
	}
	return nil
}
