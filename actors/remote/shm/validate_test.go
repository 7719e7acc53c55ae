//go:build linux

package shm

import (
	"encoding/binary"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"switchyard/packet"
)

func TestPartitionCheck(t *testing.T) {
	var p partition
	p.init(8, 4) // slots 8..11
	s1, g1 := p.lend(slotTX)
	s2, g2 := p.lend(slotFill)
	for _, c := range []struct {
		name      string
		slot, gen uint32
		want      slotState
		got       Kind
	}{
		{"lent tx", s1, g1, slotTX, 0},
		{"lent fill", s2, g2, slotFill, 0},
		{"below range", 7, g1, slotTX, SlotRange},
		{"far below range (wraps)", 0, g1, slotTX, SlotRange},
		{"above range", 12, g1, slotTX, SlotRange},
		{"max uint32", ^uint32(0), g1, slotTX, SlotRange},
		{"free slot", 11, 0, slotTX, NotLent},
		{"lent for the other use", s2, g2, slotTX, NotLent},
		{"old generation", s1, g1 - 1, slotTX, Generation},
		{"future generation", s1, g1 + 1, slotTX, Generation},
	} {
		if got, _ := p.check(c.slot, c.gen, c.want); got != c.got {
			t.Errorf("%s: check(%d, %d, %s) = %v, want %v", c.name, c.slot, c.gen, c.want, got, c.got)
		}
	}
	// Reclaim bumps generations: the old loan is refused, even once the
	// slot is lent again.
	if n := p.reclaim(slotTX); n != 1 {
		t.Fatalf("reclaim = %d, want 1", n)
	}
	if got, _ := p.check(s1, g1, slotTX); got != NotLent {
		t.Errorf("completion after reclaim: %v, want NotLent", got)
	}
	for len(p.free) > 0 {
		p.lend(slotTX)
	}
	if got, _ := p.check(s1, g1, slotTX); got != Generation {
		t.Errorf("completion of the old loan after the slot was lent again: %v, want Generation", got)
	}
}

func TestRingChecks(t *testing.T) {
	for _, c := range []struct {
		prod, cons, entries uint32
		n                   uint32
		got                 Kind
	}{
		{5, 5, 8, 0, 0},
		{13, 5, 8, 8, 0},
		{14, 5, 8, 0, IndexAdvance},
		{4, 5, 8, 0, IndexAdvance},   // backwards
		{2, ^uint32(0) - 1, 8, 4, 0}, // across the wrap
		{^uint32(0), 0, 8, 0, IndexAdvance},
	} {
		n, got, _ := checkAdvance(c.prod, c.cons, c.entries)
		if n != c.n || got != c.got {
			t.Errorf("checkAdvance(%d, %d, %d) = %d, %v; want %d, %v", c.prod, c.cons, c.entries, n, got, c.n, c.got)
		}
	}
	for _, c := range []struct {
		cons, last, prod uint32
		got              Kind
	}{
		{3, 3, 10, 0},
		{10, 3, 10, 0},
		{11, 3, 10, IndexAdvance}, // past what was produced
		{2, 3, 10, IndexAdvance},  // backwards
		{1, ^uint32(0), 2, 0},     // across the wrap
	} {
		if got, _ := checkConsumed(c.cons, c.last, c.prod); got != c.got {
			t.Errorf("checkConsumed(%d, %d, %d) = %v, want %v", c.cons, c.last, c.prod, got, c.got)
		}
	}
	for _, c := range []struct {
		n, max uint32
		got    Kind
	}{{0, 100, 0}, {100, 100, 0}, {101, 100, Length}, {^uint32(0), 100, Length}} {
		if got, _ := checkLen(c.n, c.max); got != c.got {
			t.Errorf("checkLen(%d, %d) = %v, want %v", c.n, c.max, got, c.got)
		}
	}
}

// publishRaw writes d at a ring's producer index and advances it by one,
// as a host that ignores the protocol would.
func publishRaw(r *ring, d desc) {
	p := r.hdr.prod.Load()
	*r.at(p) = d
	r.hdr.prod.Store(p + 1)
}

// TestDescriptorValidation drives a daemon with descriptors and ring
// indices a host wrote through its own mapping, and checks which rule each
// breaks.
func TestDescriptorValidation(t *testing.T) {
	type env struct {
		d    *Daemon
		h    *Host
		pool *packet.Pool
		max  uint32
	}
	// fill takes one slot lent on the fill ring the honest way.
	fill := func(t *testing.T, e env) desc {
		t.Helper()
		if err := e.h.takeFill(1); err != nil || len(e.h.reserved) == 0 {
			t.Fatalf("take fill: %v", err)
		}
		d := e.h.reserved[0]
		e.h.reserved = e.h.reserved[1:]
		return d
	}
	// sent sends one packet and returns the descriptor the host got.
	sent := func(t *testing.T, e env) desc {
		t.Helper()
		b := batchOf(t, e.pool, 0, 100)
		defer b.Release()
		if n, err := e.d.Send(b, 0); n != 1 || err != nil {
			t.Fatalf("send = %d, %v", n, err)
		}
		tx := &e.h.reg.rings[ringTX]
		p := tx.hdr.prod.Load()
		return *tx.at(p - 1)
	}
	rx := func(e env) *ring { return &e.h.reg.rings[ringRX] }
	cm := func(e env) *ring { return &e.h.reg.rings[ringCompletion] }
	for _, c := range []struct {
		name string
		host func(t *testing.T, e env) // what the host writes
		op   string                    // "receive" or "send"
		kind Kind                      // 0: no error
		ring string
	}{
		{"valid packet", func(t *testing.T, e env) {
			d := fill(t, e)
			d.len = e.max
			publishRaw(rx(e), d)
		}, "receive", 0, ""},
		{"empty packet", func(t *testing.T, e env) {
			d := fill(t, e)
			d.len = 0
			publishRaw(rx(e), d)
		}, "receive", 0, ""},
		{"slot past the region", func(t *testing.T, e env) {
			d := fill(t, e)
			d.slot = 1 << 20
			publishRaw(rx(e), d)
		}, "receive", SlotRange, "rx"},
		{"tx slot on the rx ring", func(t *testing.T, e env) {
			d := fill(t, e)
			d.slot = 0
			publishRaw(rx(e), d)
		}, "receive", SlotRange, "rx"},
		{"slot -1", func(t *testing.T, e env) {
			d := fill(t, e)
			d.slot = ^uint32(0)
			publishRaw(rx(e), d)
		}, "receive", SlotRange, "rx"},
		{"wrong generation", func(t *testing.T, e env) {
			d := fill(t, e)
			d.gen++
			d.len = 10
			publishRaw(rx(e), d)
		}, "receive", Generation, "rx"},
		{"same slot twice", func(t *testing.T, e env) {
			d := fill(t, e)
			d.len = 10
			publishRaw(rx(e), d)
			publishRaw(rx(e), d)
		}, "receive", NotLent, "rx"},
		{"one byte too long", func(t *testing.T, e env) {
			d := fill(t, e)
			d.len = e.max + 1
			publishRaw(rx(e), d)
		}, "receive", Length, "rx"},
		{"length 2^32-1", func(t *testing.T, e env) {
			d := fill(t, e)
			d.len = ^uint32(0)
			publishRaw(rx(e), d)
		}, "receive", Length, "rx"},
		{"rx index past the ring", func(t *testing.T, e env) {
			rx(e).hdr.prod.Store(uint32(len(rx(e).descs)) + 1)
		}, "receive", IndexAdvance, "rx"},
		{"rx index backwards", func(t *testing.T, e env) {
			rx(e).hdr.prod.Store(^uint32(0))
		}, "receive", IndexAdvance, "rx"},
		{"fill consumer past the producer", func(t *testing.T, e env) {
			d := fill(t, e)
			publishRaw(rx(e), d) // a valid packet, so Receive refills
			r := &e.h.reg.rings[ringFill]
			r.hdr.cons.Store(r.hdr.prod.Load() + 1)
		}, "receive", IndexAdvance, "fill"},
		{"fill consumer backwards", func(t *testing.T, e env) {
			d := fill(t, e)
			publishRaw(rx(e), d)
			e.h.reg.rings[ringFill].hdr.cons.Store(^uint32(0))
		}, "receive", IndexAdvance, "fill"},
		{"valid completion", func(t *testing.T, e env) {
			publishRaw(cm(e), sent(t, e))
		}, "send", 0, ""},
		{"completion of an rx slot", func(t *testing.T, e env) {
			publishRaw(cm(e), fill(t, e))
		}, "send", SlotRange, "completion"},
		{"completion of a slot never sent", func(t *testing.T, e env) {
			publishRaw(cm(e), desc{slot: 3, gen: 1})
		}, "send", NotLent, "completion"},
		{"completion replayed", func(t *testing.T, e env) {
			d := sent(t, e)
			publishRaw(cm(e), d)
			publishRaw(cm(e), d)
		}, "send", NotLent, "completion"},
		{"late completion of an earlier loan", func(t *testing.T, e env) {
			d := sent(t, e)
			publishRaw(cm(e), d)
			if _, err := e.d.Reap(); err != nil {
				t.Fatal(err)
			}
			again := sent(t, e) // the same slot, lent again
			if again.slot != d.slot || again.gen == d.gen {
				t.Fatalf("slot %d gen %d lent again as %d gen %d", d.slot, d.gen, again.slot, again.gen)
			}
			publishRaw(cm(e), d)
		}, "send", Generation, "completion"},
		{"completion index past the ring", func(t *testing.T, e env) {
			cm(e).hdr.prod.Store(1000)
		}, "send", IndexAdvance, "completion"},
		{"tx consumer past the producer", func(t *testing.T, e env) {
			sent(t, e)
			e.h.reg.rings[ringTX].hdr.cons.Store(2)
		}, "send", IndexAdvance, "tx"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, h := pair(t, Config{SlotBytes: 2048, TXSlots: 8, RXSlots: 8})
			e := env{d: d, h: h, pool: packet.NewPool(512), max: uint32(d.MaxPacketBytes())}
			c.host(t, e)
			var err error
			switch c.op {
			case "receive":
				b := e.pool.GetBatch()
				_, err = d.Receive(b)
				b.Release()
			case "send":
				b := batchOf(t, e.pool, 0, 100)
				_, err = d.Send(b, 0)
				b.Release()
			}
			if c.kind == 0 {
				if err != nil {
					t.Fatalf("%s: %v, want no error", c.op, err)
				}
				return
			}
			v := wantViolation(t, err, c.kind, c.ring)
			t.Logf("%v", v)
			// Latched: the region carries nothing more.
			b := e.pool.GetBatch()
			if _, again := d.Receive(b); again != error(v) {
				t.Fatalf("receive after the violation: %v, want the same violation", again)
			}
			b.Release()
			checkConservation(t, d.Counts())
			d.Reclaim()
			if err := e.pool.CheckLeaks(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestParseHeader checks that a host refuses a header that does not add up
// before mapping anything.
func TestParseHeader(t *testing.T) {
	l, err := newLayout(DefaultSlotBytes, DefaultTXSlots, DefaultRXSlots)
	if err != nil {
		t.Fatal(err)
	}
	good := make([]byte, headerUsed)
	l.writeHeader(good, RegionID{1, 2, 3})
	le := binary.LittleEndian
	for _, c := range []struct {
		name   string
		mutate func(h []byte)
		size   int64
		err    string // "" for none
	}{
		{"good", func([]byte) {}, int64(l.size), ""},
		{"magic", func(h []byte) { h[0] = 'S' }, int64(l.size), "bad magic"},
		{"version", func(h []byte) { le.PutUint32(h[offVersion:], 2) }, int64(l.size), "version 2"},
		{"headroom", func(h []byte) { le.PutUint32(h[offHeadroom:], 10) }, int64(l.size), "headroom 10"},
		{"slot not aligned", func(h []byte) { le.PutUint32(h[offSlotBytes:], 2000) }, int64(l.size), "not a multiple"},
		{"slot too small", func(h []byte) { le.PutUint32(h[offSlotBytes:], 64) }, int64(l.size), "slot size 64"},
		{"slot too large", func(h []byte) { le.PutUint32(h[offSlotBytes:], 1<<30) }, int64(l.size), "slot size"},
		{"no tx slots", func(h []byte) { le.PutUint32(h[offTXSlots:], 0) }, int64(l.size), "tx slots 0"},
		{"too many rx slots", func(h []byte) { le.PutUint32(h[offRXSlots:], ^uint32(0)) }, int64(l.size), "rx slots"},
		{"ring size", func(h []byte) { le.PutUint32(h[offRingEntries:], 1024) }, int64(l.size), "ring of 1024"},
		{"region size", func(h []byte) { le.PutUint64(h[offRegionBytes:], 1<<20) }, int64(l.size), "region of 1048576"},
		{"file too short", func([]byte) {}, int64(l.size) - PageBytes, "region file"},
		{"header cut", func([]byte) {}, int64(l.size), "header of"},
	} {
		h := append([]byte(nil), good...)
		c.mutate(h)
		if c.name == "header cut" {
			h = h[:offID]
		}
		got, id, err := parseHeader(h, c.size)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.err == "" && (got != l || id != RegionID{1, 2, 3}):
			t.Errorf("%s: layout %+v id %v, want %+v", c.name, got, id, l)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.err)
		}
	}
}

// TestAttachUnsealed: a host refuses a region that could be resized.
func TestAttachUnsealed(t *testing.T) {
	l, _ := newLayout(MinSlotBytes, 1, 1)
	fd, err := unix.MemfdCreate("unsealed", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	unix.Ftruncate(fd, int64(l.size))
	hdr := make([]byte, headerUsed)
	l.writeHeader(hdr, RegionID{})
	unix.Pwrite(fd, hdr, 0)
	a, b, _ := newBellPair()
	defer unix.Close(a)
	_, err = Attach(Files{Region: os.NewFile(uintptr(fd), "r"), Bell: os.NewFile(uintptr(b), "b")})
	if err == nil || !strings.Contains(err.Error(), "seals") {
		t.Fatalf("attach to an unsealed region: %v, want a seals error", err)
	}
}
