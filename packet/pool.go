package packet

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// Pool is a bounded pool of full-size packet buffers and of Batch headers.
//
// At most Limit buffers exist at once; Get fails (returns false) when they are
// all outstanding, so memory is bounded by Limit × BufferBytes whatever the
// traffic. Buffers are allocated lazily and then reused forever.
//
// Get and Put move whole batches of buffers under one lock, so the cost of
// the pool is paid once per batch, not per packet.
type Pool struct {
	limit int

	mu        sync.Mutex
	free      [][]byte // full-length buffers, len == cap == BufferBytes
	allocated int      // buffers ever made (≤ limit)

	outstanding atomic.Int64 // buffers handed out and not yet returned
	made        atomic.Int64 // allocated, for readers that take no lock

	// Batch headers, reused forever. Unlike a sync.Pool, the garbage
	// collector never empties this list, so steady state allocates nothing.
	// Live headers are bounded by the buffers (each holds at least one while
	// in flight).
	batchMu sync.Mutex
	batches []*Batch
}

// NewPool returns a pool that holds at most limit buffers (limit ≥ MaxBatch).
func NewPool(limit int) *Pool {
	if limit < MaxBatch {
		limit = MaxBatch
	}
	return &Pool{limit: limit}
}

// Limit reports the most buffers the pool will ever hand out at once.
func (p *Pool) Limit() int { return p.limit }

// Allocated reports the buffers the pool has made: its high-water mark,
// since buffers are kept for reuse and never freed. The process's memory
// follows it (Allocated × BufferBytes), not Outstanding.
func (p *Pool) Allocated() int { return int(p.made.Load()) }

// Outstanding reports buffers handed out and not yet returned. A quiescent
// data path has none: tests call CheckLeaks.
func (p *Pool) Outstanding() int { return int(p.outstanding.Load()) }

// GetBufs fills every slot of dst with a full-length buffer, all or nothing.
// It returns false, leaving dst untouched, when the pool cannot supply
// len(dst) buffers without exceeding its limit.
func (p *Pool) GetBufs(dst [][]byte) bool {
	n := len(dst)
	p.mu.Lock()
	if len(p.free)+(p.limit-p.allocated) < n {
		p.mu.Unlock()
		return false
	}
	i := 0
	for ; i < n && len(p.free) > 0; i++ {
		last := len(p.free) - 1
		dst[i] = p.free[last]
		p.free[last] = nil
		p.free = p.free[:last]
	}
	fresh := n - i
	p.allocated += fresh
	p.made.Store(int64(p.allocated))
	p.mu.Unlock()
	if fresh > 0 {
		// One allocation for the fresh buffers of this call; each buffer is
		// a full-capacity window of it.
		slab := make([]byte, fresh*BufferBytes)
		for j := 0; j < fresh; j++ {
			dst[i+j] = slab[j*BufferBytes : (j+1)*BufferBytes : (j+1)*BufferBytes]
		}
	}
	p.outstanding.Add(int64(n))
	return true
}

// PutBufs takes ownership of the buffers in bufs and returns them to the pool.
// Each must have come from this pool (its capacity is BufferBytes); the slots
// of bufs are cleared.
func (p *Pool) PutBufs(bufs [][]byte) {
	if len(bufs) == 0 {
		return
	}
	p.mu.Lock()
	for i, b := range bufs {
		if cap(b) != BufferBytes {
			p.mu.Unlock()
			panic(fmt.Sprintf("packet: buffer of capacity %d returned to pool (want %d)", cap(b), BufferBytes))
		}
		p.free = append(p.free, b[:BufferBytes])
		bufs[i] = nil
	}
	p.mu.Unlock()
	p.outstanding.Add(-int64(len(bufs)))
}

// GetBatch returns an empty Batch header owned by the caller.
func (p *Pool) GetBatch() *Batch {
	p.batchMu.Lock()
	if n := len(p.batches); n > 0 {
		b := p.batches[n-1]
		p.batches[n-1] = nil
		p.batches = p.batches[:n-1]
		p.batchMu.Unlock()
		b.released = false
		return b
	}
	p.batchMu.Unlock()
	return &Batch{Bufs: make([][]byte, 0, MaxBatch), pool: p}
}

// putBatch recycles an empty batch header.
func (p *Pool) putBatch(b *Batch) {
	p.batchMu.Lock()
	p.batches = append(p.batches, b)
	p.batchMu.Unlock()
}

// CheckLeaks returns an error when buffers are outstanding. Tests call it
// after the data path has stopped.
func (p *Pool) CheckLeaks() error {
	if n := p.Outstanding(); n != 0 {
		return fmt.Errorf("packet pool: %d buffers outstanding", n)
	}
	return nil
}
