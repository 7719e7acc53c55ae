//go:build !linux

package shm

// The crossing needs Linux (sealed memfds, SO_PEERCRED, pidfds). Elsewhere
// the package builds so that the daemon does, and every constructor reports
// ErrUnsupported: configure hosts with transport: grpc there.

import (
	"errors"
	"time"

	"switchyard/packet"
)

// ErrUnsupported: shared memory between processes is built for Linux only.
var ErrUnsupported = errors.New("shm: the shared-memory transport needs Linux; use transport: grpc")

// Daemon is the daemon's end of a region; on this system there is none.
type Daemon struct{}

// New reports ErrUnsupported.
func New(Config) (*Daemon, error) { return nil, ErrUnsupported }

func (*Daemon) ID() RegionID                         { return RegionID{} }
func (*Daemon) Send(*packet.Batch, int) (int, error) { return 0, ErrUnsupported }
func (*Daemon) Receive(*packet.Batch) (int, error)   { return 0, ErrUnsupported }
func (*Daemon) Wait() (Event, error)                 { return 0, ErrUnsupported }
func (*Daemon) Counts() Counts                       { return Counts{} }
func (*Daemon) Reap() (int, error)                   { return 0, ErrUnsupported }
func (*Daemon) Reclaim() Lost                        { return Lost{} }
func (*Daemon) Close() error                         { return nil }

// Host is a host's end of a region; on this system there is none.
type Host struct{}

// Attach reports ErrUnsupported.
func Attach(f Files) (*Host, error) {
	_ = f.Close()
	return nil, ErrUnsupported
}

func (*Host) ID() RegionID                 { return RegionID{} }
func (*Host) Borrow([][]byte) (int, error) { return 0, ErrUnsupported }
func (*Host) Complete(int) error           { return ErrUnsupported }
func (*Host) Send([][]byte) (int, error)   { return 0, ErrUnsupported }
func (*Host) Wait() (Event, error)         { return 0, ErrUnsupported }
func (*Host) Close() error                 { return nil }

// Listener hands regions over; on this system there is none.
type Listener struct{}

// Listen reports ErrUnsupported.
func Listen(dir, name string) (*Listener, error) { return nil, ErrUnsupported }

func (*Listener) Path() string { return "" }
func (*Listener) Close() error { return nil }
func (*Listener) HandOver(*Daemon, Nonce, time.Time) (Peer, error) {
	return Peer{}, ErrUnsupported
}

// Dial reports ErrUnsupported.
func Dial(path string, nonce Nonce, timeout time.Duration) (Files, error) {
	return Files{}, ErrUnsupported
}
