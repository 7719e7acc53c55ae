package packettest

import (
	"net"
	"sync"
	"sync/atomic"

	"golang.zx2c4.com/wireguard/conn"
)

// SinkBind is an in-memory conn.Bind: Send counts the packets and bytes it
// is given and discards them; receive functions block until Close. It lets a
// benchmark measure a protocol actor without the kernel's share.
type SinkBind struct {
	Packets atomic.Uint64
	Bytes   atomic.Uint64
	// OnSend, if set, is called after each Send with the packets it took.
	OnSend func(n int)

	mu     sync.Mutex
	closed chan struct{}
}

var _ conn.Bind = (*SinkBind)(nil)

// Open implements conn.Bind: one receive function that blocks until Close.
func (s *SinkBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	s.mu.Lock()
	s.closed = make(chan struct{})
	closed := s.closed
	s.mu.Unlock()
	recv := func(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		<-closed
		return 0, net.ErrClosed
	}
	return []conn.ReceiveFunc{recv}, port, nil
}

// Close implements conn.Bind.
func (s *SinkBind) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed != nil {
		close(s.closed)
		s.closed = nil
	}
	return nil
}

// SetMark implements conn.Bind.
func (s *SinkBind) SetMark(uint32) error { return nil }

// Send implements conn.Bind: it counts and discards bufs.
func (s *SinkBind) Send(bufs [][]byte, _ conn.Endpoint) error {
	n := 0
	for _, b := range bufs {
		n += len(b)
	}
	s.Packets.Add(uint64(len(bufs)))
	s.Bytes.Add(uint64(n))
	if s.OnSend != nil {
		s.OnSend(len(bufs))
	}
	return nil
}

// ParseEndpoint implements conn.Bind.
func (s *SinkBind) ParseEndpoint(addr string) (conn.Endpoint, error) {
	return conn.NewStdNetBind().ParseEndpoint(addr)
}

// BatchSize implements conn.Bind.
func (s *SinkBind) BatchSize() int { return conn.IdealBatchSize }
