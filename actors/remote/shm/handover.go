//go:build linux

package shm

// Handing a region to a host the daemon did not spawn.
//
//  1. The daemon listens on a Unix socket in its runtime directory (the
//     directory 0700 and owned by the daemon's user, the socket 0600), and
//     tells the host the socket's path and a fresh Nonce over the control
//     connection (the OPEN).
//  2. The host connects and writes the nonce.
//  3. The daemon checks the peer's credentials (SO_PEERCRED: the daemon's
//     own user), reads the nonce within HandoverReadTimeout and compares it
//     in constant time, opens a pidfd on the peer's pid (readable when it
//     exits), and sends one byte with the memfd and the host's doorbell end
//     attached (SCM_RIGHTS). A peer that fails a check is disconnected and
//     counted; the daemon keeps listening until the deadline.

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Listener hands regions to hosts the daemon did not spawn.
type Listener struct {
	ln      *net.UnixListener
	path    string
	uid     int
	refused atomic.Uint64
}

// Listen makes dir (mode 0700, if missing) and listens on dir/name (mode
// 0600). An existing dir must be a directory owned by the daemon's
// effective user with no permissions for group or others; a stale socket
// of that name is replaced. Only peers of the daemon's effective user are
// served.
func Listen(dir, name string) (*Listener, error) {
	if name == "" || strings.ContainsRune(name, '/') {
		return nil, fmt.Errorf("shm: listen: socket name %q: want one path element", name)
	}
	uid := os.Geteuid()
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("shm: listen: make runtime dir: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return nil, fmt.Errorf("shm: listen: %w", err)
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return nil, fmt.Errorf("shm: listen: %s is not a directory", dir)
	case int(st.Uid) != uid:
		return nil, fmt.Errorf("shm: listen: %s is owned by uid %d, not %d", dir, st.Uid, uid)
	case st.Mode&0o077 != 0:
		return nil, fmt.Errorf("shm: listen: %s has mode %#o: want no access for group and others (0700)", dir, st.Mode&0o777)
	}
	path := filepath.Join(dir, name)
	if err := unix.Lstat(path, &st); err == nil {
		if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
			return nil, fmt.Errorf("shm: listen: %s exists and is not a socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("shm: listen: remove stale socket: %w", err)
		}
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("shm: listen: %w", err)
	}
	// The directory keeps others out until the socket's own mode is set.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("shm: listen: %w", err)
	}
	return &Listener{ln: ln, path: path, uid: uid}, nil
}

// Path is the socket's path, for the host.
func (l *Listener) Path() string { return l.path }

// Refused counts the connections turned away: wrong user, wrong or late
// nonce, or a peer that left before it could be identified.
func (l *Listener) Refused() uint64 { return l.refused.Load() }

// Close stops listening and removes the socket.
func (l *Listener) Close() error { return l.ln.Close() }

// HandOver serves connections until one presents nonce, then hands it d's
// host files (d.HostFiles) and returns who it was. Connections that fail a
// check are counted in Refused. It fails when deadline passes, the listener
// is closed, or the files cannot be sent (d cannot be handed over again:
// make a new region).
func (l *Listener) HandOver(d *Daemon, nonce Nonce, deadline time.Time) (Peer, error) {
	if err := l.ln.SetDeadline(deadline); err != nil {
		return Peer{}, fmt.Errorf("shm: handover on %s: %w", l.path, err)
	}
	for {
		c, err := l.ln.AcceptUnix()
		if err != nil {
			return Peer{}, fmt.Errorf("shm: handover on %s: %w", l.path, err)
		}
		p, err := l.serve(c, d, nonce, deadline)
		c.Close()
		if err != nil {
			return Peer{}, fmt.Errorf("shm: handover on %s: %w", l.path, err)
		}
		if p.Pidfd != nil {
			return p, nil
		}
		l.refused.Add(1)
	}
}

// serve checks one connection. It returns a Peer without a Pidfd when the
// connection is refused, and an error only when the daemon itself failed.
func (l *Listener) serve(c *net.UnixConn, d *Daemon, nonce Nonce, deadline time.Time) (Peer, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return Peer{}, nil
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || cerr != nil || int(cred.Uid) != l.uid {
		return Peer{}, nil
	}
	c.SetReadDeadline(earliest(deadline, time.Now().Add(HandoverReadTimeout)))
	var got Nonce
	if _, err := io.ReadFull(c, got[:]); err != nil || subtle.ConstantTimeCompare(got[:], nonce[:]) != 1 {
		return Peer{}, nil
	}
	// Open the pidfd while the peer is connected: its pid cannot have been
	// reused yet unless it died just now, and then the send below fails.
	pidfd, err := unix.PidfdOpen(int(cred.Pid), 0)
	if err != nil {
		return Peer{}, nil
	}
	p := Peer{PID: int(cred.Pid), UID: int(cred.Uid), GID: int(cred.Gid), Pidfd: os.NewFile(uintptr(pidfd), "pidfd")}
	files, err := d.HostFiles()
	if err != nil {
		p.Pidfd.Close()
		return Peer{}, err
	}
	defer files.Close()
	c.SetWriteDeadline(earliest(deadline, time.Now().Add(HandoverReadTimeout)))
	rights := unix.UnixRights(int(files.Region.Fd()), int(files.Bell.Fd()))
	if _, _, err := c.WriteMsgUnix([]byte{'y'}, rights, nil); err != nil {
		p.Pidfd.Close()
		return Peer{}, fmt.Errorf("send region to pid %d: %w", p.PID, err)
	}
	return p, nil
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

// Dial connects to a daemon's handover socket, presents nonce and returns
// the region's files, for Attach. timeout bounds the whole exchange.
func Dial(path string, nonce Nonce, timeout time.Duration) (Files, error) {
	c, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		return Files{}, fmt.Errorf("shm: dial %s: %w", path, err)
	}
	defer c.Close()
	uc := c.(*net.UnixConn)
	uc.SetDeadline(time.Now().Add(timeout))
	if _, err := uc.Write(nonce[:]); err != nil {
		return Files{}, fmt.Errorf("shm: dial %s: send nonce: %w", path, err)
	}
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(2*4))
	n, oobn, flags, _, err := uc.ReadMsgUnix(buf, oob)
	fds := receivedFDs(oob[:oobn])
	switch {
	case err != nil && !errors.Is(err, io.EOF):
		err = fmt.Errorf("shm: dial %s: %w", path, err)
	case n != 1 || buf[0] != 'y':
		err = fmt.Errorf("shm: dial %s: refused (wrong nonce or user)", path)
	case flags&syscall.MSG_CTRUNC != 0 || len(fds) != 2:
		err = fmt.Errorf("shm: dial %s: got %d descriptors, want 2", path, len(fds))
	}
	if err != nil {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return Files{}, err
	}
	return Files{Region: os.NewFile(uintptr(fds[0]), "shm-region"), Bell: os.NewFile(uintptr(fds[1]), "shm-bell")}, nil
}

func receivedFDs(oob []byte) []int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for _, m := range msgs {
		if got, err := unix.ParseUnixRights(&m); err == nil {
			fds = append(fds, got...)
		}
	}
	return fds
}
