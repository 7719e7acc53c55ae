//go:build linux

package shm

// The host's end of its region.
//
//  1. Attach takes the files the daemon handed over (inherited, or from
//     Dial), reads the header with pread and checks it (magic, version,
//     headroom, sizes against the limits, the file's size, the seals)
//     before it maps anything.
//  2. Wait (on a dedicated goroutine) blocks on the doorbell until the TX
//     ring has packets, fill slots come back after a send ran short, the
//     daemon closes its end (ErrPeerGone) or Close.
//  3. Receive copies TX packets into buffers of the host's pool and
//     completes their slots at once (one completion-ring store). Borrow
//     instead hands out views of the slots (no copy), completed later, in
//     order, with Complete.
//  4. Send copies packets into slots lent on the fill ring and publishes
//     them on the RX ring with one index store. Reserve and Commit let a
//     protocol write its output into the slots directly instead.
//  5. Every publish rings the daemon only if it sleeps waiting for it.
//
// The host checks what the daemon wrote too (slot ranges, lengths, ring
// advances), so a bug on either side is an error, never a panic.
//
// Concurrency: Receive, Borrow and Complete (the TX half) may run
// concurrently with Send, Reserve and Commit (the RX half) and with Wait.

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"switchyard/packet"
)

// Host is a protocol host's end of its region.
type Host struct {
	reg   region
	id    RegionID
	files Files
	bell  bell

	// TX half: the TX ring's consumer, the completion ring's producer.
	inMu      sync.Mutex
	txCons    uint32
	txConsPub atomic.Uint32
	cmProd    uint32
	cmSeen    uint32
	borrowed  []desc // views handed out by Borrow, oldest first
	inBufs    [packet.MaxBatch][]byte

	// RX half: the fill ring's consumer, the RX ring's producer.
	outMu       sync.Mutex
	fillCons    uint32
	fillConsPub atomic.Uint32
	rxProd      uint32
	rxSeen      uint32
	reserved    []desc // fill slots taken off the ring, oldest first
	views       [packet.MaxBatch][]byte
	wantFill    atomic.Bool

	mu      sync.Mutex
	closed  atomic.Bool
	waiting atomic.Bool // a goroutine is in Wait
	fault   atomic.Pointer[Violation]
	waiters sync.WaitGroup
}

// Attach maps the region the daemon handed over. It takes ownership of f:
// the files are closed by Close, or at once if Attach fails.
func Attach(f Files) (h *Host, err error) {
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	if f.Region == nil || f.Bell == nil {
		return nil, errors.New("shm: attach: missing region or doorbell file")
	}
	rfd, bfd := int(f.Region.Fd()), int(f.Bell.Fd())
	// Inherited descriptors arrive without close-on-exec.
	unix.CloseOnExec(rfd)
	unix.CloseOnExec(bfd)
	var st unix.Stat_t
	if err := unix.Fstat(rfd, &st); err != nil {
		return nil, fmt.Errorf("shm: attach: stat region: %w", err)
	}
	seals, err := unix.FcntlInt(uintptr(rfd), unix.F_GET_SEALS, 0)
	if err != nil {
		return nil, fmt.Errorf("shm: attach: region seals: %w", err)
	}
	const want = unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_SEAL
	if seals&want != want {
		return nil, fmt.Errorf("shm: attach: region seals %#x: want shrink, grow and seal (%#x)", seals, want)
	}
	var hdr [headerUsed]byte
	if n, err := unix.Pread(rfd, hdr[:], 0); err != nil || n != len(hdr) {
		return nil, fmt.Errorf("shm: attach: read header (%d bytes): %v", n, err)
	}
	l, id, err := parseHeader(hdr[:], st.Size)
	if err != nil {
		return nil, fmt.Errorf("shm: attach: header: %w", err)
	}
	mem, err := unix.Mmap(rfd, 0, int(l.size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("shm: attach: map %d bytes: %w", l.size, err)
	}
	h = newHost(mem, l, id, bfd)
	h.files = f
	return h, nil
}

// newHost builds the host's state over a mapping. bellFD may be -1 (no
// doorbell: tests that drive both ends).
func newHost(mem []byte, l layout, id RegionID, bellFD int) *Host {
	reg := view(mem, l)
	return &Host{
		reg:      reg,
		id:       id,
		bell:     bell{fd: bellFD, mine: reg.hostSleep, peers: reg.daemonSleep},
		borrowed: make([]desc, 0, l.ringEntries),
		reserved: make([]desc, 0, l.ringEntries),
	}
}

// ID names the region; the host presents it to bind its control
// connection to this incarnation.
func (h *Host) ID() RegionID { return h.id }

// MaxPacketBytes is the longest packet that crosses.
func (h *Host) MaxPacketBytes() int { return int(h.reg.l.maxLen()) }

func (h *Host) usable() error {
	if h.closed.Load() {
		return ErrClosed
	}
	if v := h.fault.Load(); v != nil {
		return v
	}
	return nil
}

func (h *Host) fail(v *Violation) error {
	h.fault.CompareAndSwap(nil, v)
	return h.fault.Load()
}

// takeTX checks the TX ring's producer index and returns how many entries
// wait, at most max, bounded by the room on the completion ring.
func (h *Host) takeTX(max int) (int, error) {
	tx, cm := &h.reg.rings[ringTX], &h.reg.rings[ringCompletion]
	prod := tx.hdr.prod.Load()
	n, k, detail := checkAdvance(prod, h.txCons, h.reg.l.ringEntries)
	if k != 0 {
		return 0, h.fail(violation(k, "tx", prod, "%s", detail))
	}
	cons := cm.hdr.cons.Load()
	if k, detail := checkConsumed(cons, h.cmSeen, h.cmProd); k != 0 {
		return 0, h.fail(violation(k, "completion", cons, "%s", detail))
	}
	h.cmSeen = cons
	room := h.reg.l.ringEntries - (h.cmProd - cons) - uint32(len(h.borrowed))
	return min(int(n), max, int(room)), nil
}

// readTX reads TX entry i once and checks it.
func (h *Host) readTX(i uint32) (desc, error) {
	e := h.reg.rings[ringTX].at(i)
	d := desc{slot: atomic.LoadUint32(&e.slot), len: atomic.LoadUint32(&e.len), gen: atomic.LoadUint32(&e.gen)}
	if d.slot >= h.reg.l.txSlots {
		return d, h.fail(violation(SlotRange, "tx", i, "slot %d not in [0, %d)", d.slot, h.reg.l.txSlots))
	}
	if k, detail := checkLen(d.len, h.reg.l.maxLen()); k != 0 {
		return d, h.fail(violation(k, "tx", i, "%s", detail))
	}
	return d, nil
}

// complete writes completions for ds and publishes them with one store.
// takeTX checked the room.
func (h *Host) complete(ds []desc) {
	if len(ds) == 0 {
		return
	}
	r := &h.reg.rings[ringCompletion]
	for _, d := range ds {
		e := r.at(h.cmProd)
		atomic.StoreUint32(&e.slot, d.slot)
		atomic.StoreUint32(&e.len, 0)
		atomic.StoreUint32(&e.gen, d.gen)
		h.cmProd++
	}
	r.hdr.prod.Store(h.cmProd)
	h.bell.ring(bellSlots)
}

func (h *Host) consumeTX(n int) {
	h.txCons += uint32(n)
	h.txConsPub.Store(h.txCons)
	h.reg.rings[ringTX].hdr.cons.Store(h.txCons)
}

// Receive borrows dst, a batch of the host's pool (from Pool.GetBatch)
// owned by the caller: it appends up to packet.MaxBatch - dst.Len() packets
// from the TX ring, copied into buffers of dst's pool, completes their
// slots, and reports how many. ErrNoBuffers: the pool is empty; nothing was
// taken.
func (h *Host) Receive(dst *packet.Batch) (int, error) {
	h.inMu.Lock()
	defer h.inMu.Unlock()
	if err := h.usable(); err != nil {
		return 0, err
	}
	n, err := h.takeTX(packet.MaxBatch - dst.Len())
	if err != nil || n <= 0 {
		return 0, err
	}
	bufs := h.inBufs[:n]
	if !dst.Pool().GetBufs(bufs) {
		return 0, ErrNoBuffers
	}
	var done [packet.MaxBatch]desc
	got := 0
	for ; got < n; got++ {
		d, verr := h.readTX(h.txCons + uint32(got))
		if verr != nil {
			err = verr
			break
		}
		end := packet.Headroom + int(d.len)
		copy(bufs[got][packet.Headroom:end], h.reg.slot(d.slot)[packet.Headroom:end])
		dst.Append(bufs[got], int(d.len))
		bufs[got] = nil
		done[got] = d
	}
	if got < n {
		dst.Pool().PutBufs(bufs[got:])
	}
	h.consumeTX(got)
	h.complete(done[:got])
	return got, err
}

// Borrow fills views with up to len(views) packets from the TX ring, as
// slices of the slots in packet.Batch layout (packet.Headroom bytes, then
// the packet; capacity to the end of the slot, so a protocol may
// encapsulate in place), and reports how many. The views stay valid until
// Complete gives their slots back; the daemon never reads them again.
func (h *Host) Borrow(views [][]byte) (int, error) {
	h.inMu.Lock()
	defer h.inMu.Unlock()
	if err := h.usable(); err != nil {
		return 0, err
	}
	n, err := h.takeTX(len(views))
	if err != nil || n <= 0 {
		return 0, err
	}
	got := 0
	for ; got < n; got++ {
		d, verr := h.readTX(h.txCons + uint32(got))
		if verr != nil {
			err = verr
			break
		}
		views[got] = h.reg.slot(d.slot)[:packet.Headroom+int(d.len)]
		h.borrowed = append(h.borrowed, d)
	}
	h.consumeTX(got)
	return got, err
}

// Complete gives back the n oldest borrowed slots, with one index store.
// Their views must not be used afterwards.
func (h *Host) Complete(n int) error {
	h.inMu.Lock()
	defer h.inMu.Unlock()
	if err := h.usable(); err != nil {
		return err
	}
	if n < 0 || n > len(h.borrowed) {
		return fmt.Errorf("shm: complete %d slots: %d borrowed", n, len(h.borrowed))
	}
	h.complete(h.borrowed[:n])
	h.borrowed = h.borrowed[:copy(h.borrowed, h.borrowed[n:])]
	return nil
}

// reserveLocked tops the reserved list up from the fill ring and fills
// views with the oldest reserved slots.
func (h *Host) reserveLocked(views [][]byte) (int, error) {
	for {
		if err := h.takeFill(len(views) - len(h.reserved)); err != nil {
			return 0, err
		}
		if len(h.reserved) >= len(views) {
			break
		}
		// Short of slots: ask the waiter for EventSlots, then look once
		// more, since a fill published before the ask rang nobody.
		if !h.wantFill.Swap(true) {
			h.bell.ask(bellSlots)
		}
		if h.reg.rings[ringFill].hdr.prod.Load() == h.fillCons {
			break
		}
	}
	got := min(len(views), len(h.reserved))
	limit := packet.Headroom + int(h.reg.l.maxLen())
	for j := 0; j < got; j++ {
		views[j] = h.reg.slot(h.reserved[j].slot)[:packet.Headroom:limit]
	}
	return got, nil
}

// takeFill moves up to want descriptors from the fill ring to the
// reserved list, checking each.
func (h *Host) takeFill(want int) error {
	r := &h.reg.rings[ringFill]
	prod := r.hdr.prod.Load()
	n, k, detail := checkAdvance(prod, h.fillCons, h.reg.l.ringEntries)
	if k != 0 {
		return h.fail(violation(k, "fill", prod, "%s", detail))
	}
	take := uint32(min(int(n), max(want, 0)))
	var err error
	j := uint32(0)
	for ; j < take; j++ {
		e := r.at(h.fillCons + j)
		d := desc{slot: atomic.LoadUint32(&e.slot), gen: atomic.LoadUint32(&e.gen)}
		if d.slot-h.reg.l.txSlots >= h.reg.l.rxSlots {
			err = h.fail(violation(SlotRange, "fill", h.fillCons+j, "slot %d not in [%d, %d)", d.slot, h.reg.l.txSlots, h.reg.l.txSlots+h.reg.l.rxSlots))
			break
		}
		h.reserved = append(h.reserved, d)
	}
	if j > 0 {
		h.fillCons += j
		h.fillConsPub.Store(h.fillCons)
		r.hdr.cons.Store(h.fillCons)
	}
	return err
}

// Reserve fills views with up to len(views) empty slots lent by the daemon,
// each packet.Headroom bytes long with room for the longest packet, and
// reports how many. Write a packet after the headroom, extend the view to
// it, and publish with Commit. Fewer than asked: the daemon lent no more
// (Wait reports EventSlots when it does); the host's drop policy decides.
// Reserving again returns the same slots first.
func (h *Host) Reserve(views [][]byte) (int, error) {
	h.outMu.Lock()
	defer h.outMu.Unlock()
	if err := h.usable(); err != nil {
		return 0, err
	}
	return h.reserveLocked(views)
}

// Commit publishes views, the first len(views) slots Reserve returned (in
// that order, each extended to packet.Headroom + its packet's length), to
// the daemon with one index store, and reports how many.
func (h *Host) Commit(views [][]byte) (int, error) {
	h.outMu.Lock()
	defer h.outMu.Unlock()
	if err := h.usable(); err != nil {
		return 0, err
	}
	return h.commitLocked(views)
}

func (h *Host) commitLocked(views [][]byte) (int, error) {
	if len(views) > len(h.reserved) {
		return 0, fmt.Errorf("shm: commit %d slots: %d reserved", len(views), len(h.reserved))
	}
	r := &h.reg.rings[ringRX]
	cons := r.hdr.cons.Load()
	if k, detail := checkConsumed(cons, h.rxSeen, h.rxProd); k != 0 {
		return 0, h.fail(violation(k, "rx", cons, "%s", detail))
	}
	h.rxSeen = cons
	n := min(len(views), int(h.reg.l.ringEntries-(h.rxProd-cons)))
	maxLen := int(h.reg.l.maxLen())
	for j := 0; j < n; j++ {
		d, v := h.reserved[j], views[j]
		slot := h.reg.slot(d.slot)
		if len(v) < packet.Headroom || len(v)-packet.Headroom > maxLen || unsafe.SliceData(v) != unsafe.SliceData(slot) {
			n = j
			return h.publish(n), fmt.Errorf("shm: commit view %d (%d bytes): not reserved slot %d, or longer than %d", j, len(v), d.slot, packet.Headroom+maxLen)
		}
		e := r.at(h.rxProd + uint32(j))
		atomic.StoreUint32(&e.slot, d.slot)
		atomic.StoreUint32(&e.len, uint32(len(v)-packet.Headroom))
		atomic.StoreUint32(&e.gen, d.gen)
	}
	return h.publish(n), nil
}

// publish makes the first n reserved slots, whose descriptors are written,
// visible to the daemon.
func (h *Host) publish(n int) int {
	if n == 0 {
		return 0
	}
	h.rxProd += uint32(n)
	h.reg.rings[ringRX].hdr.prod.Store(h.rxProd)
	h.reserved = h.reserved[:copy(h.reserved, h.reserved[n:])]
	h.bell.ring(bellReceive)
	return n
}

// Send borrows bufs, packets in packet.Batch layout (packet.Headroom bytes,
// then the packet; pass b.Bufs[from:] to send a batch from packet from):
// it copies them, in order, into slots lent on the fill ring and publishes
// them with one index store. It returns how many were sent; fewer means no
// more slots were lent, and the host's drop policy decides about the rest.
// ErrOversized: packet n does not fit a slot (drop it, continue after it).
func (h *Host) Send(bufs [][]byte) (int, error) {
	h.outMu.Lock()
	defer h.outMu.Unlock()
	if err := h.usable(); err != nil {
		return 0, err
	}
	views := h.views[:min(len(bufs), len(h.views))]
	n, err := h.reserveLocked(views)
	if err != nil {
		return 0, err
	}
	maxLen := h.reg.l.maxLen()
	var tooBig error
	for j := 0; j < n; j++ {
		pkt := bufs[j][packet.Headroom:]
		if len(pkt) > int(maxLen) {
			tooBig = fmt.Errorf("shm: send packet %d of %d bytes: a slot holds %d: %w", j, len(pkt), maxLen, ErrOversized)
			n = j
			break
		}
		views[j] = views[j][:packet.Headroom+copy(views[j][packet.Headroom:packet.Headroom+len(pkt)], pkt)]
	}
	sent, err := h.commitLocked(views[:n])
	if err == nil {
		err = tooBig
	}
	return sent, err
}

// Wait blocks until there is work, and reports it: EventReceive (packets on
// the TX ring), EventSlots (fill slots came back after Send or Reserve ran
// short). It returns ErrPeerGone once the daemon closed its end and
// everything it published was reported, ErrClosed after Close, a
// *Violation (DoorbellFlood) when the daemon rings uninvited. Call
// it from one goroutine at a time.
func (h *Host) Wait() (Event, error) {
	h.mu.Lock()
	if h.closed.Load() {
		h.mu.Unlock()
		return 0, ErrClosed
	}
	h.waiters.Add(1)
	h.mu.Unlock()
	defer h.waiters.Done()
	if h.waiting.Swap(true) {
		return 0, errConcurrentWait
	}
	defer h.waiting.Store(false)
	mask := func() uint32 {
		if h.wantFill.Load() {
			return bellReceive | bellSlots
		}
		return bellReceive
	}
	for {
		if err := h.usable(); err != nil {
			return 0, err
		}
		ev, eof, err := h.bell.sleep(mask, h.ready, h.progress)
		v, flood := err.(*Violation) // as sleep returns it; errors.As would allocate
		switch {
		case ev != 0:
			return h.took(ev), nil
		case flood:
			return 0, h.fail(v)
		case err != nil:
			return 0, fmt.Errorf("shm: host wait: %w", err)
		case h.closed.Load():
			return 0, ErrClosed
		}
		if ev = h.ready(mask()); ev != 0 {
			return h.took(ev), nil
		}
		if eof {
			return 0, ErrPeerGone
		}
	}
}

func (h *Host) ready(mask uint32) Event {
	var ev Event
	if h.reg.rings[ringTX].hdr.prod.Load() != h.txConsPub.Load() {
		ev |= EventReceive
	}
	if mask&bellSlots != 0 && h.reg.rings[ringFill].hdr.prod.Load() != h.fillConsPub.Load() {
		ev |= EventSlots
	}
	return ev
}

func (h *Host) progress() uint64 {
	return uint64(h.reg.rings[ringTX].hdr.prod.Load()) | uint64(h.reg.rings[ringFill].hdr.prod.Load())<<32
}

func (h *Host) took(ev Event) Event {
	if ev&EventSlots != 0 && !h.wantFill.CompareAndSwap(true, false) {
		ev &^= EventSlots
	}
	return ev
}

// Close wakes the waiter, waits for it to leave, unmaps the region and
// closes the files. Views from Borrow and Reserve are invalid afterwards.
func (h *Host) Close() error {
	h.mu.Lock()
	if h.closed.Load() {
		h.mu.Unlock()
		return nil
	}
	h.closed.Store(true)
	h.mu.Unlock()
	unix.Shutdown(h.bell.fd, unix.SHUT_RD)
	h.waiters.Wait()
	h.inMu.Lock()
	defer h.inMu.Unlock()
	h.outMu.Lock()
	defer h.outMu.Unlock()
	err := errors.Join(unix.Munmap(h.reg.mem), h.files.Close())
	if err != nil {
		return fmt.Errorf("shm: close host end: %w", err)
	}
	return nil
}
