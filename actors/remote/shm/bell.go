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

	"golang.org/x/sys/unix"
)

// Event says what a Wait found.
type Event uint32

const (
	// EventReceive: packets wait on the ring this side consumes (the RX
	// ring for the daemon, the TX ring for the host). Call Receive.
	EventReceive Event = bellReceive
	// EventSlots: slots came back after a send ran short of them
	// (completions for the daemon, fill slots for the host). Tell the
	// sending side to flush what it staged. Reported once per shortage.
	EventSlots Event = bellSlots
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
type bell struct {
	fd       int // -1: no socket (tests that drive a region by hand)
	mine     *atomic.Uint32
	peers    *atomic.Uint32
	buf      [BellDrainBytes]byte
	spurious int // wake-ups in a row that found nothing

	rung  atomic.Uint64 // times this side rang the peer
	slept atomic.Uint64 // times this side blocked waiting
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

// sleep announces what it waits for (mask, read again after the flag is
// stored: a sender that asks for EventSlots meanwhile ORs its bit into the
// flag, or is seen here), re-checks with ready, and blocks until rung. It
// reports what ready found before blocking, or whether the socket hit
// end-of-file (the peer hung up, or shutdown woke us).
func (b *bell) sleep(mask func() uint32, ready func(uint32) Event) (Event, bool, error) {
	m := mask()
	for {
		b.mine.Store(m)
		if again := mask(); again != m {
			m = again
			continue
		}
		break
	}
	if ev := ready(m); ev != 0 {
		b.mine.Store(0)
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
		return 0, n == 0, nil
	}
}

// woke counts a wake-up that found nothing (stale is false when it found
// work) and reports a flood past MaxSpuriousWakes.
func (b *bell) woke(found bool) error {
	if found {
		b.spurious = 0
		return nil
	}
	b.spurious++
	if b.spurious > MaxSpuriousWakes {
		return violation(DoorbellFlood, "doorbell", 0, "%d wake-ups in a row with nothing to do", b.spurious)
	}
	return nil
}
