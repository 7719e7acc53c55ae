package remote

// The shared-memory link, host side: one instance's end of its region.
//
//  1. A reader goroutine waits on the region's doorbell. Packets the daemon
//     sent are borrowed from their slots, copied into the host's pool (one
//     copy) and sent to the protocol actor as a batch. The slots are
//     completed only when that batch is released — when the protocol is
//     done with its packets, or they were dropped and counted — so the
//     daemon counts as lost exactly what dies with this process.
//  2. The uplink is the protocol's injector, a Process the protocol's
//     reader goroutines call directly: it copies each batch into slots the
//     daemon lent (one copy) and publishes them with one index store. No
//     lent slot left: the rest of the batch drops (remote_window), counted
//     on <name>.up.
//  3. Closing the region (the instance stops, or the daemon is gone) ends
//     the reader; the slots still borrowed are the daemon's to reclaim.

import (
	"errors"
	"sync"

	"github.com/asynkron/protoactor-go/actor"

	"switchyard/actors/remote/shm"
	"switchyard/packet"
	"switchyard/stats"
)

// shmUplink is the protocol's injector on a host: batches go to the daemon
// through the region. It is a protoactor Process, not an actor: the
// protocol's reader goroutine that sends a batch copies it into the region
// itself, so the way back costs no goroutine hand-off on the host. Readers
// may send concurrently; the region serializes its sends.
type shmUplink struct {
	h  *shm.Host
	st *stats.Counters // <name>.up: In, Out and drops
}

// SendUserMessage takes ownership of a *packet.Batch and hands its packets
// to the daemon; what finds no lent slot is dropped (remote_window).
func (u *shmUplink) SendUserMessage(_ *actor.PID, m any) {
	b, ok := m.(*packet.Batch)
	if !ok {
		return
	}
	u.st.In(b.Len(), b.Bytes())
	from := 0
	for from < b.Len() {
		n, err := u.h.Send(b.Bufs[from:])
		if n > 0 {
			u.st.Out(n, packet.PayloadBytes(b.Bufs[from:from+n]))
			from += n
		}
		switch {
		case errors.Is(err, shm.ErrOversized):
			u.st.Drop(stats.Oversized, 1)
			from++
			continue
		case err != nil:
			u.st.Drop(stats.HostDown, b.Len()-from) // the daemon is gone
		case n == 0:
			u.st.Drop(stats.RemoteWindow, b.Len()-from) // no slot lent: the daemon is behind
		default:
			continue
		}
		break
	}
	b.Release()
}

// SendSystemMessage ignores system messages.
func (u *shmUplink) SendSystemMessage(*actor.PID, any) {}

// Stop does nothing; the host unregisters the uplink.
func (u *shmUplink) Stop(*actor.PID) {}

// shmReader delivers what the daemon sends to one instance's protocol.
type shmReader struct {
	h        *shm.Host
	pool     *packet.Pool
	to       *actor.PID
	st       *stats.Counters // <name>.in
	maxBatch int
	done     sync.WaitGroup
	views    [][]byte
	bufs     [][]byte
}

func newSHMReader(h *shm.Host, pool *packet.Pool, to *actor.PID, st *stats.Counters, maxBatch int) *shmReader {
	return &shmReader{h: h, pool: pool, to: to, st: st, maxBatch: maxBatch,
		views: make([][]byte, maxBatch), bufs: make([][]byte, maxBatch)}
}

// Released implements packet.ReleaseHook: the protocol is done with n
// packets, so n borrowed slots go back to the daemon.
func (r *shmReader) Released(n int) { _ = r.h.Complete(n) }

// run receives until the region closes.
func (r *shmReader) run(root *actor.RootContext) {
	defer r.done.Done()
	for {
		ev, err := r.h.Wait()
		if err != nil {
			return
		}
		if ev&shm.EventReceive != 0 && !r.drain(root) {
			return
		}
	}
}

// drain borrows what waits on the TX ring, batch by batch; it reports false
// once the region is unusable.
func (r *shmReader) drain(root *actor.RootContext) bool {
	for {
		n, err := r.h.Borrow(r.views)
		if n > 0 {
			r.deliver(root, n)
		}
		if err != nil {
			return false
		}
		if n < len(r.views) {
			return true
		}
	}
}

// deliver copies the n borrowed packets into a batch of the host's pool and
// sends it to the protocol (ownership passes); the slots are completed when
// the batch is released.
func (r *shmReader) deliver(root *actor.RootContext, n int) {
	bytes := packet.PayloadBytes(r.views[:n]) // views are in Batch layout
	r.st.In(n, bytes)
	bufs := r.bufs[:n]
	if !r.pool.GetBufs(bufs) {
		r.st.Drop(stats.NoBuffers, n)
		_ = r.h.Complete(n)
		return
	}
	b := r.pool.GetBatch()
	for i, v := range r.views[:n] {
		b.Append(bufs[i], copy(bufs[i][packet.Headroom:], v[packet.Headroom:]))
		bufs[i], r.views[i] = nil, nil
	}
	b.OnRelease(r, n)
	r.st.Out(n, bytes)
	root.Send(r.to, b)
}
