package wireguard

// The filtering bind: udpbind.Bind with every receive function wrapped.
//
//  1. The device's receive goroutine calls the wrapped function with its 128
//     message buffers; the wrapper calls the bind's (recvmmsg, UDP GRO),
//     which has already skipped and counted empty datagrams (empty) and
//     truncated ones (malformed).
//  2. Each datagram is checked for the shape of a WireGuard message: type
//     1-4 in the first byte, three zero reserved bytes, and the exact size of
//     its type (handshake initiation 148, response 92, cookie reply 64) or at
//     least 32 bytes (transport: header and tag).
//  3. A datagram that fails is counted on FromNetwork (in, and dropped as
//     malformed) and its size set to 0: the device skips datagrams shorter
//     than a keepalive without a look. The device finds each datagram by
//     index in its own array, so the slots stay where they are.
//
// The wrapper allocates nothing; it adds one pass over the sizes and four
// byte loads per datagram.

import (
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"

	"switchyard/stats"
)

// filterBind is a conn.Bind whose receive functions drop datagrams that are
// not WireGuard messages, counting them.
type filterBind struct {
	conn.Bind
	stats *stats.Counters // FromNetwork
}

// Open implements conn.Bind.
func (b *filterBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	fns, actual, err := b.Bind.Open(port)
	if err != nil {
		return nil, 0, err
	}
	for i, fn := range fns {
		fns[i] = b.wrap(fn)
	}
	return fns, actual, nil
}

func (b *filterBind) wrap(fn conn.ReceiveFunc) conn.ReceiveFunc {
	return func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		n, err := fn(bufs, sizes, eps)
		if n > 0 {
			b.filter(bufs, sizes[:n])
		}
		return n, err
	}
}

// filter zeroes the size of every datagram that is not a WireGuard message
// and counts them.
func (b *filterBind) filter(bufs [][]byte, sizes []int) {
	bad, badBytes := 0, 0
	for i, size := range sizes {
		if validMessage(bufs[i][:size]) {
			continue
		}
		bad++
		badBytes += size
		sizes[i] = 0
	}
	if bad > 0 {
		b.stats.In(bad, badBytes)
		b.stats.Drop(stats.Malformed, bad)
	}
}

// validMessage reports whether p has the shape of a WireGuard message:
// a known type, zero reserved bytes and the size of that type.
func validMessage(p []byte) bool {
	if len(p) < 4 || p[1] != 0 || p[2] != 0 || p[3] != 0 {
		return false
	}
	switch p[0] {
	case device.MessageInitiationType:
		return len(p) == device.MessageInitiationSize
	case device.MessageResponseType:
		return len(p) == device.MessageResponseSize
	case device.MessageCookieReplyType:
		return len(p) == device.MessageCookieReplySize
	case device.MessageTransportType:
		return len(p) >= device.MessageTransportSize
	}
	return false
}
