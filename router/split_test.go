package router

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"

	"switchyard/packet"
)

// tagged returns an IPv4 UDP packet to dst whose payload carries tag, so a
// test can tell packets apart after the split.
func tagged(dst string, tag uint16) []byte {
	payload := udp(4)
	binary.BigEndian.PutUint16(payload[8:10], tag)
	return ip4("172.16.0.1", dst, 17, payload)
}

func tagOf(pkt []byte) uint16 { return binary.BigEndian.Uint16(pkt[28:30]) }

func tags(b *packet.Batch) []uint16 {
	var out []uint16
	for i := range b.Len() {
		out = append(out, tagOf(b.Packet(i)))
	}
	return out
}

func splitTable(t testing.TB) *Table {
	return mustTable(t,
		Route{Prefix: mustPrefix("10.0.0.0/8"), Target: 1},
		Route{Prefix: mustPrefix("10.2.0.0/16"), Target: 2},
		Route{Prefix: mustPrefix("10.7.0.0/16"), Target: 7},
		Route{Prefix: mustPrefix("192.168.0.0/16"), Action: Drop},
		Route{Prefix: mustPrefix("172.31.0.0/16"), Action: Reject},
	)
}

func TestSplit(t *testing.T) {
	tab := splitTable(t)
	malformed := tagged("10.1.0.1", 99)
	malformed[0] = 0x55

	tests := []struct {
		name      string
		in        [][]byte
		want      map[int][]uint16 // target -> tags in order
		wantOrder []int            // targets in Result.Out order
		drops     [NumDropReasons]int
		rejected  []uint16
	}{
		{
			name: "one target keeps the batch",
			in:   [][]byte{tagged("10.1.0.1", 1), tagged("10.1.0.2", 2), tagged("10.1.0.3", 3)},
			want: map[int][]uint16{1: {1, 2, 3}}, wantOrder: []int{1},
		},
		{
			name: "interleaved targets keep their order",
			in: [][]byte{
				tagged("10.2.0.1", 1), tagged("10.1.0.1", 2), tagged("10.7.0.1", 3),
				tagged("10.2.0.2", 4), tagged("10.7.0.2", 5), tagged("10.1.0.2", 6),
				tagged("10.2.0.3", 7),
			},
			want:      map[int][]uint16{2: {1, 4, 7}, 1: {2, 6}, 7: {3, 5}},
			wantOrder: []int{2, 1, 7},
		},
		{
			name: "drops and rejects between forwards",
			in: [][]byte{
				tagged("192.168.1.1", 1), tagged("10.1.0.1", 2), malformed,
				tagged("172.31.0.1", 4), tagged("8.8.8.8", 5), tagged("10.7.0.1", 6),
				tagged("172.31.0.2", 7), tagged("10.1.0.2", 8),
			},
			want:      map[int][]uint16{1: {2, 8}, 7: {6}},
			wantOrder: []int{1, 7},
			drops:     [NumDropReasons]int{Malformed: 1, NoRoute: 1, RouteDrop: 1, Rejected: 2},
			rejected:  []uint16{4, 7},
		},
		{
			name:     "nothing forwarded",
			in:       [][]byte{tagged("172.31.0.1", 1), tagged("192.168.0.1", 2)},
			drops:    [NumDropReasons]int{RouteDrop: 1, Rejected: 1},
			rejected: []uint16{1},
		},
		{name: "empty batch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pool := packet.NewPool(1024)
			s := NewSplitter(pool)
			in := batchOf(t, pool, tt.in...)
			var rejected []uint16
			res := s.Split(tab, in, func(pkt []byte) {
				if err := packet.Check(pkt); err != nil {
					t.Errorf("onReject got a malformed packet: %v", err)
				}
				rejected = append(rejected, tagOf(pkt))
			})

			var order []int
			got := map[int][]uint16{}
			for _, tb := range res.Out {
				order = append(order, tb.Target)
				if tb.Batch.Len() == 0 {
					t.Errorf("target %d: empty batch in Out", tb.Target)
				}
				got[tb.Target] = tags(tb.Batch)
			}
			if !slices.Equal(order, tt.wantOrder) {
				t.Errorf("Out targets = %v, want %v", order, tt.wantOrder)
			}
			for target, want := range tt.want {
				if !slices.Equal(got[target], want) {
					t.Errorf("target %d: tags %v, want %v", target, got[target], want)
				}
			}
			if res.Drops != tt.drops {
				t.Errorf("Drops = %v, want %v", res.Drops, tt.drops)
			}
			if !slices.Equal(rejected, tt.rejected) {
				t.Errorf("rejected tags = %v, want %v", rejected, tt.rejected)
			}
			forwarded := 0
			for _, tb := range res.Out {
				forwarded += tb.Batch.Len()
			}
			if got, want := pool.Outstanding(), forwarded; got != want {
				t.Errorf("Outstanding = %d before release, want %d (forwarded packets)", got, want)
			}
			for _, tb := range res.Out {
				tb.Batch.Release()
			}
			if err := pool.CheckLeaks(); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestSplitPacketsIntact checks that forwarded buffers are moved, not
// copied or altered: each output packet equals its input.
func TestSplitPacketsIntact(t *testing.T) {
	tab := splitTable(t)
	pool := packet.NewPool(256)
	s := NewSplitter(pool)
	var pkts [][]byte
	for i := range packet.MaxBatch {
		dst := [...]string{"10.1.0.1", "10.2.0.1", "10.7.0.1", "192.168.0.1"}[i%4]
		pkts = append(pkts, tagged(dst, uint16(i)))
	}
	in := batchOf(t, pool, pkts...)
	res := s.Split(tab, in, nil)
	n := 0
	for _, tb := range res.Out {
		for i := range tb.Batch.Len() {
			p := tb.Batch.Packet(i)
			if want := pkts[tagOf(p)]; !bytes.Equal(p, want) {
				t.Errorf("target %d packet %d differs from input", tb.Target, i)
			}
			n++
		}
		tb.Batch.Release()
	}
	if got, want := n, packet.MaxBatch*3/4; got != want {
		t.Errorf("forwarded %d packets, want %d", got, want)
	}
	if got, want := res.Drops[RouteDrop], packet.MaxBatch/4; got != want {
		t.Errorf("Drops[RouteDrop] = %d, want %d", got, want)
	}
	if err := pool.CheckLeaks(); err != nil {
		t.Error(err)
	}
}

// TestSplitReuse runs several splits on one Splitter with different target
// sets: no stale batch of an earlier split may leak into a later result.
func TestSplitReuse(t *testing.T) {
	tab := splitTable(t)
	pool := packet.NewPool(256)
	s := NewSplitter(pool)
	rounds := []struct {
		in   [][]byte
		want []int
	}{
		{[][]byte{tagged("10.7.0.1", 1), tagged("10.2.0.1", 2), tagged("10.1.0.1", 3)}, []int{7, 2, 1}},
		{[][]byte{tagged("10.1.0.1", 1), tagged("10.2.0.1", 2)}, []int{1, 2}},
		{[][]byte{tagged("172.31.0.1", 1)}, nil},
		{[][]byte{tagged("10.2.0.1", 1), tagged("10.7.0.1", 2)}, []int{2, 7}},
	}
	for i, r := range rounds {
		res := s.Split(tab, batchOf(t, pool, r.in...), nil)
		var got []int
		for _, tb := range res.Out {
			got = append(got, tb.Target)
			if tb.Batch.Len() != 1 {
				t.Errorf("round %d target %d: %d packets, want 1", i, tb.Target, tb.Batch.Len())
			}
			tb.Batch.Release()
		}
		if !slices.Equal(got, r.want) {
			t.Errorf("round %d: targets %v, want %v", i, got, r.want)
		}
	}
	if err := pool.CheckLeaks(); err != nil {
		t.Error(err)
	}
}

func TestSplitForeignPoolPanics(t *testing.T) {
	tab := splitTable(t)
	other := packet.NewPool(128)
	in := batchOf(t, other, tagged("10.1.0.1", 1))
	defer func() {
		if recover() == nil {
			t.Errorf("Split of a foreign pool's batch did not panic")
		}
		in.Release()
	}()
	NewSplitter(packet.NewPool(128)).Split(tab, in, nil)
}

func TestSplitAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool (batch headers) drops items at random under -race")
	}
	tab := splitTable(t)
	pool := packet.NewPool(512)
	s := NewSplitter(pool)
	pkts := make([][]byte, packet.MaxBatch)
	for i := range pkts {
		dst := [...]string{"10.1.0.1", "10.2.0.1", "10.7.0.1", "192.168.0.1", "172.31.0.1", "8.8.8.8"}[i%6]
		pkts[i] = tagged(dst, uint16(i))
	}
	bufs := make([][]byte, len(pkts))
	rejects := 0
	onReject := func([]byte) { rejects++ }
	run := func() {
		in := pool.GetBatch()
		if !pool.GetBufs(bufs) {
			t.Fatal("pool exhausted")
		}
		for i, p := range pkts {
			n := copy(bufs[i][packet.Headroom:], p)
			in.Append(bufs[i], n)
		}
		res := s.Split(tab, in, onReject)
		for _, tb := range res.Out {
			tb.Batch.Release()
		}
	}
	got := testing.AllocsPerRun(200, run)
	if got != 0 {
		t.Errorf("Split allocates %v times per batch of %d, want 0", got, len(pkts))
	}
	if rejects == 0 {
		t.Errorf("onReject never called")
	}
	if err := pool.CheckLeaks(); err != nil {
		t.Error(err)
	}
}

// TestSplitRepeatedDestinationStillChecked guards the verdict reuse for a
// repeated destination: every packet's header is still checked.
func TestSplitRepeatedDestinationStillChecked(t *testing.T) {
	pool := packet.NewPool(packet.MaxBatch)
	tab := mustTable(t, Route{Prefix: mustPrefix("10.0.0.0/8"), Target: 0})
	good := ip4("192.0.2.1", "10.1.1.1", 17, udp(8))
	bad := append([]byte(nil), good...)
	bad[3]++ // total length no longer matches
	s := NewSplitter(pool)
	res := s.Split(tab, batchOf(t, pool, good, bad, good), nil)
	if got, want := res.Drops[Malformed], 1; got != want {
		t.Fatalf("malformed drops = %d, want %d", got, want)
	}
	if got, want := res.Out[0].Batch.Len(), 2; got != want {
		t.Fatalf("forwarded = %d, want %d", got, want)
	}
	res.Out[0].Batch.Release()
	if err := pool.CheckLeaks(); err != nil {
		t.Fatal(err)
	}
}
