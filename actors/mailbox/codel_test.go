package mailbox

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/goleak"

	"switchyard/packet"
	"switchyard/stats"
)

// fakeClock is a mailbox clock the test moves by hand.
type fakeClock struct{ ns int64 }

func (c *fakeClock) now() int64              { return c.ns }
func (c *fakeClock) advance(d time.Duration) { c.ns += int64(d) }

func TestQueueDelayRecordedOnDequeue(t *testing.T) {
	pool := packet.NewPool(packet.MaxBatch)
	st := &stats.Counters{Name: "x"}
	m := New(8, DropNewest, st)
	clock := &fakeClock{ns: 1e9}
	m.now = clock.now
	d, r := &manualDispatcher{}, &recorder{}
	m.RegisterHandlers(r, d)

	m.PostUserMessage(batch(t, pool, 1))   // waits 3 ms
	clock.advance(2 * time.Millisecond)    //
	m.PostUserMessage(batch(t, pool, 2))   // waits 1 ms
	clock.advance(time.Millisecond)        //
	m.PostUserMessage(&actor.PoisonPill{}) // a control message: no delay recorded
	d.runAll()

	counts, sum := st.QueueDelays()
	if got, want := sum, uint64(4*time.Millisecond); got != want {
		t.Errorf("delay sum = %d ns, want %d", got, want)
	}
	var n uint64
	for _, c := range counts {
		n += c
	}
	if n != 2 {
		t.Errorf("delays recorded = %d, want 2 (one per batch)", n)
	}
	// 1 ms ≤ 1.048576 ms (bucket 10); 3 ms ≤ 4.194304 ms (bucket 12).
	if counts[10] != 1 || counts[12] != 1 {
		t.Errorf("buckets = %v, want one in 10 and one in 12", counts)
	}
	if got := st.Snapshot().Mailbox.QueueDelay; len(got) != stats.NumDelayBuckets || got[10] != 1 {
		t.Errorf("snapshot queue delay = %v", got)
	}
}

// TestCoDelControlLaw steps RFC 8289's state machine with a fake clock: a
// consumer taking one batch every 2 ms from a queue that never empties
// sees no drop for one interval above target, then a first drop, then
// drops at interval/√count.
func TestCoDelControlLaw(t *testing.T) {
	pool := packet.NewPool(4 * packet.MaxBatch)
	st := &stats.Counters{Name: "x"}
	m := New(64, CoDel, st)
	m.SetCoDel(5*time.Millisecond, 100*time.Millisecond)
	clock := &fakeClock{ns: 1e9}
	m.now = clock.now
	m.RegisterHandlers(&releaser{}, &manualDispatcher{}) // never runs: the test pops

	// A standing queue of 20 batches, each arriving 2 ms after the one
	// before; the consumer takes one and a new one arrives every 2 ms.
	for i := range 20 {
		m.PostUserMessage(batch(t, pool, byte(i)))
		clock.advance(2 * time.Millisecond)
	}
	var dropTimes []time.Duration
	start := clock.ns
	for step := range 200 {
		before := st.Dropped(ReasonCoDel)
		_, b := m.popUser()
		if b == nil {
			t.Fatalf("step %d: empty mailbox", step)
		}
		m.pending.Add(-1)
		b.Release()
		for range st.Dropped(ReasonCoDel) - before {
			dropTimes = append(dropTimes, time.Duration(clock.ns-start))
		}
		// One arrives as one leaves: the sojourn stays 40 ms less 2 ms
		// per drop, above the target throughout.
		m.PostUserMessage(batch(t, pool, 0))
		clock.advance(2 * time.Millisecond)
	}
	// Above target from the first dequeue: the first drop one interval
	// (100 ms) later, entering the dropping state with count 1; the next
	// 100/√1 ms later, then 100/√2 ≈ 70.7 ms and 100/√3 ≈ 57.7 ms after
	// (RFC 8289 §5.5), each at the consumer's next 2 ms tick.
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 272 * time.Millisecond, 330 * time.Millisecond}
	if len(dropTimes) < len(want) {
		t.Fatalf("drops at %v, want at least %d", dropTimes, len(want))
	}
	for i, w := range want {
		if got := dropTimes[i]; got < w || got > w+2*time.Millisecond {
			t.Errorf("drop %d at %v, want %v (the next 2 ms tick)", i+1, got, w)
		}
	}
	if st.Dropped(stats.MailboxFull) != 0 {
		t.Errorf("mailbox_full drops %d, want 0", st.Dropped(stats.MailboxFull))
	}
	// Leaving: once sojourn times are below target, no more drops.
	m.Close()
	if err := pool.CheckLeaks(); err != nil {
		t.Fatal(err)
	}
}

// TestCoDelSlowConsumer is issue 21's test: a consumer slower than its
// producer, and a producer that backs off on drops as TCP does (CoDel
// signals responsive senders; an unresponsive flood only meets the bound).
// Under drop_newest the mailbox fills to its bound before the first drop
// and every batch waits about capacity × service time; under codel the
// queueing delay stays near the target, and the drops are counted as
// codel.
func TestCoDelSlowConsumer(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	const (
		capacity = 128
		service  = 500 * time.Microsecond // per batch: at most 2000 batches/s
		tick     = 500 * time.Microsecond // the producer's step
		increase = 4000.0                 // batches/s the producer adds per second without drops
		rtt      = 20 * time.Millisecond  // the producer halves its rate at most once per rtt
		run      = 2 * time.Second
		target   = 5 * time.Millisecond
		interval = 50 * time.Millisecond
	)
	type result struct {
		p50, p90  time.Duration
		highWater int64
		drops     map[string]uint64
	}
	measure := func(t *testing.T, policy Policy) result {
		pool := packet.NewPool(2 * capacity)
		st := &stats.Counters{Name: "slow"}
		m := New(capacity, policy, st)
		m.SetCoDel(target, interval)
		var delivered atomic.Uint64
		system := actor.NewActorSystem()
		defer system.Shutdown()
		pid := system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor {
			return &slowActor{delay: service, delivered: &delivered}
		}, actor.WithMailbox(m.Producer())))
		bufs := make([][]byte, 1)
		// The delay of the batches after the first interval + a bit:
		// once CoDel has had time to act.
		settle := time.Now().Add(2 * interval)
		var counts0 [stats.NumDelayBuckets]uint64
		settled := false
		// The producer behaves as TCP does through a tunnel: it sends
		// ever faster (additive increase) until it sees a drop, then
		// halves its rate (at most once per "round trip"). It is paced by
		// what it owes since its last step, so oversleeping does not slow
		// it.
		rate, last, lastCut, seen := 500.0, time.Now(), time.Now(), uint64(0)
		var owed float64
		for start, now := time.Now(), time.Now(); now.Sub(start) < run; now = time.Now() {
			if !settled && now.After(settle) {
				counts0, _ = st.QueueDelays()
				settled = true
			}
			dt := now.Sub(last).Seconds()
			last = now
			if d := st.Dropped(ReasonCoDel) + st.Dropped(stats.MailboxFull); d > seen {
				seen = d
				if now.Sub(lastCut) > rtt {
					rate, lastCut = max(rate/2, 100), now
				}
			} else {
				rate += increase * dt
			}
			for owed += rate * dt; owed >= 1; owed-- {
				if pool.GetBufs(bufs) {
					b := pool.GetBatch()
					b.Append(bufs[0], 64)
					system.Root.Send(pid, b)
				}
			}
			time.Sleep(tick)
		}
		counts1, _ := st.QueueDelays()
		diff := make([]uint64, len(counts1))
		for i := range counts1 {
			diff[i] = counts1[i] - counts0[i]
		}
		for deadline := time.Now().Add(10 * time.Second); m.UserMessageCount() > 0 && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
		system.Root.StopFuture(pid).Wait()
		s := st.Snapshot()
		if err := pool.CheckLeaks(); err != nil {
			t.Fatal(err)
		}
		return result{
			p50:       time.Duration(stats.DelayQuantile(diff, 0.5)),
			p90:       time.Duration(stats.DelayQuantile(diff, 0.9)),
			highWater: s.Mailbox.HighWaterBatches,
			drops:     s.Drops,
		}
	}
	tail := measure(t, DropNewest)
	cd := measure(t, CoDel)
	t.Logf("drop_newest: p50 ≤ %v, p90 ≤ %v, high water %d/%d, drops %v", tail.p50, tail.p90, tail.highWater, capacity, tail.drops)
	t.Logf("codel:       p50 ≤ %v, p90 ≤ %v, high water %d/%d, drops %v", cd.p50, cd.p90, cd.highWater, capacity, cd.drops)

	if tail.highWater != capacity || tail.drops["mailbox_full"] == 0 {
		t.Errorf("drop_newest: high water %d, drops %v; want full (%d) and mailbox_full drops", tail.highWater, tail.drops, capacity)
	}
	// A full mailbox of 128 batches at ≥ 0.5 ms each: ≥ 32 ms at p50.
	if tail.p50 < 32*time.Millisecond {
		t.Errorf("drop_newest: p50 delay ≤ %v, want a standing queue (≥ 32 ms)", tail.p50)
	}
	if cd.drops["codel"] == 0 {
		t.Errorf("codel: drops %v, want codel drops", cd.drops)
	}
	// The histogram's bounds are powers of two: 8.4 ms is the bucket above
	// 5 ms. A loaded 2-core machine oversleeps, so allow one bucket more.
	if cd.p50 > 17*time.Millisecond {
		t.Errorf("codel: p50 delay ≤ %v, want near the %v target", cd.p50, target)
	}
	if cd.highWater >= capacity {
		t.Errorf("codel: high water %d/%d, drops %v; want below the bound", cd.highWater, capacity, cd.drops)
	}
}

// TestZeroAllocsPerBatch: posting a batch (stamped) and delivering it
// (its delay recorded) allocates nothing, under every policy.
func TestZeroAllocsPerBatch(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool (batch headers) drops items at random under -race")
	}
	for _, policy := range []Policy{DropNewest, DropOldest, CoDel} {
		t.Run(policy.String(), func(t *testing.T) {
			pool := packet.NewPool(packet.MaxBatch)
			st := &stats.Counters{}
			m := New(4, policy, st)
			d := &manualDispatcher{fns: make([]func(), 0, 4)}
			m.RegisterHandlers(&releaser{}, d)
			bufs := make([][]byte, 1)
			allocs := testing.AllocsPerRun(200, func() {
				if !pool.GetBufs(bufs) {
					t.Fatal("pool exhausted")
				}
				b := pool.GetBatch()
				b.Append(bufs[0], 64)
				m.PostUserMessage(b)
				d.runAll()
			})
			if allocs != 0 {
				t.Errorf("%v allocations per batch, want 0", allocs)
			}
			if counts, _ := st.QueueDelays(); counts[0] == 0 && st.Snapshot().Mailbox.DepthBatches != 0 {
				t.Errorf("no delay recorded")
			}
		})
	}
}

// releaser is an invoker that releases every batch, as a forwarding actor
// ends its life.
type releaser struct{}

func (releaser) InvokeSystemMessage(any) {}
func (releaser) InvokeUserMessage(m any) {
	if b, ok := m.(*packet.Batch); ok {
		b.Release()
	}
}
func (releaser) EscalateFailure(any, any) {}
