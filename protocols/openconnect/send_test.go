package openconnect

import (
	"crypto/tls"
	"io"
	"net"
	"testing"

	"switchyard/packet"
	"switchyard/protocols/openconnect/cstp"
)

// The client's CSTP send path (headers into the headroom, one TLS record
// per frame gathered under TLS, one TCP write) allocates nothing per packet
// once warm, and what arrives is one frame per record.
func TestSendCSTPAllocs(t *testing.T) {
	pki := newPKI(t, t.TempDir(), net.IPv4(127, 0, 0, 1), "alice")
	cert, err := tls.LoadX509KeyPair(pki.certFile, pki.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	// Loopback TCP, not net.Pipe: a pipe's write deadline allocates a timer,
	// a socket's does not.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	srv := tls.Server(sc, &tls.Config{Certificates: []tls.Certificate{cert}})
	records := make(chan int, 1)
	go func() {
		_ = srv.Handshake()
		// Count frames and check each record starts with a header.
		buf := make([]byte, 64<<10)
		frames := 0
		for {
			n, err := srv.Read(buf) // one record per Read
			if err != nil {
				records <- frames
				return
			}
			if _, _, m, err := cstp.ParseFrame(buf[:n], cstp.MaxPayload); err != nil || m != n {
				records <- -1
				io.Copy(io.Discard, srv)
				return
			}
			frames++
		}
	}()
	wire := &wireConn{Conn: cc}
	conn := tls.Client(wire, &tls.Config{InsecureSkipVerify: true, DynamicRecordSizingDisabled: true})
	if err := conn.Handshake(); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t)
	a := newClientActor("oc", mustParse(t, "server: https://127.0.0.1\nusername: a\npassword_file: "+
		writeSecret(t, t.TempDir()+"/pw", "x\n")+"\n").Client, h.env())
	s := &session{a: a, conn: conn, wire: wire, done: make(chan struct{})}
	a.sess = s

	pkt := ipv4(1, 1400)
	bufs := make([][]byte, 32)
	send := func() {
		b := h.pool.GetBatch()
		if !h.pool.GetBufs(bufs) {
			t.Fatal("pool exhausted")
		}
		for _, buf := range bufs {
			n := copy(buf[packet.Headroom:], pkt)
			b.Append(buf, n)
		}
		a.send(b)
	}
	send() // warm up
	allocs := testing.AllocsPerRun(50, send)
	if allocs > 0 && !raceEnabled {
		t.Errorf("%v allocations per batch of 32 packets, want 0", allocs)
	}
	conn.Close()
	if got, want := <-records, 52*32; got != want {
		t.Errorf("server read %d well-formed single-frame records, want %d", got, want)
	}
	if s := h.stats.Snapshot(); s.OutPackets != 52*32 || s.DroppedTotal() != 0 {
		t.Errorf("stats: out %d drops %v", s.OutPackets, s.Drops)
	}
	if err := h.pool.CheckLeaks(); err != nil {
		t.Error(err)
	}
}
