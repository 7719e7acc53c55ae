//go:build linux

package shm

// Doorbells. Each side sleeps on its end of a Unix stream socketpair and
// rings the other by sending one byte on its own end:
//
//  1. A consumer about to sleep stores the bits it waits for in its
//     sleeping flag (shared header), looks at its rings once more, and only
//     then blocks in read(2) on its end of the socket.
//  2. A producer publishes its ring index first and loads the peer's flag
//     after (both sequentially consistent atomics, so at least one side
//     sees the other's store: no lost wake-up). It rings only when the
//     flag has the ring's bit set, and clears the flag first, so a
//     streaming peer that never sleeps is never rung.
//  3. The sleeper wakes, clears its flag and looks at its rings.
//
// Why a socketpair and not an eventfd: an eventfd is one open file shared by
// both processes. A hostile host could set its counter to the maximum and
// clear O_NONBLOCK (the flag lives in the shared open file), and the
// daemon's next ring would block its thread forever; it could also read the
// daemon's doorbell and steal its wake-ups, shutdown's included. With a
// socketpair each side holds only its own end: the daemon rings with
// MSG_DONTWAIT (a full socket means a wake-up is already pending), reads
// only its own end, wakes its own waiter for shutdown with shutdown(2), and
// sees the host die at once, as end-of-file or ECONNRESET (when it died
// with rings unread), for a spawned host or not. It
// wakes a blocked reader in the same few microseconds (BenchmarkDoorbell).

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

func newBellPair() (daemonEnd, hostEnd int, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, -1, fmt.Errorf("doorbell socketpair: %w", err)
	}
	return fds[0], fds[1], nil
}

var bellByte = []byte{1}

// bell is one side's doorbell: its end of the socket, its own sleeping
// flag and the peer's.
//
// Flood accounting: an honest peer rings once per time it clears our flag
// from non-zero to zero, and only we make it non-zero again, so every ring
// answers an invitation of ours (a 0 → non-zero store). credit counts
// invitations not yet answered, capped at MaxUninvitedRings so good
// behaviour cannot buy a later flood, minus the bytes read; below
// -MaxUninvitedRings the peer rang uninvited, which no honest peer does
// (but for a rare ring after ringDoorbellTries lost compare-and-swaps).
type bell struct {
	fd     int // -1: no socket (tests that drive a region by hand)
	mine   *atomic.Uint32
	peers  *atomic.Uint32
	buf    [BellDrainBytes]byte
	credit atomic.Int64
	empty  int // wake-ups in a row that moved no index (the waiter's)

	rung      atomic.Uint64 // times this side rang the peer
	slept     atomic.Uint64 // times this side blocked waiting
	throttled atomic.Uint64 // empty wake-ups past MaxEmptyWakes
}

// ring wakes the peer if it sleeps waiting for bit.
func (b *bell) ring(bit uint32) {
	for try := 0; ; try++ {
		v := b.peers.Load()
		if v&bit == 0 {
			return
		}
		if b.peers.CompareAndSwap(v, 0) || try == ringDoorbellTries {
			break
		}
	}
	if b.fd < 0 {
		return
	}
	b.rung.Add(1)
	// EAGAIN: the socket is full, so a wake-up is pending anyway. EPIPE: the
	// peer is gone; the waiter sees end-of-file.
	_ = unix.Sendto(b.fd, bellByte, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, nil)
}

// invite records that our flag went from zero to non-zero: the peer may
// ring once more.
func (b *bell) invite(old uint32) {
	if old == 0 && b.credit.Add(1) > MaxUninvitedRings {
		b.credit.Store(MaxUninvitedRings)
	}
}

// ask adds bit to our flag while we may be sleeping (a sender short of
// slots): the peer then rings for it too.
func (b *bell) ask(bit uint32) { b.invite(b.mine.Or(bit)) }

// sleep announces what it waits for (mask, read again after the flag is
// stored: a sender that asks for EventSlots meanwhile ORs its bit into the
// flag, or is seen here), re-checks with ready, and blocks until rung. It
// reports what ready found before blocking, or whether the socket hit
// end-of-file (the peer hung up, or shutdown woke us).
//
// It reports a flood (*Violation, DoorbellFlood) when the peer rang more
// than MaxUninvitedRings beyond its invitations, which no honest peer does.
// A peer that rings as invited but publishes nothing (progress: the
// receive ring's producer index in the low 32 bits, the slots ring's above,
// which counts when its bit was asked for before or after the sleep) is
// throttled instead: past MaxEmptyWakes such wake-ups in a row, each waits
// EmptyWakeBackoff. An honest peer can, rarely, ring for entries someone
// else consumed before our snapshot, so this is never called a violation.
func (b *bell) sleep(mask func() uint32, ready func(uint32) Event, progress func() uint64) (Event, bool, error) {
	m := mask()
	for {
		b.invite(b.mine.Swap(m))
		if again := mask(); again != m {
			m = again
			continue
		}
		break
	}
	before := progress()
	if ev := ready(m); ev != 0 {
		b.mine.Store(0)
		b.empty = 0
		return ev, false, nil
	}
	b.slept.Add(1)
	for {
		n, err := unix.Read(b.fd, b.buf[:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		b.mine.Store(0)
		if errors.Is(err, unix.ECONNRESET) {
			// The peer closed its end with our rings still unread in it
			// (a killed peer does): gone, like end-of-file.
			return 0, true, nil
		}
		if err != nil {
			return 0, false, fmt.Errorf("read doorbell: %w", err)
		}
		if n == 0 {
			return 0, true, nil
		}
		c := b.credit.Add(-int64(n))
		after := progress()
		moved := uint32(after) != uint32(before)
		if (m|mask())&bellSlots != 0 && after>>32 != before>>32 {
			moved = true
		}
		if moved {
			// Rings that came with work are forgiven: under load an honest
			// peer's ring and our flag can cross (seen: 48 rings beyond the
			// invitations in 85 000 batches), and that debt must not add up
			// to a false flood over a long life.
			if c < 0 {
				b.credit.Add(-c)
			}
		} else if c < -FloodRings {
			return 0, false, violation(DoorbellFlood, "doorbell", 0, "%d rings more than the sleeping flag invited, with nothing published", -c)
		}
		if moved {
			b.empty = 0
		} else if b.empty++; b.empty > MaxEmptyWakes {
			b.throttled.Add(1)
			time.Sleep(EmptyWakeBackoff)
		}
		return 0, false, nil
	}
}
