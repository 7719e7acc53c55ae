package udpbind

import (
	"errors"
	"net"
	"time"

	"golang.zx2c4.com/wireguard/conn"
)

// RecvErrorPause (10 ms) is how long a receive loop sleeps after the second
// receive error in a row: a socket that keeps failing must not spin a core,
// while a single transient error costs nothing.
const RecvErrorPause = 10 * time.Millisecond

// Loop is the receive loop every protocol reader runs on a receive function
// of a bind: it calls recv into bufs, sizes and eps (borrowed from the
// reader) and hands each read's count to deliver, once per batch of
// datagrams. It returns when the bind is closed (net.ErrClosed) or closing
// reports true. Other errors go to failed (which should count or log them
// at a limited rate), and the second and later errors in a row pause the
// loop for RecvErrorPause.
func Loop(recv conn.ReceiveFunc, bufs [][]byte, sizes []int, eps []conn.Endpoint,
	closing func() bool, failed func(error), deliver func(n int)) {
	failures := 0 // receive errors in a row
	for {
		n, err := recv(bufs, sizes, eps)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || closing() {
				return
			}
			failed(err)
			if failures++; failures > 1 {
				time.Sleep(RecvErrorPause)
			}
			continue
		}
		failures = 0
		deliver(n)
	}
}
