package openconnect

// wireConn is the TCP connection under a TLS connection of ours. It does
// two things:
//
//  1. It keeps the first bytes the peer sends (the plaintext ServerHello,
//     whose random the TLS 1.2 exporter needs: ekm.go).
//  2. It gathers the TLS records of a batch and sends them in one write.
//     ocserv (and AnyConnect) read one CSTP frame per TLS record — ocserv
//     parses the header at the start of each record and ignores the rest —
//     so every frame must be a record of its own; crypto/tls makes one
//     record per Write (of at most 16 KiB, with dynamic record sizing off)
//     and one TCP write per record. Between begin and flush the records go
//     into a buffer instead, and flush sends the whole batch's records with
//     one write. Records written meanwhile by other goroutines (DPD,
//     keepalives) join the buffer in order.

import (
	"net"
	"sync"
)

type wireConn struct {
	net.Conn

	head []byte // the first serverHelloBytes read (read only by the handshake)
	full bool

	mu       sync.Mutex
	batching bool
	out      []byte
}

func (c *wireConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if !c.full {
		c.head = append(c.head, b[:n]...)
		c.full = len(c.head) >= serverHelloBytes
	}
	return n, err
}

func (c *wireConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	if c.batching {
		c.out = append(c.out, b...)
		c.mu.Unlock()
		return len(b), nil
	}
	c.mu.Unlock()
	return c.Conn.Write(b)
}

// begin starts gathering records.
func (c *wireConn) begin() {
	c.mu.Lock()
	c.batching = true
	c.mu.Unlock()
}

// flush sends the gathered records in one write and stops gathering.
func (c *wireConn) flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.batching = false
	if len(c.out) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.out)
	if cap(c.out) > 4*writeBufferBytes {
		c.out = nil // a jumbo batch: do not keep its buffer
	} else {
		c.out = c.out[:0]
	}
	return err
}
