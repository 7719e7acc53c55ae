package remote

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"switchyard/packet"
)

// encodeAll encodes b into as many payloads as Encode makes of it, each in
// its own buffer.
func encodeAll(enc *Encoder, b *packet.Batch) [][]byte {
	var out [][]byte
	for from := 0; from < b.Len(); {
		var p []byte
		p, from = enc.Encode(nil, b, from)
		out = append(out, p)
	}
	return out
}

// packetsOf copies the packets of b.
func packetsOf(b *packet.Batch) [][]byte {
	out := make([][]byte, b.Len())
	for i := range out {
		out[i] = bytes.Clone(b.Packet(i))
	}
	return out
}

// largestSplit is how many payloads the largest batch takes: 128 packets of
// 64 KiB, 7 to a payload (8 × (65535 + 3) > MaxEnvelopeBytes − 5).
const largestSplit = 19

func TestCodecRoundTrip(t *testing.T) {
	cases := []struct {
		name         string
		sizes        []int
		wantPayloads int
	}{
		{"1 × 20 bytes", repeat(1, 20), 1},
		{"1 × 65535 bytes", repeat(1, packet.MaxPacketBytes), 1},
		{"47 × 1420 bytes (one TUN read)", repeat(47, 1420), 1},
		{"47 × 20..65535 bytes", spread(47), 0},
		{"128 × 20 bytes", repeat(128, 20), 1},
		{"128 × 1420 bytes", repeat(128, 1420), 1},
		{"128 × 20..65535 bytes", spread(128), 0},
		{"128 × 65535 bytes (the largest batch)", repeat(128, packet.MaxPacketBytes), largestSplit},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pool := packet.NewPool(2 * packet.MaxBatch)
			src := newBatch(t, pool, c.sizes, 7)
			payloads := encodeAll(NewEncoder(), src)
			src.Release()
			if c.wantPayloads != 0 && len(payloads) != c.wantPayloads {
				t.Errorf("payloads = %d, want %d", len(payloads), c.wantPayloads)
			}
			dec := NewDecoder()
			var got, std [][]byte
			for i, p := range payloads {
				if len(p) > MaxEnvelopeBytes {
					t.Errorf("payload %d is %d bytes, limit %d", i, len(p), MaxEnvelopeBytes)
				}
				// The wire format is plain msgpack: an array of bin.
				var pk [][]byte
				if err := msgpack.Unmarshal(p, &pk); err != nil {
					t.Errorf("payload %d is not a msgpack array of bin: %v", i, err)
				}
				std = append(std, pk...)
				b, n, err := dec.Decode(p, pool, packet.MaxBatch)
				if err != nil {
					t.Fatalf("decode payload %d: %v", i, err)
				}
				if n != b.Len() {
					t.Errorf("payload %d: n = %d, batch of %d", i, n, b.Len())
				}
				got = append(got, packetsOf(b)...)
				b.Release()
			}
			want := expected(c.sizes, 7)
			samePackets(t, "decoded", got, want)
			samePackets(t, "msgpack.Unmarshal", std, want)
			if err := pool.CheckLeaks(); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestEncodeSplitsTheLargestBatch: a batch of 128 × 64 KiB packets leaves in
// several payloads, each within the limit, that decode back to the whole;
// and the sender's slots are sized for that many (maxSplit).
func TestEncodeSplitsTheLargestBatch(t *testing.T) {
	pool := packet.NewPool(2 * packet.MaxBatch)
	sizes := repeat(packet.MaxBatch, packet.MaxPacketBytes)
	src := newBatch(t, pool, sizes, 3)
	defer src.Release()
	enc, dec := NewEncoder(), NewDecoder()
	var got [][]byte
	var counts []int
	for from := 0; from < src.Len(); {
		p, to := enc.Encode(nil, src, from)
		if to <= from {
			t.Fatalf("Encode from %d took no packet", from)
		}
		if len(p) > MaxEnvelopeBytes {
			t.Errorf("payload from packet %d is %d bytes, limit %d", from, len(p), MaxEnvelopeBytes)
		}
		b, _, err := dec.Decode(p, pool, packet.MaxBatch)
		if err != nil {
			t.Fatalf("decode payload from packet %d: %v", from, err)
		}
		counts = append(counts, b.Len())
		got = append(got, packetsOf(b)...)
		b.Release()
		from = to
	}
	samePackets(t, "reassembled", got, expected(sizes, 3))
	if len(counts) != largestSplit {
		t.Errorf("payloads = %d (packets each %v), want %d", len(counts), counts, largestSplit)
	}
	if len(counts) > maxSplit {
		t.Errorf("the largest batch takes %d envelopes, more than maxSplit (%d): the sender's slots (window+maxSplit) "+
			"are reused while in flight", len(counts), maxSplit)
	}
}

// mp is a msgpack encoding, for hand-made payloads.
func mp(t *testing.T, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestDecodeRefuses(t *testing.T) {
	five := make([][]byte, 5)
	for i := range five {
		five[i] = packetOf(100, 1, i)
	}
	valid5 := mp(t, five)
	many := make([][]byte, packet.MaxBatch+1)
	for i := range many {
		many[i] = packetOf(20, 2, i)
	}
	huge := make([]byte, MaxEnvelopeBytes+1)
	copy(huge, valid5)

	cases := []struct {
		name       string
		payload    []byte
		maxPackets int
		hold       int // buffers taken from the pool first
		wantErr    error
		wantN      int
	}{
		{"empty payload", nil, 128, 0, ErrMalformed, 1},
		{"truncated in a packet", valid5[:len(valid5)-10], 128, 0, ErrMalformed, 5},
		{"array header only", valid5[:1], 128, 0, ErrMalformed, 5},
		{"truncated in a bin header", cat(valid5[:1], []byte{0xc5, 0x01}), 128, 0, ErrMalformed, 5},
		{"garbage", []byte{0xc1, 0xff, 0x00, 0x13}, 128, 0, ErrMalformed, 1},
		{"text", []byte("hello, world"), 128, 0, ErrMalformed, 1},
		{"a map, not an array", mp(t, map[string]int{"a": 1}), 128, 0, ErrMalformed, 1},
		{"a bin, not an array", mp(t, []byte("abc")), 128, 0, ErrMalformed, 1},
		{"array of integers", mp(t, []int{1, 2, 3}), 128, 0, ErrMalformed, 3},
		{"array of nil", mp(t, []any{nil}), 128, 0, ErrMalformed, 1},
		{"array of arrays", mp(t, [][]int{{1}, {2}}), 128, 0, ErrMalformed, 2},
		{"bin longer than what remains", cat([]byte{0x91, 0xc5, 0x03, 0xe8}, make([]byte, 10)), 128, 0, ErrMalformed, 1},
		{"bin32 of 4 GiB", []byte{0x91, 0xc6, 0xff, 0xff, 0xff, 0xff, 0x00}, 128, 0, ErrMalformed, 1},
		{"bin longer than a packet", cat([]byte{0x91, 0xc6, 0x00, 0x01, 0x11, 0x70}, make([]byte, 70000)), 128, 0, ErrMalformed, 1},
		{"zero-length packet", mp(t, [][]byte{{}}), 128, 0, ErrMalformed, 1},
		{"zero-length packet among good ones", mp(t, [][]byte{five[0], {}, five[1]}), 128, 0, ErrMalformed, 3},
		{"bad packet after good ones", cat([]byte{0x93}, mp(t, five[0]), mp(t, five[1]), []byte{0x01}), 128, 0, ErrMalformed, 3},
		{"trailing bytes", cat(valid5, []byte{0x00}), 128, 0, ErrMalformed, 5},
		{"two arrays", cat(valid5, valid5), 128, 0, ErrMalformed, 5},
		{"empty array", []byte{0x90}, 128, 0, ErrMalformed, 1},
		{"more packets than the batch holds", mp(t, many), 128, 0, ErrOversized, 1},
		{"more packets than max_packets", valid5, 4, 0, ErrOversized, 1},
		{"array32 announcing 4 G packets", []byte{0xdd, 0xff, 0xff, 0xff, 0xff}, 128, 0, ErrOversized, 1},
		{"payload above MaxEnvelopeBytes", huge, 128, 0, ErrOversized, 1},
		{"empty pool", valid5, 128, 128, ErrNoBuffers, 5},
		{"pool one buffer short", valid5, 128, 124, ErrNoBuffers, 5},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pool := packet.NewPool(packet.MaxBatch)
			held := make([][]byte, c.hold)
			if !pool.GetBufs(held) {
				t.Fatal("cannot hold buffers")
			}
			b, n, err := NewDecoder().Decode(c.payload, pool, c.maxPackets)
			if !errors.Is(err, c.wantErr) {
				t.Errorf("err = %v, want %v", err, c.wantErr)
			}
			if b != nil {
				t.Errorf("a refused payload returned a batch of %d", b.Len())
				b.Release()
			}
			if n != c.wantN {
				t.Errorf("n = %d, want %d", n, c.wantN)
			}
			if got := pool.Outstanding(); got != c.hold {
				t.Errorf("outstanding = %d, want %d (a refusal kept buffers)", got, c.hold)
			}
			pool.PutBufs(held)
			if err := pool.CheckLeaks(); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestDecoderReuse: a refusal leaves the decoder ready for the next payload.
func TestDecoderReuse(t *testing.T) {
	pool := packet.NewPool(packet.MaxBatch)
	enc, dec := NewEncoder(), NewDecoder()
	src := newBatch(t, pool, repeat(3, 60), 9)
	good, _ := enc.Encode(nil, src, 0)
	src.Release()
	for i, p := range [][]byte{good[:len(good)-1], good, {0xc1}, good, cat(good, good), good} {
		b, _, err := dec.Decode(p, pool, packet.MaxBatch)
		if err != nil {
			continue
		}
		samePackets(t, fmt.Sprintf("payload %d", i), packetsOf(b), expected(repeat(3, 60), 9))
		b.Release()
	}
	if err := pool.CheckLeaks(); err != nil {
		t.Error(err)
	}
}

func TestCodecAllocs(t *testing.T) {
	pool := packet.NewPool(4 * packet.MaxBatch)
	enc, dec := NewEncoder(), NewDecoder()
	for _, c := range []struct {
		name  string
		sizes []int
	}{
		{"47 × 1420", repeat(47, 1420)},
		{"128 × 1420", repeat(128, 1420)},
		{"128 × 65535, split", repeat(128, packet.MaxPacketBytes)},
	} {
		src := newBatch(t, pool, c.sizes, 1)
		dst := make([]byte, 0, MaxEnvelopeBytes)
		encodeAllInto := func() {
			for from := 0; from < src.Len(); {
				dst, from = enc.Encode(dst[:0], src, from)
			}
		}
		encodeAllInto()
		if n := testing.AllocsPerRun(50, encodeAllInto); n != 0 {
			t.Errorf("%s: Encode allocates %v times per batch, want 0", c.name, n)
		}
		payload, _ := enc.Encode(nil, src, 0)
		decodeRelease := func() {
			b, _, err := dec.Decode(payload, pool, packet.MaxBatch)
			if err != nil {
				t.Fatal(err)
			}
			b.Release()
		}
		decodeRelease() // the pool allocates its buffers once
		if n := testing.AllocsPerRun(50, decodeRelease); n != 0 {
			t.Errorf("%s: Decode+Release allocates %v times per payload, want 0", c.name, n)
		}
		src.Release()
	}
	if err := pool.CheckLeaks(); err != nil {
		t.Error(err)
	}
}

// FuzzDecode: whatever the payload, Decode does not panic, keeps no buffer
// when it refuses, and what it accepts is what msgpack reads.
func FuzzDecode(f *testing.F) {
	pool := packet.NewPool(2 * packet.MaxBatch)
	enc := NewEncoder()
	for _, sizes := range [][]int{repeat(1, 20), repeat(5, 100), repeat(47, 1420), {20, 65535, 300}, repeat(128, 40)} {
		b := newBatch(f, pool, sizes, 4)
		p, _ := enc.Encode(nil, b, 0)
		b.Release()
		f.Add(p)
		f.Add(p[:len(p)/2])
	}
	f.Add([]byte{0x90})
	f.Add([]byte{0x91, 0xc4, 0x00})
	f.Add([]byte{0xdd, 0xff, 0xff, 0xff, 0xff})
	dec := NewDecoder()
	f.Fuzz(func(t *testing.T, payload []byte) {
		b, n, err := dec.Decode(payload, pool, packet.MaxBatch)
		if n < 1 {
			t.Errorf("n = %d, want ≥ 1", n)
		}
		if err != nil {
			if b != nil {
				t.Error("a refusal returned a batch")
			}
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrOversized) && !errors.Is(err, ErrNoBuffers) {
				t.Errorf("error %v is none of Decode's", err)
			}
		} else {
			var want [][]byte
			if uerr := msgpack.Unmarshal(payload, &want); uerr != nil {
				t.Errorf("Decode accepted what msgpack refuses: %v", uerr)
			}
			if b.Len() != n || b.Len() == 0 || b.Len() > packet.MaxBatch {
				t.Errorf("batch of %d, n = %d", b.Len(), n)
			}
			samePackets(t, "decoded", packetsOf(b), want)
			b.Release()
		}
		if got := pool.Outstanding(); got != 0 {
			t.Fatalf("%d buffers outstanding after Decode (err %v)", got, err)
		}
	})
}
