package mailbox

import (
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/goleak"

	"switchyard/packet"
	"switchyard/stats"
)

// manualDispatcher runs scheduled work only when the test says so.
type manualDispatcher struct{ fns []func() }

func (d *manualDispatcher) Schedule(fn func()) { d.fns = append(d.fns, fn) }
func (d *manualDispatcher) Throughput() int    { return 300 }
func (d *manualDispatcher) runAll() {
	for i := 0; i < len(d.fns); i++ {
		d.fns[i]()
	}
	clear(d.fns)
	d.fns = d.fns[:0]
}

// recorder is a MessageInvoker that records what it is given and releases
// batches (taking ownership, as an actor would).
type recorder struct {
	user   []any
	ids    []byte
	system []any
	order  []string
}

func (r *recorder) InvokeSystemMessage(m any) {
	r.system = append(r.system, m)
	r.order = append(r.order, "sys")
}
func (r *recorder) InvokeUserMessage(m any) {
	r.order = append(r.order, "user")
	if b, ok := m.(*packet.Batch); ok {
		r.ids = append(r.ids, b.Packet(0)[0])
		b.Release()
		return
	}
	r.user = append(r.user, m)
}
func (r *recorder) EscalateFailure(reason, m any) {}

// batch returns a one-packet batch whose first byte is id.
func batch(t testing.TB, p *packet.Pool, id byte) *packet.Batch {
	t.Helper()
	bufs := make([][]byte, 1)
	if !p.GetBufs(bufs) {
		t.Fatal("pool exhausted")
	}
	bufs[0][packet.Headroom] = id
	b := p.GetBatch()
	b.Append(bufs[0], 100)
	return b
}

func TestPolicyPicksTheVictim(t *testing.T) {
	tests := []struct {
		policy Policy
		want   string // ids delivered, in order
	}{
		{DropNewest, "\x00\x01\x02\x03"},
		{DropOldest, "\x06\x07\x08\x09"},
	}
	for _, tt := range tests {
		t.Run(tt.policy.String(), func(t *testing.T) {
			pool := packet.NewPool(packet.MaxBatch)
			st := &stats.Counters{Name: "x"}
			m := New(4, tt.policy, st)
			d, r := &manualDispatcher{}, &recorder{}
			m.RegisterHandlers(r, d)
			for id := byte(0); id < 10; id++ {
				m.PostUserMessage(batch(t, pool, id))
			}
			s := st.Snapshot()
			if got, want := s.Drops["mailbox_full"], uint64(6); got != want {
				t.Errorf("mailbox_full drops = %d, want %d", got, want)
			}
			if got, want := s.Mailbox.DepthBatches, int64(4); got != want {
				t.Errorf("depth = %d, want %d", got, want)
			}
			if got, want := s.Mailbox.DepthPackets, int64(4); got != want {
				t.Errorf("depth packets = %d, want %d", got, want)
			}
			d.runAll()
			if got := string(r.ids); got != tt.want {
				t.Errorf("delivered %q, want %q", got, tt.want)
			}
			s = st.Snapshot()
			if got, want := s.InPackets, uint64(10); got != want {
				t.Errorf("in = %d, want %d", got, want)
			}
			if got, want := s.Mailbox.DepthBatches, int64(0); got != want {
				t.Errorf("depth after delivery = %d, want %d", got, want)
			}
			if got, want := s.Mailbox.HighWaterBatches, int64(4); got != want {
				t.Errorf("high water = %d, want %d", got, want)
			}
			if err := pool.CheckLeaks(); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestSystemMessagesFirstAndNeverDropped(t *testing.T) {
	pool := packet.NewPool(packet.MaxBatch)
	st := &stats.Counters{Name: "x"}
	m := New(1, DropNewest, st)
	d, r := &manualDispatcher{}, &recorder{}
	m.RegisterHandlers(r, d)
	m.PostUserMessage(batch(t, pool, 1))
	m.PostUserMessage(batch(t, pool, 2)) // dropped: full
	m.PostUserMessage("control")         // never dropped
	for i := 0; i < 100; i++ {
		m.PostSystemMessage(i)
	}
	d.runAll()
	if got, want := len(r.system), 100; got != want {
		t.Fatalf("system messages delivered = %d, want %d", got, want)
	}
	for i, kind := range r.order[:100] {
		if kind != "sys" {
			t.Fatalf("message %d was %s, want every system message before user messages", i, kind)
		}
	}
	if got, want := r.order[100:], []string{"user", "user"}; len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("then %v, want %v", got, want)
	}
	if got, want := len(r.user), 1; got != want {
		t.Fatalf("control messages delivered = %d, want %d", got, want)
	}
	if err := pool.CheckLeaks(); err != nil {
		t.Error(err)
	}
}

func TestSuspendHoldsUserMessages(t *testing.T) {
	pool := packet.NewPool(packet.MaxBatch)
	m := New(8, DropNewest, &stats.Counters{})
	d, r := &manualDispatcher{}, &recorder{}
	m.RegisterHandlers(r, d)
	m.PostSystemMessage(&actor.SuspendMailbox{})
	d.runAll()
	m.PostUserMessage(batch(t, pool, 1))
	d.runAll()
	if len(r.ids) != 0 {
		t.Fatal("a suspended mailbox delivered a user message")
	}
	m.PostSystemMessage(&actor.ResumeMailbox{})
	d.runAll()
	if got, want := len(r.ids), 1; got != want {
		t.Fatalf("delivered after resume = %d, want %d", got, want)
	}
}

func TestCloseDropsAndCounts(t *testing.T) {
	pool := packet.NewPool(packet.MaxBatch)
	st := &stats.Counters{}
	m := New(8, DropNewest, st)
	d, r := &manualDispatcher{}, &recorder{}
	m.RegisterHandlers(r, d)
	for id := byte(0); id < 3; id++ {
		m.PostUserMessage(batch(t, pool, id))
	}
	m.Close()
	m.PostUserMessage(batch(t, pool, 9))
	d.runAll()
	s := st.Snapshot()
	if got, want := s.Drops["stopped"], uint64(4); got != want {
		t.Fatalf("stopped drops = %d, want %d", got, want)
	}
	if len(r.ids) != 0 {
		t.Fatal("a closed mailbox delivered a batch")
	}
	if got, want := s.InPackets, s.DroppedTotal()+s.Queued(); got != want {
		t.Fatalf("in = %d, dropped+queued = %d", got, want)
	}
	if err := pool.CheckLeaks(); err != nil {
		t.Fatal(err)
	}
}

// slowActor takes ownership of batches and releases them after a delay.
type slowActor struct {
	delay     time.Duration
	delivered *atomic.Uint64
	gate      chan struct{}
}

func (a *slowActor) Receive(ctx actor.Context) {
	if b, ok := ctx.Message().(*packet.Batch); ok {
		if a.gate != nil {
			<-a.gate
		}
		time.Sleep(a.delay)
		a.delivered.Add(uint64(b.Len()))
		b.Release()
	}
}

func TestConcurrentSendersExactAccounting(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	for _, policy := range []Policy{DropNewest, DropOldest} {
		t.Run(policy.String(), func(t *testing.T) {
			const senders, perSender = 4, 5000
			pool := packet.NewPool(64 * packet.MaxBatch)
			st := &stats.Counters{Name: "slow"}
			m := New(16, policy, st)
			var delivered atomic.Uint64
			system := actor.NewActorSystem()
			defer system.Shutdown()
			pid := system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor {
				return &slowActor{delay: 20 * time.Microsecond, delivered: &delivered}
			}, actor.WithMailbox(m.Producer())))

			var wg sync.WaitGroup
			var noBuf atomic.Uint64
			for s := 0; s < senders; s++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					bufs := make([][]byte, 1)
					for i := 0; i < perSender; i++ {
						if !pool.GetBufs(bufs) {
							noBuf.Add(1)
							continue
						}
						b := pool.GetBatch()
						b.Append(bufs[0], 64)
						system.Root.Send(pid, b)
					}
				}()
			}
			wg.Wait()
			deadline := time.Now().Add(10 * time.Second)
			for m.UserMessageCount() > 0 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			system.Root.StopFuture(pid).Wait()

			s := st.Snapshot()
			sent := uint64(senders*perSender) - noBuf.Load()
			if got := s.InPackets; got != sent {
				t.Fatalf("in = %d, want sent = %d", got, sent)
			}
			if got, want := delivered.Load()+s.DroppedTotal(), sent; got != want {
				t.Fatalf("delivered %d + dropped %d = %d, want sent %d", delivered.Load(), s.DroppedTotal(), got, want)
			}
			if s.Drops["mailbox_full"] == 0 {
				t.Fatal("a 16-batch mailbox in front of a slow actor dropped nothing")
			}
			if err := pool.CheckLeaks(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestNoSpinWhenFullOrIdle fails with protoactor's BoundedDropping (it spins
// at 100 % CPU after its first drop) and with Bounded (the sender spins).
func TestNoSpinWhenFullOrIdle(t *testing.T) {
	const window = 300 * time.Millisecond
	const maxCPU = 60 * time.Millisecond // 20 % of one core over the window

	pool := packet.NewPool(packet.MaxBatch)
	st := &stats.Counters{}
	m := New(4, DropOldest, st)
	var delivered atomic.Uint64
	gate := make(chan struct{})
	system := actor.NewActorSystem()
	defer system.Shutdown()
	pid := system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor {
		return &slowActor{delivered: &delivered, gate: gate}
	}, actor.WithMailbox(m.Producer())))

	// Full: the actor is blocked on the gate, the mailbox holds 4 batches,
	// and further sends drop (returning at once).
	for id := byte(0); id < 10; id++ {
		system.Root.Send(pid, batch(t, pool, id))
	}
	start := cpuTime()
	time.Sleep(window)
	if used := cpuTime() - start; used > maxCPU {
		t.Errorf("full mailbox used %v of CPU in %v, want ≤ %v", used, window, maxCPU)
	}
	if got := st.Snapshot().Drops["mailbox_full"]; got == 0 {
		t.Errorf("no drops with a full mailbox")
	}

	// Idle: everything delivered, nothing waiting.
	close(gate)
	deadline := time.Now().Add(5 * time.Second)
	for m.UserMessageCount() > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	start = cpuTime()
	time.Sleep(window)
	if used := cpuTime() - start; used > maxCPU {
		t.Errorf("idle mailbox used %v of CPU in %v, want ≤ %v", used, window, maxCPU)
	}
	system.Root.StopFuture(pid).Wait()
	if err := pool.CheckLeaks(); err != nil {
		t.Fatal(err)
	}
}

func TestParsePolicy(t *testing.T) {
	tests := []struct {
		in      string
		want    Policy
		wantErr bool
	}{
		{"drop_newest", DropNewest, false},
		{"drop_oldest", DropOldest, false},
		{"codel", CoDel, false},
		{"drop_middle", 0, true},
	}
	for _, tt := range tests {
		got, err := ParsePolicy(tt.in)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("ParsePolicy(%q) = %v, %v; want %v, err=%v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func BenchmarkEnqueueDequeue(b *testing.B) {
	pool := packet.NewPool(packet.MaxBatch)
	st := &stats.Counters{}
	m := New(256, DropNewest, st)
	d, r := &manualDispatcher{}, &nopInvoker{}
	m.RegisterHandlers(r, d)
	batches := make([]*packet.Batch, 0, 1)
	bb := batch(b, pool, 1)
	batches = append(batches, bb)
	r.keep = true
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m.PostUserMessage(batches[0])
		d.runAll()
	}
	b.StopTimer()
	batches[0].Release()
}

type nopInvoker struct{ keep bool }

func (nopInvoker) InvokeSystemMessage(any)  {}
func (nopInvoker) InvokeUserMessage(any)    {}
func (nopInvoker) EscalateFailure(any, any) {}
