package esp

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"
)

func gcm(t testing.TB, key []byte) cipher.AEAD {
	blk, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	a, err := cipher.NewGCM(blk)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func pair(t testing.TB, chacha, esn bool) (*Outbound, *Inbound) {
	key := bytes.Repeat([]byte{7}, 32)
	salt := []byte{1, 2, 3, 4}
	var a1, a2 cipher.AEAD
	if chacha {
		a1, _ = chacha20poly1305.New(key)
		a2, _ = chacha20poly1305.New(key)
	} else {
		a1, a2 = gcm(t, key), gcm(t, key)
	}
	return NewOutbound(0x1234, a1, salt, esn), NewInbound(0x1234, a2, salt, esn)
}

// ipPacket returns a buffer with a fake IPv4 packet of n bytes at HeaderLen
// and room for the trailer.
func ipPacket(n int, fill byte) []byte {
	b := make([]byte, HeaderLen+n, HeaderLen+n+Overhead)
	for i := range n {
		b[HeaderLen+i] = fill
	}
	b[HeaderLen] = 0x45
	return b
}

func TestSealOpen(t *testing.T) {
	for _, tc := range []struct {
		name        string
		chacha, esn bool
	}{{"gcm", false, false}, {"gcm-esn", false, true}, {"chacha", true, false}, {"chacha-esn", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			out, in := pair(t, tc.chacha, tc.esn)
			for n := 1; n < 70; n++ {
				b := ipPacket(n, byte(n))
				want := append([]byte(nil), b[HeaderLen:]...)
				d, err := out.Seal(b)
				if err != nil {
					t.Fatal(err)
				}
				if len(d)%4 != 0 {
					t.Fatalf("n=%d: sealed length %d not 4-aligned", n, len(d))
				}
				replay := append([]byte(nil), d...)
				in.Mu.Lock()
				got, err := in.Open(d)
				if err != nil || !bytes.Equal(d[HeaderLen:HeaderLen+got], want) {
					t.Fatalf("n=%d: open = %d, %v", n, got, err)
				}
				if _, err := in.Open(replay); !errors.Is(err, ErrReplay) {
					t.Fatalf("replay: got %v, want ErrReplay", err)
				}
				in.Mu.Unlock()
			}
		})
	}
}

func TestOpenTampered(t *testing.T) {
	out, in := pair(t, false, false)
	d, _ := out.Seal(ipPacket(40, 1))
	bad := append([]byte(nil), d...)
	bad[30] ^= 1
	if _, err := in.Open(bad); !errors.Is(err, ErrAuth) {
		t.Fatalf("got %v, want ErrAuth", err)
	}
	// A failed packet does not move the window: the genuine one still opens.
	if _, err := in.Open(d); err != nil {
		t.Fatal(err)
	}
}

func TestReplayWindow(t *testing.T) {
	_, in := pair(t, false, false)
	tests := []struct {
		seq  uint64
		want bool
	}{{1, true}, {1, false}, {5, true}, {3, true}, {3, false}, {2000, true}, {5, false}, {2000 - ReplayWindow + 1, true}, {2000 - ReplayWindow, false}, {0, false}}
	for _, tc := range tests {
		got := in.fresh(tc.seq)
		if got != tc.want {
			t.Fatalf("fresh(%d) = %v, want %v", tc.seq, got, tc.want)
		}
		if got {
			in.accept(tc.seq)
		}
	}
}

func TestESNInference(t *testing.T) {
	_, in := pair(t, false, true)
	tests := []struct {
		top  uint64
		lo   uint32
		want uint64
	}{
		{100, 101, 101},
		{0xffffff00, 5, 0x100000005},
		{0x100000005, 0xfffffff0, 0xfffffff0},
		{0x100000005, 6, 0x100000006},
		{0x2_00000800, 0x700, 0x2_00000700},
	}
	for _, tc := range tests {
		in.top = tc.top
		if got := in.inferSeq(tc.lo); got != tc.want {
			t.Errorf("top %#x lo %#x: got %#x, want %#x", tc.top, tc.lo, got, tc.want)
		}
	}
}

func TestSeqWrap(t *testing.T) {
	out, _ := pair(t, false, false)
	out.seq = 0xffffffff
	if _, err := out.Seal(ipPacket(20, 0)); !errors.Is(err, ErrSeqWrap) {
		t.Fatalf("got %v, want ErrSeqWrap", err)
	}
	out.ESN = true
	if _, err := out.Seal(ipPacket(20, 0)); err != nil {
		t.Fatalf("ESN: %v", err)
	}
}

// TestBatchAllocs: sealing and opening a batch of 128 packets allocates
// nothing.
func TestBatchAllocs(t *testing.T) {
	out, in := pair(t, false, false)
	bufs := make([][]byte, 128)
	for i := range bufs {
		bufs[i] = ipPacket(1400, byte(i))
	}
	allocs := testing.AllocsPerRun(20, func() {
		for i := range bufs {
			bufs[i] = bufs[i][:HeaderLen+1400]
			bufs[i][HeaderLen] = 0x45
			d, err := out.Seal(bufs[i])
			if err != nil {
				t.Fatal(err)
			}
			bufs[i] = d
		}
		in.Mu.Lock()
		for i := range bufs {
			if _, err := in.Open(bufs[i]); err != nil {
				t.Fatal(err)
			}
		}
		in.Mu.Unlock()
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per batch, want 0", allocs)
	}
}

func FuzzOpen(f *testing.F) {
	out, _ := pair(f, false, true)
	d, _ := out.Seal(ipPacket(60, 3))
	f.Add(append([]byte(nil), d...))
	f.Add([]byte{0, 0, 0x12, 0x34})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, in := pair(t, false, true)
		in.Mu.Lock()
		n, err := in.Open(b)
		in.Mu.Unlock()
		if err == nil && HeaderLen+n > len(b) {
			t.Fatalf("inner length %d beyond %d bytes", n, len(b))
		}
	})
}
