package packet

// Harvest: the one loop every reader runs after a read (capture's TUN read,
// a protocol's UDP receive, WireGuard's decrypted packets).
//
//  1. The reader owns read slots: full-size pool buffers it reads into at
//     Headroom (Move) — or it was handed someone else's buffers (Copy).
//  2. The packets it keeps, in order, go into batches of at most maxBatch
//     packets: moved without a copy (Move), or copied into fresh pool
//     buffers (Copy).
//  3. Move refills the slots it emptied from the pool in one call; when the
//     pool cannot, nothing moves and the caller counts the packets as
//     no_buffers and reads into the same buffers again, so memory never grows
//     past the pool's limit.
//  4. Each batch goes to emit (ownership passes), which counts it out and
//     sends it on.

// Emit takes ownership of a batch of bytes packet bytes (headroom excluded).
type Emit func(b *Batch, bytes int)

// Harvester holds a reader's slots and the scratch Move needs, so a harvest
// allocates nothing. One goroutine uses it.
type Harvester struct {
	// Slots are the read buffers: full-length pool buffers, packets at
	// Headroom. Move replaces the ones it empties.
	Slots [][]byte

	pool     *Pool
	maxBatch int
	fresh    [][]byte
	all      []int
}

// NewHarvester takes n read slots from pool for a reader that emits batches
// of at most maxBatch packets (1 ≤ maxBatch ≤ MaxBatch). It reports false
// when the pool cannot supply the slots.
func NewHarvester(pool *Pool, n, maxBatch int) (*Harvester, bool) {
	h := &Harvester{
		Slots:    make([][]byte, n),
		pool:     pool,
		maxBatch: min(max(maxBatch, 1), MaxBatch),
		fresh:    make([][]byte, n),
		all:      make([]int, n),
	}
	for i := range h.all {
		h.all[i] = i
	}
	if !pool.GetBufs(h.Slots) {
		return nil, false
	}
	return h, true
}

// All returns the indexes 0…n-1, for a Move of every slot read.
func (h *Harvester) All(n int) []int { return h.all[:n] }

// Move moves the slots listed in pick (ascending indexes into Slots), whose
// packets are sizes[i] bytes long, into batches for emit, and refills them.
// It reports false, moving nothing, when the pool cannot refill them.
func (h *Harvester) Move(pick []int, sizes []int, emit Emit) bool {
	if len(pick) == 0 {
		return true
	}
	fresh := h.fresh[:len(pick)]
	if !h.pool.GetBufs(fresh) {
		return false
	}
	var b *Batch
	bytes := 0
	for j, i := range pick {
		if b == nil {
			b = h.pool.GetBatch()
		}
		b.Append(h.Slots[i], sizes[i])
		bytes += sizes[i]
		h.Slots[i], fresh[j] = fresh[j], nil
		if b.Len() == h.maxBatch {
			emit(b, bytes)
			b, bytes = nil, 0
		}
	}
	if b != nil {
		emit(b, bytes)
	}
	return true
}

// Release returns the slots to the pool; the harvester is done.
func (h *Harvester) Release() {
	h.pool.PutBufs(h.Slots)
	clear(h.Slots)
}

// Copy borrows src: it copies each src[i][offset:] into a fresh pool buffer,
// in batches of at most maxBatch packets for emit (one GetBufs per batch).
// Packets the pool cannot hold are not copied; Copy reports how many.
func (p *Pool) Copy(src [][]byte, offset, maxBatch int, emit Emit) (dropped int) {
	maxBatch = min(max(maxBatch, 1), MaxBatch)
	var fresh [MaxBatch][]byte
	for start := 0; start < len(src); start += maxBatch {
		chunk := src[start:min(start+maxBatch, len(src))]
		dst := fresh[:len(chunk)]
		if !p.GetBufs(dst) {
			dropped += len(chunk)
			continue
		}
		b := p.GetBatch()
		bytes := 0
		for i, buf := range chunk {
			m := copy(dst[i][Headroom:], buf[offset:])
			b.Append(dst[i], m)
			bytes += m
			dst[i] = nil
		}
		emit(b, bytes)
	}
	return dropped
}
