package wireguard

import (
	"bytes"
	"net"
	"testing"

	"golang.zx2c4.com/wireguard/conn"

	"switchyard/protocols/udpbind"
	"switchyard/stats"
)

func msg(typ byte, size int) []byte {
	p := make([]byte, size)
	if size > 0 {
		p[0] = typ
	}
	for i := 4; i < size; i++ {
		p[i] = 0xa5
	}
	return p
}

func TestValidMessage(t *testing.T) {
	reserved := msg(1, 148)
	reserved[2] = 1
	tests := []struct {
		name string
		p    []byte
		want bool
	}{
		{"initiation", msg(1, 148), true},
		{"initiation short", msg(1, 147), false},
		{"initiation long", msg(1, 149), false},
		{"response", msg(2, 92), true},
		{"response wrong size", msg(2, 148), false},
		{"cookie reply", msg(3, 64), true},
		{"cookie reply wrong size", msg(3, 65), false},
		{"keepalive", msg(4, 32), true},
		{"transport", msg(4, 1452), true},
		{"transport too short", msg(4, 31), false},
		{"reserved byte set", reserved, false},
		{"type 0", msg(0, 148), false},
		{"type 5", msg(5, 148), false},
		{"empty", nil, false},
		{"three bytes", []byte{4, 0, 0}, false},
		{"text", []byte("hello, wireguard"), false},
	}
	for _, tt := range tests {
		if got := validMessage(tt.p); got != tt.want {
			t.Errorf("%s: validMessage = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// fakeBind returns canned datagrams from its one receive function.
type fakeBind struct {
	conn.Bind
	datagrams [][]byte
}

func (f *fakeBind) Open(uint16) ([]conn.ReceiveFunc, uint16, error) {
	return []conn.ReceiveFunc{func(bufs [][]byte, sizes []int, _ []conn.Endpoint) (int, error) {
		for i, d := range f.datagrams {
			sizes[i] = copy(bufs[i], d)
		}
		return len(f.datagrams), nil
	}}, 1, nil
}

// TestFilter: invalid datagrams get size 0 (the device skips them) and are
// counted; valid ones keep their slot and size; nothing is allocated.
func TestFilter(t *testing.T) {
	dgs := [][]byte{msg(1, 148), []byte("garbage"), msg(4, 200), msg(9, 148), {}, msg(2, 92)}
	st := &stats.Counters{}
	b := &filterBind{Bind: &fakeBind{datagrams: dgs}, stats: st}
	fns, _, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	bufs := make([][]byte, 128)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	sizes := make([]int, 128)
	eps := make([]conn.Endpoint, 128)
	n, err := fns[0](bufs, sizes, eps)
	if err != nil || n != len(dgs) {
		t.Fatalf("receive = %d, %v", n, err)
	}
	wantSizes := []int{148, 0, 200, 0, 0, 92}
	for i, want := range wantSizes {
		if sizes[i] != want {
			t.Errorf("size[%d] = %d, want %d", i, sizes[i], want)
		}
		if want > 0 && !bytes.Equal(bufs[i][:want], dgs[i]) {
			t.Errorf("datagram %d changed", i)
		}
	}
	s := st.Snapshot()
	if s.InPackets != 3 || s.Drops["malformed"] != 3 || s.InBytes != 7+148 {
		t.Errorf("stats: in %d (%d bytes), drops %v; want 3 (155 bytes), malformed 3", s.InPackets, s.InBytes, s.Drops)
	}
	if raceEnabled {
		return
	}
	if a := testing.AllocsPerRun(100, func() { _, _ = fns[0](bufs, sizes, eps) }); a != 0 {
		t.Errorf("receive through the filter allocates %v per call, want 0", a)
	}
}

// TestFilterBindUDP: the filter wraps the real bind (both families): an
// empty datagram is skipped and counted by the bind, the garbage behind it
// by the filter.
func TestFilterBindUDP(t *testing.T) {
	st := &stats.Counters{}
	b := &filterBind{Bind: udpbind.New(udpbind.Options{Stats: st}), stats: st}
	fns, port, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if len(fns) == 0 || port == 0 {
		t.Fatalf("Open = %d functions, port %d", len(fns), port)
	}
	c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write(nil)
	_, _ = c.Write([]byte("not wireguard"))
	bufs := make([][]byte, b.BatchSize())
	for i := range bufs {
		bufs[i] = make([]byte, 65535)
	}
	sizes := make([]int, len(bufs))
	got := 0
	for got == 0 {
		n, err := fns[0](bufs, sizes, make([]conn.Endpoint, len(bufs)))
		if err != nil || n > 1 || (n == 1 && sizes[0] != 0) {
			t.Fatalf("receive = %d, %v, size %d; want 1 datagram of size 0", n, err, sizes[0])
		}
		got += n
	}
	if m, e := st.Dropped(stats.Malformed), st.Dropped(udpbind.Empty); m != 1 || e != 1 {
		t.Errorf("malformed %d, empty %d; want 1 and 1", m, e)
	}
	if s := st.Snapshot(); s.InPackets != 2 {
		t.Errorf("in %d, want 2", s.InPackets)
	}
}
