package shm

// The region's layout, shared by both ends.
//
//	offset 0          header page: magic, version, sizes, region id;
//	                  the daemon's sleeping flag on cache line 1, the host's
//	                  on cache line 2
//	HeaderBytes       four rings, each: producer index (own cache line),
//	                  consumer index (own cache line), entries × DescBytes
//	                  descriptors; in order tx, completion, fill, rx
//	slotsOff (page)   TX slots [0, txSlots), then RX slots
//	                  [txSlots, txSlots+rxSlots), slotBytes apart
//
// A slot holds one packet at offset packet.Headroom, like a pool buffer.
// Everything in the region is data: neither side keeps pointers there, and
// the daemon reads nothing back from it except ring indices and
// descriptors, which it checks.

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"sync/atomic"
	"unsafe"

	"switchyard/packet"
)

// magic opens every region.
var magic = [8]byte{'s', 'w', 'y', 'd', '-', 's', 'h', 'm'}

// Header field offsets (bytes from the start of the region).
const (
	offMagic       = 0
	offVersion     = 8
	offHeadroom    = 12
	offSlotBytes   = 16
	offTXSlots     = 20
	offRXSlots     = 24
	offRingEntries = 28
	offRegionBytes = 32
	offID          = 40
	headerUsed     = offID + len(RegionID{})

	offDaemonSleep = 1 * CacheLineBytes
	offHostSleep   = 2 * CacheLineBytes
)

// Rings, in region order.
const (
	ringTX         = iota // daemon → host: packets
	ringCompletion        // host → daemon: TX slots done with
	ringFill              // daemon → host: empty RX slots lent
	ringRX                // host → daemon: filled RX slots
	nRings
)

var ringNames = [nRings]string{"tx", "completion", "fill", "rx"}

// Doorbell bits: what a sleeper wants to be woken for. The daemon sleeps
// on the RX and completion rings, the host on the TX and fill rings; in
// both cases bit 0 is "packets to receive" and bit 1 "slots to send into".
const (
	bellReceive = 1 << 0
	bellSlots   = 1 << 1
)

// RegionID names one region (one host incarnation). The daemon draws it at
// random; the host reads it from the header, so the two can bind the region
// to a control connection.
type RegionID [16]byte

func (id RegionID) String() string { return hex.EncodeToString(id[:]) }

// layout is the geometry of a region, computed from a config by the daemon
// and from the header by the host.
type layout struct {
	slotBytes   uint32 // slot stride, headroom included, a multiple of CacheLineBytes
	txSlots     uint32
	rxSlots     uint32
	ringEntries uint32 // power of two ≥ max(txSlots, rxSlots)
	ringBytes   uint64 // one ring: two index lines and the descriptors
	slotsOff    uint64
	size        uint64 // whole region, a multiple of PageBytes
}

// maxLen is the longest packet a slot carries: the slot minus the
// headroom, and never more than a pool buffer holds.
func (l *layout) maxLen() uint32 {
	return min(l.slotBytes-packet.Headroom, packet.MaxPacketBytes)
}

func roundUp(n, to uint64) uint64 { return (n + to - 1) / to * to }

func nextPow2(n uint32) uint32 {
	p := uint32(1)
	for p < n {
		p <<= 1
	}
	return p
}

// newLayout checks a config and computes its geometry.
func newLayout(slotBytes, txSlots, rxSlots int) (layout, error) {
	switch {
	case slotBytes < MinSlotBytes || slotBytes > MaxSlotBytes:
		return layout{}, fmt.Errorf("slot size %d bytes: must be %d-%d", slotBytes, MinSlotBytes, MaxSlotBytes)
	case txSlots < 1 || txSlots > MaxSlots:
		return layout{}, fmt.Errorf("tx slots %d: must be 1-%d", txSlots, MaxSlots)
	case rxSlots < 1 || rxSlots > MaxSlots:
		return layout{}, fmt.Errorf("rx slots %d: must be 1-%d", rxSlots, MaxSlots)
	}
	l := layout{
		slotBytes:   uint32(roundUp(uint64(slotBytes), CacheLineBytes)),
		txSlots:     uint32(txSlots),
		rxSlots:     uint32(rxSlots),
		ringEntries: nextPow2(uint32(max(txSlots, rxSlots))),
	}
	l.ringBytes = 2*CacheLineBytes + roundUp(uint64(l.ringEntries)*DescBytes, CacheLineBytes)
	l.slotsOff = roundUp(HeaderBytes+nRings*l.ringBytes, PageBytes)
	l.size = roundUp(l.slotsOff+uint64(l.txSlots+l.rxSlots)*uint64(l.slotBytes), PageBytes)
	if l.size > MaxRegionBytes {
		return layout{}, fmt.Errorf("region of %d bytes: more than %d", l.size, MaxRegionBytes)
	}
	return l, nil
}

// writeHeader fills the header page of a fresh region.
func (l *layout) writeHeader(mem []byte, id RegionID) {
	le := binary.LittleEndian
	copy(mem[offMagic:], magic[:])
	le.PutUint32(mem[offVersion:], Version)
	le.PutUint32(mem[offHeadroom:], packet.Headroom)
	le.PutUint32(mem[offSlotBytes:], l.slotBytes)
	le.PutUint32(mem[offTXSlots:], l.txSlots)
	le.PutUint32(mem[offRXSlots:], l.rxSlots)
	le.PutUint32(mem[offRingEntries:], l.ringEntries)
	le.PutUint64(mem[offRegionBytes:], l.size)
	copy(mem[offID:], id[:])
}

// parseHeader checks a header read from a region of fileSize bytes (before
// anything is mapped) and returns its layout. Every size is checked against
// the limits and the layout recomputed from them must match the header and
// the file exactly.
func parseHeader(hdr []byte, fileSize int64) (layout, RegionID, error) {
	var id RegionID
	if len(hdr) < headerUsed {
		return layout{}, id, fmt.Errorf("header of %d bytes: want at least %d", len(hdr), headerUsed)
	}
	le := binary.LittleEndian
	if [8]byte(hdr[offMagic:offMagic+8]) != magic {
		return layout{}, id, fmt.Errorf("bad magic %q", hdr[offMagic:offMagic+8])
	}
	if v := le.Uint32(hdr[offVersion:]); v != Version {
		return layout{}, id, fmt.Errorf("version %d: want %d", v, Version)
	}
	if h := le.Uint32(hdr[offHeadroom:]); h != packet.Headroom {
		return layout{}, id, fmt.Errorf("headroom %d bytes: want %d", h, packet.Headroom)
	}
	slotBytes := le.Uint32(hdr[offSlotBytes:])
	if slotBytes%CacheLineBytes != 0 {
		return layout{}, id, fmt.Errorf("slot size %d bytes: not a multiple of %d", slotBytes, CacheLineBytes)
	}
	l, err := newLayout(int(min(slotBytes, 1<<31)), int(min(le.Uint32(hdr[offTXSlots:]), 1<<31)), int(min(le.Uint32(hdr[offRXSlots:]), 1<<31)))
	if err != nil {
		return layout{}, id, err
	}
	if e := le.Uint32(hdr[offRingEntries:]); e != l.ringEntries {
		return layout{}, id, fmt.Errorf("ring of %d entries: want %d", e, l.ringEntries)
	}
	if s := le.Uint64(hdr[offRegionBytes:]); s != l.size {
		return layout{}, id, fmt.Errorf("region of %d bytes in the header: the sizes make %d", s, l.size)
	}
	if fileSize != int64(l.size) {
		return layout{}, id, fmt.Errorf("region file of %d bytes: the header says %d", fileSize, l.size)
	}
	copy(id[:], hdr[offID:])
	return l, id, nil
}

// desc is one ring entry. Both sides access its fields only with atomic
// loads and stores: a load is then exactly one read of shared memory, which
// the compiler may not repeat, so a value is checked and used as read once.
type desc struct {
	slot uint32
	len  uint32
	gen  uint32
}

// ringHeader is a ring's two indices, each on its own cache line. Indices
// run freely and wrap at 2^32; entry i is descs[i & (entries-1)].
type ringHeader struct {
	prod atomic.Uint32
	_    [CacheLineBytes - 4]byte
	cons atomic.Uint32
	_    [CacheLineBytes - 4]byte
}

type ring struct {
	hdr   *ringHeader
	descs []desc
	mask  uint32
}

func (r *ring) at(i uint32) *desc { return &r.descs[i&r.mask] }

// region is one mapping of a region, as views of its parts.
type region struct {
	mem         []byte
	l           layout
	rings       [nRings]ring
	daemonSleep *atomic.Uint32 // the daemon sleeps: bits it wants rung for
	hostSleep   *atomic.Uint32 // the host sleeps: bits it wants rung for
}

// view builds the views of a mapping of l.size bytes. mem must be aligned
// to CacheLineBytes (an mmap is page-aligned).
func view(mem []byte, l layout) region {
	if uint64(len(mem)) != l.size || uintptr(unsafe.Pointer(&mem[0]))%CacheLineBytes != 0 {
		panic(fmt.Sprintf("shm: mapping of %d bytes at %p for a region of %d", len(mem), &mem[0], l.size))
	}
	r := region{
		mem:         mem,
		l:           l,
		daemonSleep: (*atomic.Uint32)(unsafe.Pointer(&mem[offDaemonSleep])),
		hostSleep:   (*atomic.Uint32)(unsafe.Pointer(&mem[offHostSleep])),
	}
	for i := range r.rings {
		off := HeaderBytes + uint64(i)*l.ringBytes
		r.rings[i] = ring{
			hdr:   (*ringHeader)(unsafe.Pointer(&mem[off])),
			descs: unsafe.Slice((*desc)(unsafe.Pointer(&mem[off+2*CacheLineBytes])), l.ringEntries),
			mask:  l.ringEntries - 1,
		}
	}
	return r
}

// slot returns slot s's bytes, headroom included, with capacity limited to
// the slot. s must be < txSlots+rxSlots (callers check).
func (r *region) slot(s uint32) []byte {
	off := r.l.slotsOff + uint64(s)*uint64(r.l.slotBytes)
	return r.mem[off : off+uint64(r.l.slotBytes) : off+uint64(r.l.slotBytes)]
}
