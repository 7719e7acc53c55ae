//go:build linux

package shm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"switchyard/packet"
)

// hostModeEnv makes the test binary a host (child_test.go).
const hostModeEnv = "SHM_TEST_HOST"

func TestMain(m *testing.M) {
	if mode := os.Getenv(hostModeEnv); mode != "" {
		os.Exit(childMain(mode))
	}
	goleak.VerifyTestMain(m)
}

// pair makes a region and attaches a host to it in this process: two
// mappings of the same memfd.
func pair(tb testing.TB, cfg Config) (*Daemon, *Host) {
	tb.Helper()
	d, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	files, err := d.HostFiles()
	if err != nil {
		tb.Fatal(err)
	}
	h, err := Attach(files)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		h.Close()
		d.Close()
	})
	return d, h
}

// stamp writes packet seq of n bytes into a pool buffer: its sequence
// number, then bytes derived from it, so any mix-up shows.
func stamp(buf []byte, seq uint64, n int) {
	p := buf[packet.Headroom : packet.Headroom+n]
	for i := range p {
		p[i] = byte(seq*31 + uint64(i)*7)
	}
	if n >= 8 {
		binary.BigEndian.PutUint64(p, seq)
	}
}

// checkStamp reports whether pkt is what stamp wrote for seq.
func checkStamp(pkt []byte, seq uint64) error {
	for i := range pkt {
		want := byte(seq*31 + uint64(i)*7)
		if i < 8 && len(pkt) >= 8 {
			var b [8]byte
			binary.BigEndian.PutUint64(b[:], seq)
			want = b[i]
		}
		if pkt[i] != want {
			return fmt.Errorf("packet %d (%d bytes): byte %d is %#x, want %#x", seq, len(pkt), i, pkt[i], want)
		}
	}
	return nil
}

// seqOf reads the sequence number stamp wrote (packets of at least 8 bytes).
func seqOf(pkt []byte) uint64 { return binary.BigEndian.Uint64(pkt) }

// batchOf returns a batch of the given packet lengths, stamped from seq.
func batchOf(tb testing.TB, pool *packet.Pool, seq uint64, lens ...int) *packet.Batch {
	tb.Helper()
	b := pool.GetBatch()
	var bufs [packet.MaxBatch][]byte
	if !pool.GetBufs(bufs[:len(lens)]) {
		tb.Fatalf("pool exhausted (%d outstanding)", pool.Outstanding())
	}
	for i, n := range lens {
		stamp(bufs[i], seq+uint64(i), n)
		b.Append(bufs[i], n)
	}
	return b
}

func repeat(n, length int) []int {
	lens := make([]int, n)
	for i := range lens {
		lens[i] = length
	}
	return lens
}

// wantViolation fails unless err is a *Violation of kind k on ring.
func wantViolation(tb testing.TB, err error, k Kind, ring string) *Violation {
	tb.Helper()
	var v *Violation
	if !errors.As(err, &v) {
		tb.Fatalf("error %v: want a %s violation on %s", err, k, ring)
	}
	if v.Kind != k || v.Ring != ring {
		tb.Fatalf("violation %v: want %s on %s", v, k, ring)
	}
	if !errors.Is(err, ErrMalformed) {
		tb.Fatalf("violation %v does not wrap ErrMalformed", err)
	}
	return v
}

// checkConservation fails unless the daemon's counts add up.
func checkConservation(tb testing.TB, c Counts) {
	tb.Helper()
	if got := c.TXCompleted + c.TXLost + uint64(c.TXInFlight); got != c.TXHanded {
		tb.Fatalf("counts %+v: completed + lost + in flight = %d, handed %d", c, got, c.TXHanded)
	}
}
