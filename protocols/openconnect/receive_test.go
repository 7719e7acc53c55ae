package openconnect

import (
	"errors"
	"io"
	"reflect"
	"sync"
	"testing"
	"time"

	"switchyard/packet"
	"switchyard/packet/packettest"
	"switchyard/protocols/openconnect/cstp"
	"switchyard/stats"
)

// scriptConn is a frameConn whose reads return scripted chunks. A nil
// chunk is a pause: a read with a deadline set fails with a timeout there
// (as TLS does with nothing buffered); without a deadline it is skipped.
type scriptConn struct {
	chunks   [][]byte
	deadline bool
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func (c *scriptConn) Read(b []byte) (int, error) {
	for len(c.chunks) > 0 {
		ch := c.chunks[0]
		if ch == nil {
			c.chunks = c.chunks[1:]
			if c.deadline {
				return 0, timeoutErr{}
			}
			continue
		}
		n := copy(b, ch)
		if n < len(ch) {
			c.chunks[0] = ch[n:]
		} else {
			c.chunks = c.chunks[1:]
		}
		return n, nil
	}
	return 0, io.EOF
}

func (c *scriptConn) SetReadDeadline(t time.Time) error {
	c.deadline = !t.IsZero()
	return nil
}

func ipv4(seq, size int) []byte {
	return packettest.IPv4([4]byte{10, 0, 0, 1}, [4]byte{10, 0, 0, 2}, size, []byte{byte(seq)})
}

type readHarness struct {
	*harness
	r        *batcher
	controls []cstp.Type
	mu       sync.Mutex
}

func newReadHarness(t *testing.T, maxBatch int) *readHarness {
	h := newHarness(t)
	env := h.env()
	var poolLog, recvLog stats.LogLimiter
	return &readHarness{harness: h, r: newBatcher(&env, "oc", maxBatch, &poolLog, &recvLog)}
}

func (rh *readHarness) control(t cstp.Type, _ []byte) error {
	rh.mu.Lock()
	rh.controls = append(rh.controls, t)
	rh.mu.Unlock()
	if t == cstp.Disconnect {
		return errServerEnded
	}
	return nil
}

func frames(pkts ...[]byte) []byte {
	var b []byte
	for _, p := range pkts {
		b = cstp.AppendFrame(b, cstp.Data, p)
	}
	return b
}

// Packets that arrive together leave together: one batch per burst, frames
// split anywhere across reads, control frames handled in between.
func TestReadFramesBatches(t *testing.T) {
	rh := newReadHarness(t, packet.MaxBatch)
	var pkts [][]byte
	for i := range 10 {
		pkts = append(pkts, ipv4(i, 60+i*100))
	}
	burst1 := frames(pkts[:6]...)
	burst1 = append(burst1, cstp.AppendFrame(nil, cstp.DPDResp, nil)...)
	burst2 := frames(pkts[6:]...)
	conn := &scriptConn{chunks: [][]byte{
		burst1[:5], burst1[5:300], burst1[300:], nil, // one burst in three reads
		burst2[:len(burst2)-3], nil, burst2[len(burst2)-3:], // a frame cut by a pause
	}}
	err := readFrames(conn, frames(ipv4(99, 40)), rh.r, rh.control)
	if !errors.Is(err, io.EOF) {
		t.Fatalf("readFrames: got %v, want EOF", err)
	}
	rh.r.release()
	want := append([][]byte{ipv4(99, 40)}, pkts...)
	waitFor(t, "11 packets", 5*time.Second, func() bool { return rh.coll.Count() == len(want) })
	if got := rh.coll.Packets(); !reflect.DeepEqual(got, want) {
		t.Errorf("packets differ: got %d, want %d", len(got), len(want))
	}
	if got, wantSizes := rh.coll.BatchSizes(), []int{7, 3, 1}; !reflect.DeepEqual(got, wantSizes) {
		t.Errorf("batch sizes: got %v, want %v", got, wantSizes)
	}
	if !reflect.DeepEqual(rh.controls, []cstp.Type{cstp.DPDResp}) {
		t.Errorf("controls: got %v", rh.controls)
	}
	rh.checkBalance()
	rh.coll.Release()
	if err := rh.pool.CheckLeaks(); err != nil {
		t.Error(err)
	}
}

// A batch never exceeds the batch size.
func TestReadFramesMaxBatch(t *testing.T) {
	rh := newReadHarness(t, 4)
	var pkts [][]byte
	for i := range 10 {
		pkts = append(pkts, ipv4(i, 100))
	}
	_ = readFrames(&scriptConn{chunks: [][]byte{frames(pkts...)}}, nil, rh.r, rh.control)
	rh.r.release()
	waitFor(t, "10 packets", 5*time.Second, func() bool { return rh.coll.Count() == 10 })
	if got := rh.coll.BatchSizes(); !reflect.DeepEqual(got, []int{4, 4, 2}) {
		t.Errorf("batch sizes: got %v, want [4 4 2]", got)
	}
	rh.coll.Release()
}

// Bad input is counted and never crashes: a data frame that is not IP is
// malformed (the stream goes on); garbage instead of a frame header ends
// the stream, counted.
func TestReadFramesBadInput(t *testing.T) {
	badLen := ipv4(1, 100)
	badLen[3] = 200 // IPv4 length disagrees
	tests := []struct {
		name          string
		stream        []byte
		wantErr       error
		wantDelivered int
		wantMalformed uint64
	}{
		{"not ip", frames([]byte{0x99, 1, 2}, ipv4(2, 50)), io.EOF, 1, 1},
		{"ip length disagrees", frames(badLen, ipv4(2, 50)), io.EOF, 1, 1},
		{"empty data frame", frames([]byte{}, ipv4(2, 50)), io.EOF, 1, 1},
		{"compressed frame", append(cstp.AppendFrame(nil, cstp.Compressed, []byte{1, 2}), frames(ipv4(2, 50))...), io.EOF, 1, 1},
		{"unknown type", append(cstp.AppendFrame(nil, cstp.Type(0x42), []byte{1}), frames(ipv4(2, 50))...), io.EOF, 1, 1},
		{"garbage after a packet", append(frames(ipv4(2, 50)), "HTTP/1.1 200 OK\r\n"...), cstp.ErrBadMagic, 1, 1},
		{"reserved byte", append(frames(ipv4(2, 50)), "STF\x01\x00\x00\x00\x09"...), cstp.ErrBadHeader, 1, 1},
		{"truncated at the end", frames(ipv4(2, 50), ipv4(3, 50))[:80], io.EOF, 1, 0},
		{"server disconnect", append(frames(ipv4(2, 50)), cstp.AppendFrame(nil, cstp.Disconnect, []byte{0xb0})...), errServerEnded, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rh := newReadHarness(t, packet.MaxBatch)
			err := readFrames(&scriptConn{chunks: [][]byte{tt.stream}}, nil, rh.r, rh.control)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("err: got %v, want %v", err, tt.wantErr)
			}
			rh.r.release()
			waitFor(t, "delivery", 5*time.Second, func() bool { return rh.coll.Count() == tt.wantDelivered })
			if got := rh.recvStats.Dropped(stats.Malformed); got != tt.wantMalformed {
				t.Errorf("malformed: got %d, want %d", got, tt.wantMalformed)
			}
			rh.checkBalance()
			rh.coll.Release()
			if err := rh.pool.CheckLeaks(); err != nil {
				t.Error(err)
			}
		})
	}
}

// An exhausted pool drops packets as no_buffers and counts them.
func TestReadFramesNoBuffers(t *testing.T) {
	rh := newReadHarness(t, packet.MaxBatch)
	hog := make([][]byte, rh.pool.Limit())
	if !rh.pool.GetBufs(hog) {
		t.Fatal("could not drain the pool")
	}
	_ = readFrames(&scriptConn{chunks: [][]byte{frames(ipv4(1, 60), ipv4(2, 60))}}, nil, rh.r, rh.control)
	rh.r.release()
	if got := rh.recvStats.Dropped(stats.NoBuffers); got != 2 {
		t.Errorf("no_buffers: got %d, want 2", got)
	}
	rh.checkBalance()
	rh.pool.PutBufs(hog)
}

// The steady-state receive path (frames parsed, packets copied into stocked
// pool buffers) allocates nothing per packet.
func TestBatcherAllocs(t *testing.T) {
	rh := newReadHarness(t, packet.MaxBatch)
	stream := frames(ipv4(1, 1400), ipv4(2, 1400), ipv4(3, 1400), ipv4(4, 1400))
	allocs := testing.AllocsPerRun(50, func() {
		for rest := stream; len(rest) > 0; {
			_, p, n, _ := cstp.ParseFrame(rest, cstp.MaxPayload)
			rh.r.add(p)
			rest = rest[n:]
		}
		// Release the batch instead of sending it (the send to the
		// injector is per batch, not per packet).
		b := rh.r.b
		rh.r.b, rh.r.outBytes = nil, 0
		b.Release()
	})
	if allocs != 0 {
		t.Errorf("%v allocations per 4 packets, want 0", allocs)
	}
}
