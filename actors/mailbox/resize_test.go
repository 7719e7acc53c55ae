package mailbox

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/goleak"

	"switchyard/packet"
	"switchyard/stats"
)

func TestResize(t *testing.T) {
	tests := []struct {
		name        string
		from        Policy
		capacity    int
		policy      Policy
		wantDropped int
		want        string // ids delivered after the resize, in order
		wantCap     int64
	}{
		{"grow keeps order", DropNewest, 16, DropNewest, 0, "\x00\x01\x02\x03\x04\x05", 16},
		{"same size, new policy", DropNewest, 6, DropOldest, 0, "\x00\x01\x02\x03\x04\x05", 6},
		{"shrink drop_newest drops the tail", DropOldest, 4, DropNewest, 2, "\x00\x01\x02\x03", 4},
		{"shrink drop_oldest drops the head", DropNewest, 4, DropOldest, 2, "\x02\x03\x04\x05", 4},
		{"shrink to one", DropNewest, 1, DropOldest, 5, "\x05", 1},
		{"capacity below one means one", DropNewest, 0, DropNewest, 5, "\x00", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pool := packet.NewPool(packet.MaxBatch)
			st := &stats.Counters{Name: "x"}
			m := New(8, tt.from, st)
			d, r := &manualDispatcher{}, &recorder{}
			m.RegisterHandlers(r, d)
			// Wrap the ring: take two out first so head is not 0.
			m.PostUserMessage(batch(t, pool, 100))
			m.PostUserMessage(batch(t, pool, 101))
			if msg, b := m.popUser(); msg == nil || b == nil {
				t.Fatal("pop")
			} else {
				m.pending.Add(-1)
				b.Release()
			}
			if _, b := m.popUser(); b != nil {
				m.pending.Add(-1)
				b.Release()
			}
			for id := byte(0); id < 6; id++ {
				m.PostUserMessage(batch(t, pool, id))
			}
			if got := m.Resize(tt.capacity, tt.policy); got != tt.wantDropped {
				t.Errorf("Resize dropped %d, want %d", got, tt.wantDropped)
			}
			s := st.Snapshot()
			if got, want := s.Drops["mailbox_full"], uint64(tt.wantDropped); got != want {
				t.Errorf("mailbox_full drops = %d, want %d", got, want)
			}
			if got, want := s.Mailbox.Capacity, tt.wantCap; got != want {
				t.Errorf("stats capacity = %d, want %d", got, want)
			}
			if got, want := s.Mailbox.Policy, tt.policy.String(); got != want {
				t.Errorf("stats policy = %q, want %q", got, want)
			}
			if got, want := s.Mailbox.DepthBatches, int64(6-tt.wantDropped); got != want {
				t.Errorf("depth = %d, want %d", got, want)
			}
			if got, want := m.UserMessageCount(), 6-tt.wantDropped; got != want {
				t.Errorf("pending = %d, want %d", got, want)
			}
			d.runAll()
			if got := string(r.ids); got != tt.want {
				t.Errorf("delivered %q, want %q", got, tt.want)
			}
			// The new bound and policy hold for what comes next.
			capacity, policy := m.Capacity()
			if int64(capacity) != tt.wantCap || policy != tt.policy {
				t.Errorf("Capacity() = %d %v, want %d %v", capacity, policy, tt.wantCap, tt.policy)
			}
			r.ids = nil
			for id := byte(10); id < byte(10+capacity+2); id++ {
				m.PostUserMessage(batch(t, pool, id))
			}
			d.runAll()
			if got, want := len(r.ids), capacity; got != want {
				t.Errorf("after the resize a full mailbox delivered %d, want its capacity %d", got, want)
			}
			s = st.Snapshot()
			delivered := uint64(2 + len(tt.want) + len(r.ids))
			if got, want := s.InPackets, delivered+s.DroppedTotal()+s.Queued(); got != want {
				t.Errorf("in %d != delivered %d + dropped %d + queued %d", got, delivered, s.DroppedTotal(), s.Queued())
			}
			if err := pool.CheckLeaks(); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestResizeUnderLoad resizes a mailbox back and forth while senders post
// and a slow actor drains it: every batch is delivered or dropped, never
// lost or delivered twice.
func TestResizeUnderLoad(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	const senders, perSender = 3, 3000
	pool := packet.NewPool(64 * packet.MaxBatch)
	st := &stats.Counters{Name: "slow"}
	m := New(32, DropNewest, st)
	var delivered atomic.Uint64
	system := actor.NewActorSystem()
	defer system.Shutdown()
	pid := system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor {
		return &slowActor{delay: 10 * time.Microsecond, delivered: &delivered}
	}, actor.WithMailbox(m.Producer())))

	// The senders keep posting until the resizer has done all its resizes
	// (and at least perSender batches each), so the resizes always overlap
	// the load however the scheduler orders the goroutines.
	const resizes = 40
	var resizing atomic.Bool
	resizing.Store(true)
	var wg sync.WaitGroup
	var sent atomic.Uint64
	for s := 0; s < senders; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bufs := make([][]byte, 1)
			for i := 0; i < perSender || resizing.Load(); i++ {
				if !pool.GetBufs(bufs) {
					runtime.Gosched()
					continue
				}
				b := pool.GetBatch()
				b.Append(bufs[0], 64)
				system.Root.Send(pid, b)
				sent.Add(1)
			}
		}()
	}
	sizes := []int{2, 64, 1, 16, 200, 4}
	for i := 0; i < resizes; i++ {
		m.Resize(sizes[i%len(sizes)], Policy(i%2))
		time.Sleep(200 * time.Microsecond)
	}
	resizing.Store(false)
	wg.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for m.UserMessageCount() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	system.Root.StopFuture(pid).Wait()

	s := st.Snapshot()
	if got, want := s.InPackets, sent.Load(); got != want {
		t.Fatalf("in = %d, want sent = %d", got, want)
	}
	if got, want := delivered.Load()+s.DroppedTotal(), sent.Load(); got != want {
		t.Fatalf("delivered %d + dropped %d %v = %d, want sent %d", delivered.Load(), s.DroppedTotal(), s.Drops, got, want)
	}
	if s.Mailbox.DepthBatches != 0 || s.Mailbox.DepthPackets != 0 {
		t.Fatalf("depth after drain = %d batches %d packets, want 0", s.Mailbox.DepthBatches, s.Mailbox.DepthPackets)
	}
	if err := pool.CheckLeaks(); err != nil {
		t.Fatal(err)
	}
}
