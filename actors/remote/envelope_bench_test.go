package remote

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	"switchyard/actors/remote/wire"
	"switchyard/packet"
)

// BenchmarkEnvelope measures what a batch costs to cross the process
// boundary, apart from the transport: msgpack encoding into a reused
// buffer, proto.Marshal of the wire.Envelope (into a reused buffer),
// proto.Unmarshal on the far side, decoding into pooled buffers and
// releasing them. Bytes are packet bytes (SetBytes: go test prints MB/s;
// GB/s is the same in 10⁹ bytes/s, for `make bench`). The one allocation
// per op is proto.Unmarshal's copy of the payload (protobuf-go always
// allocates a bytes field); the codec itself allocates nothing.
func BenchmarkEnvelope(b *testing.B) {
	for _, n := range []int{47, 128} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			pool := packet.NewPool(4 * packet.MaxBatch)
			src := newBatch(b, pool, repeat(n, 1420), 1)
			defer src.Release()
			enc, dec := NewEncoder(), NewDecoder()
			payload := make([]byte, 0, MaxEnvelopeBytes)
			wireBuf := make([]byte, 0, MaxEnvelopeBytes+envelopeOverhead)
			var out, in wire.Envelope
			marshal := proto.MarshalOptions{}
			round := func(seq uint64) {
				var to int
				payload, to = enc.Encode(payload, src, 0)
				if to != n {
					b.Fatalf("encoded %d of %d packets", to, n)
				}
				out.Kind, out.Seq, out.Payload = wire.Kind_BATCH, seq, payload
				var err error
				if wireBuf, err = marshal.MarshalAppend(wireBuf[:0], &out); err != nil {
					b.Fatal(err)
				}
				if err := proto.Unmarshal(wireBuf, &in); err != nil {
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
