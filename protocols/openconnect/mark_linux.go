package openconnect

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// markControl returns a net.Dialer/ListenConfig Control that sets SO_MARK
// on the socket (Env.Mark: a full tunnel's policy rules send marked
// datagrams around the tunnel), or nil for mark 0.
func markControl(mark uint32) func(network, address string, c syscall.RawConn) error {
	if mark == 0 {
		return nil
	}
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
		}); err != nil {
			return err
		}
		return serr
	}
}
