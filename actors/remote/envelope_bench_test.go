package remote

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	"switchyard/actors/remote/wire"
	"switchyard/packet"
)

// BenchmarkEnvelope measures what a batch costs to cross the process
// boundary, apart from the transport: msgpack encoding into a reused slot
// buffer behind room for the header, sealing the wire.Envelope in place,
// proto.Marshal and proto.Unmarshal as protoactor's serializer calls them
// (the fast paths: no copy of the payload either way), decoding into pooled
// buffers and releasing them. Bytes are packet bytes (SetBytes: go test
// prints MB/s; GB/s is the same in 10⁹ bytes/s, for `make bench`). It
// allocates nothing per batch.
func BenchmarkEnvelope(b *testing.B) {
	for _, n := range []int{47, 128} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			pool := packet.NewPool(4 * packet.MaxBatch)
			src := newBatch(b, pool, repeat(n, 1420), 1)
			defer src.Release()
			enc, dec := NewEncoder(), NewDecoder()
			buf := make([]byte, wire.HeaderRoom, wire.HeaderRoom+MaxEnvelopeBytes)
			var out, in wire.Envelope
			round := func(seq uint64) {
				var to int
				buf, to = enc.Encode(buf[:wire.HeaderRoom], src, 0)
				if to != n {
					b.Fatalf("encoded %d of %d packets", to, n)
				}
				out.Seal(wire.Kind_BATCH, seq+1, buf)
				data, err := proto.Marshal(&out)
				if err != nil {
					b.Fatal(err)
				}
				if err := proto.Unmarshal(data, &in); err != nil {
					b.Fatal(err)
				}
				got, _, err := dec.Decode(in.Payload, pool, packet.MaxBatch)
				if err != nil {
					b.Fatal(err)
				}
				if got.Len() != n {
					b.Fatalf("decoded %d of %d packets", got.Len(), n)
				}
				got.Release()
			}
			round(0) // the pool makes its buffers once
			b.SetBytes(int64(src.Bytes()))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				round(uint64(i))
			}
			b.StopTimer()
			if s := b.Elapsed().Seconds(); s > 0 {
				b.ReportMetric(float64(src.Bytes())*float64(b.N)/s/1e9, "GB/s")
			}
			if got := pool.Outstanding(); got != n { // the source batch's
				b.Errorf("%d buffers outstanding, want %d", got, n)
			}
		})
	}
}
