package packettest

import (
	"testing"

	"switchyard/packet"
)

// BatchOf returns a batch of pool holding copies of pkts (each behind the
// headroom), as a TUN read would hand one over; the caller owns it. It fails
// the test when the pool cannot supply the buffers.
func BatchOf(tb testing.TB, pool *packet.Pool, pkts ...[]byte) *packet.Batch {
	tb.Helper()
	bufs := make([][]byte, len(pkts))
	if !pool.GetBufs(bufs) {
		tb.Fatal("pool exhausted")
	}
	b := pool.GetBatch()
	for i, p := range pkts {
		b.Append(bufs[i], copy(bufs[i][packet.Headroom:], p))
	}
	return b
}
