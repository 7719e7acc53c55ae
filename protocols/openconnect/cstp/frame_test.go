package cstp

import (
	"bytes"
	"errors"
	"testing"
)

func TestParseFrame(t *testing.T) {
	data := AppendFrame(nil, Data, []byte{0x45, 1, 2, 3})
	tests := []struct {
		name        string
		in          []byte
		max         int
		wantType    Type
		wantPayload []byte
		wantN       int
		wantErr     error
	}{
		{"data", data, MaxPayload, Data, []byte{0x45, 1, 2, 3}, 12, nil},
		{"data then more", append(append([]byte{}, data...), 'S', 'T'), MaxPayload, Data, []byte{0x45, 1, 2, 3}, 12, nil},
		{"dpd request, empty", AppendFrame(nil, DPDReq, nil), MaxPayload, DPDReq, []byte{}, 8, nil},
		{"empty input", nil, MaxPayload, 0, nil, 0, ErrShort},
		{"magic only", []byte("STF\x01"), MaxPayload, 0, nil, 0, ErrShort},
		{"header only", data[:8], MaxPayload, 0, nil, 0, ErrShort},
		{"payload cut", data[:11], MaxPayload, 0, nil, 0, ErrShort},
		{"garbage first byte", []byte("GET / HTTP/1.1\r\n"), MaxPayload, 0, nil, 0, ErrBadMagic},
		{"garbage short", []byte("SX"), MaxPayload, 0, nil, 0, ErrBadMagic},
		{"wrong version", []byte("STF\x02\x00\x00\x00\x00"), MaxPayload, 0, nil, 0, ErrBadMagic},
		{"reserved byte set", []byte("STF\x01\x00\x00\x00\x01"), MaxPayload, 0, nil, 0, ErrBadHeader},
		{"larger than allowed", AppendFrame(nil, Data, make([]byte, 1501)), 1500, 0, nil, 0, ErrTooLarge},
		{"largest", AppendFrame(nil, Data, make([]byte, MaxPayload)), MaxPayload, Data, make([]byte, MaxPayload), 8 + MaxPayload, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			typ, payload, n, err := ParseFrame(tt.in, tt.max)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err: got %v, want %v", err, tt.wantErr)
			}
			if typ != tt.wantType || n != tt.wantN || !bytes.Equal(payload, tt.wantPayload) {
				t.Errorf("got (%v, %d bytes, %d), want (%v, %d bytes, %d)", typ, len(payload), n, tt.wantType, len(tt.wantPayload), tt.wantN)
			}
		})
	}
}

func TestAppendFrameWire(t *testing.T) {
	got := AppendFrame(nil, Keepalive, []byte{9})
	want := []byte{'S', 'T', 'F', 1, 0, 1, 7, 0, 9}
	if !bytes.Equal(got, want) {
		t.Errorf("got % x, want % x", got, want)
	}
}

func TestParseDTLS(t *testing.T) {
	tests := []struct {
		in      []byte
		want    Type
		payload []byte
		err     error
	}{
		{[]byte{0, 0x45, 0}, Data, []byte{0x45, 0}, nil},
		{[]byte{3}, DPDReq, []byte{}, nil},
		{nil, 0, nil, ErrEmpty},
	}
	for _, tt := range tests {
		typ, p, err := ParseDTLS(tt.in)
		if typ != tt.want || !bytes.Equal(p, tt.payload) || !errors.Is(err, tt.err) {
			t.Errorf("ParseDTLS(% x): got (%v, % x, %v), want (%v, % x, %v)", tt.in, typ, p, err, tt.want, tt.payload, tt.err)
		}
	}
}

// The framing path allocates nothing: a batch's frames are appended to a
// reused buffer and parsed in place.
func TestFramingAllocs(t *testing.T) {
	pkts := make([][]byte, 64)
	for i := range pkts {
		pkts[i] = make([]byte, 1400)
		pkts[i][0] = 0x45
	}
	buf := make([]byte, 0, 128<<10)
	allocs := testing.AllocsPerRun(100, func() {
		buf = buf[:0]
		for _, p := range pkts {
			buf = AppendFrame(buf, Data, p)
		}
		for rest := buf; len(rest) > 0; {
			_, _, n, err := ParseFrame(rest, MaxPayload)
			if err != nil {
				t.Fatal(err)
			}
			rest = rest[n:]
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per batch, want 0", allocs)
	}
}

func FuzzParseFrame(f *testing.F) {
	f.Add(AppendFrame(nil, Data, []byte{0x45, 0, 0, 20}), 1500)
	f.Add([]byte("STF\x01\xff\xff\x00\x00"), 65535)
	f.Add([]byte("STF"), 10)
	f.Add([]byte{}, 0)
	f.Fuzz(func(t *testing.T, b []byte, max int) {
		if max < 0 {
			max = -max
		}
		typ, payload, n, err := ParseFrame(b, max)
		if err != nil {
			if n != 0 || payload != nil {
				t.Fatalf("error %v with n=%d payload %d bytes", err, n, len(payload))
			}
			return
		}
		if n != HeaderBytes+len(payload) || n > len(b) || len(payload) > max {
			t.Fatalf("n=%d payload=%d len(b)=%d max=%d", n, len(payload), len(b), max)
		}
		// Re-encoding gives back the same bytes.
		if again := AppendFrame(nil, typ, payload); !bytes.Equal(again, b[:n]) {
			t.Fatalf("re-encoded % x, parsed from % x", again, b[:n])
		}
	})
}

func FuzzParseDTLS(f *testing.F) {
	f.Add([]byte{0, 0x45})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		typ, payload, err := ParseDTLS(b)
		if err != nil {
			if len(b) != 0 {
				t.Fatalf("error %v on %d bytes", err, len(b))
			}
			return
		}
		if byte(typ) != b[0] || len(payload) != len(b)-1 {
			t.Fatalf("got %v and %d bytes from % x", typ, len(payload), b)
		}
	})
}
