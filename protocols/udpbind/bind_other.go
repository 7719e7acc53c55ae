//go:build !linux

package udpbind

import (
	"golang.zx2c4.com/wireguard/conn"
)

// New returns conn.StdNetBind with its receive functions wrapped to skip
// and count empty datagrams. Off Linux it reads one datagram per call
// without GRO, so an empty one hides nothing behind it.
func New(o Options) conn.Bind { return &stdBind{Bind: conn.NewStdNetBind(), opts: o} }

// GSODisabledError is never returned off Linux (no UDP GSO there); it is
// declared so that callers build everywhere.
type GSODisabledError struct {
	Local    string
	RetryErr error
}

func (e *GSODisabledError) Error() string { return "UDP GSO disabled on " + e.Local }

func (e *GSODisabledError) Unwrap() error { return e.RetryErr }

type stdBind struct {
	conn.Bind
	opts Options
}

// Open implements conn.Bind.
func (b *stdBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	fns, actual, err := b.Bind.Open(port)
	if err != nil {
		return nil, 0, err
	}
	for i, fn := range fns {
		fns[i] = b.skipEmpty(fn)
	}
	return fns, actual, nil
}

// skipEmpty moves the non-empty datagrams of a read to the front and counts
// the empty ones.
func (b *stdBind) skipEmpty(fn conn.ReceiveFunc) conn.ReceiveFunc {
	return func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		k, err := fn(bufs, sizes, eps)
		n := 0
		for i := 0; i < k; i++ {
			if sizes[i] == 0 {
				continue
			}
			if n != i {
				sizes[n] = copy(bufs[n], bufs[i][:sizes[i]])
				eps[n] = eps[i]
			}
			n++
		}
		if empty := k - n; empty > 0 && b.opts.Stats != nil {
			b.opts.Stats.In(empty, 0)
			b.opts.Stats.Drop(Empty, empty)
		}
		return n, err
	}
}
