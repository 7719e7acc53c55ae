package stats

import (
	"sync"
	"testing"
)

func TestBatchBucket(t *testing.T) {
	tests := []struct {
		packets int
		want    int
	}{
		{0, 0}, {1, 0}, {2, 1}, {3, 2}, {4, 2}, {5, 3}, {8, 3}, {9, 4}, {16, 4},
		{17, 5}, {32, 5}, {33, 6}, {47, 6}, {64, 6}, {65, 7}, {128, 7}, {129, 8}, {1 << 20, 8},
	}
	for _, tt := range tests {
		if got := batchBucket(tt.packets); got != tt.want {
			t.Errorf("batchBucket(%d) = %d, want %d", tt.packets, got, tt.want)
		}
		// The bucket's bound holds the batch and the bound below does not.
		if b := batchBucket(tt.packets); b < len(BatchSizeBuckets) {
			if float64(tt.packets) > BatchSizeBuckets[b] {
				t.Errorf("%d packets in bucket %d (le %v)", tt.packets, b, BatchSizeBuckets[b])
			}
			if b > 0 && float64(tt.packets) <= BatchSizeBuckets[b-1] {
				t.Errorf("%d packets in bucket %d, but bound %v holds it", tt.packets, b, BatchSizeBuckets[b-1])
			}
		}
	}
}

func TestCounters(t *testing.T) {
	var r Registry
	a := r.Row("peer", "udp")
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				a.In(47, 47*1400)
				a.In(1, 100)
				a.Out(47, 47*1400)
				a.Drop(MailboxFull, 1)
			}
		}()
	}
	wg.Wait()
	if got := r.Row("peer", "udp"); got != a {
		t.Error("Registry.Actor returned new counters for a known name")
	}
	s := r.Snapshot()[0]
	checks := []struct {
		name      string
		got, want uint64
	}{
		{"in_packets", s.InPackets, 4000 * 48},
		{"in_batches", s.InBatches, 8000},
		{"in_bytes", s.InBytes, 4000 * (47*1400 + 100)},
		{"out_packets", s.OutPackets, 4000 * 47},
		{"out_batches", s.OutBatches, 4000},
		{"drops[mailbox_full]", s.Drops["mailbox_full"], 4000},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
	got := a.BatchSizes()
	want := [numBatchBuckets]uint64{0: 4000, 6: 4000}
	if got != want {
		t.Errorf("BatchSizes() = %v, want %v", got, want)
	}
	var total uint64
	for _, n := range got {
		total += n
	}
	if total != s.InBatches {
		t.Errorf("histogram holds %d batches, in_batches = %d", total, s.InBatches)
	}
	if got := len(r.All()); got != 1 {
		t.Errorf("len(Actors()) = %d, want 1", got)
	}
}

func TestHotPathAllocations(t *testing.T) {
	a := &Counters{Name: "router"}
	allocs := testing.AllocsPerRun(1000, func() {
		a.In(64, 64*1400)
		a.Out(64, 64*1400)
		a.Drop(NoRoute, 1)
		a.Queued(1, 64)
		a.Queued(-1, -64)
	})
	if allocs != 0 {
		t.Errorf("In/Out/Drop/Queued: %v allocations per call, want 0", allocs)
	}
}

func BenchmarkIn(b *testing.B) {
	a := &Counters{Name: "router"}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			a.In(47, 47*1400)
		}
	})
}

func TestNewReason(t *testing.T) {
	a := NewReason("test_reason_a")
	if got := NewReason("test_reason_a"); got != a {
		t.Errorf("NewReason twice with one name = %d and %d, want the same reason", a, got)
	}
	if got, want := a.String(), "test_reason_a"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if a < numCoreReasons {
		t.Errorf("a protocol's reason %d overlaps the core reasons (< %d)", a, numCoreReasons)
	}
	c := &Counters{Name: "x"}
	c.Drop(a, 3)
	if got := c.Snapshot().Drops["test_reason_a"]; got != 3 {
		t.Errorf("drops[test_reason_a] = %d, want 3", got)
	}
}

func TestMirroredIsCumulativeAcrossRestarts(t *testing.T) {
	var c Counters
	m := NewMirrored(&c)
	report := func(in, out, dropped uint64, inc uint64) {
		m.Report(Row{InPackets: in, OutPackets: out, Drops: map[string]uint64{"mailbox_full": dropped}, State: "running"}, inc)
	}
	for _, tc := range []struct {
		name                       string
		in, out, dropped           uint64
		inc                        uint64
		wantIn, wantOut, wantDrops uint64
	}{
		{"first report", 10, 8, 2, 1, 10, 8, 2},
		{"same incarnation grows", 20, 15, 5, 1, 20, 15, 5},
		{"restart seen (new incarnation)", 3, 3, 0, 2, 23, 18, 5},
		{"grows again", 7, 6, 1, 2, 27, 21, 6},
		{"restart unseen (counters fell)", 1, 0, 0, 2, 28, 21, 6},
	} {
		report(tc.in, tc.out, tc.dropped, tc.inc)
		s := c.Snapshot()
		if s.InPackets != tc.wantIn || s.OutPackets != tc.wantOut || s.Drops["mailbox_full"] != tc.wantDrops {
			t.Errorf("%s: in %d out %d drops %d; want %d %d %d", tc.name, s.InPackets, s.OutPackets, s.Drops["mailbox_full"], tc.wantIn, tc.wantOut, tc.wantDrops)
		}
	}
}

func TestQueueDelayHistogram(t *testing.T) {
	tests := []struct {
		ns   int64
		want int // bucket
	}{
		{-5, 0}, {0, 0}, {1024, 0}, {1025, 1}, {2048, 1}, {2049, 2},
		{1_000_000, 10}, {1_048_576, 10}, {5_000_000, 13}, {QueueDelayBuckets[NumDelayBuckets-2], NumDelayBuckets - 2},
		{QueueDelayBuckets[NumDelayBuckets-2] + 1, NumDelayBuckets - 1}, {1 << 62, NumDelayBuckets - 1},
	}
	for _, tt := range tests {
		var a Counters
		a.QueueDelay(tt.ns)
		counts, sum := a.QueueDelays()
		if counts[tt.want] != 1 {
			t.Errorf("QueueDelay(%d): counts %v, want one in bucket %d", tt.ns, counts, tt.want)
		}
		if want := uint64(max(tt.ns, 0)); sum != want {
			t.Errorf("QueueDelay(%d): sum %d, want %d", tt.ns, sum, want)
		}
	}
}

func TestDelayQuantile(t *testing.T) {
	counts := make([]uint64, NumDelayBuckets)
	counts[0], counts[3], counts[NumDelayBuckets-1] = 50, 49, 1
	tests := []struct {
		q    float64
		want int64
	}{
		{0.5, 1024}, {0.51, 1024 << 3}, {0.99, 1024 << 3}, {1, QueueDelayBuckets[NumDelayBuckets-2]},
	}
	for _, tt := range tests {
		if got := DelayQuantile(counts, tt.q); got != tt.want {
			t.Errorf("DelayQuantile(q=%g) = %d, want %d", tt.q, got, tt.want)
		}
	}
	if got := DelayQuantile(make([]uint64, NumDelayBuckets), 0.99); got != 0 {
		t.Errorf("DelayQuantile of nothing = %d, want 0", got)
	}
}
