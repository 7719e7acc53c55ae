package shm

// The types of the crossing's API that do not depend on the operating
// system: the implementation is Linux's (memfd seals, SO_PEERCRED, pidfd);
// elsewhere every constructor reports ErrUnsupported (unsupported.go).

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
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

// Config sizes a region. Zero fields take the defaults.
type Config struct {
	// SlotBytes is the size of one slot, headroom included (rounded up to
	// CacheLineBytes). Packets longer than SlotBytes - packet.Headroom do
	// not cross (ErrOversized). Default DefaultSlotBytes (a pool buffer).
	SlotBytes int
	// TXSlots is the number of slots daemon → host: packets the host may
	// hold before completing them. Default DefaultTXSlots.
	TXSlots int
	// RXSlots is the number of slots host → daemon lent on the fill ring.
	// Default DefaultRXSlots.
	RXSlots int
}

func (c Config) withDefaults() Config {
	if c.SlotBytes == 0 {
		c.SlotBytes = DefaultSlotBytes
	}
	if c.TXSlots == 0 {
		c.TXSlots = DefaultTXSlots
	}
	if c.RXSlots == 0 {
		c.RXSlots = DefaultRXSlots
	}
	return c
}

// Counts is what the daemon knows about the traffic it exchanged with the
// host. Counters are cumulative for the region's life.
type Counts struct {
	TXHanded    uint64 // packets published to the host
	TXCompleted uint64 // of those, completed by the host
	TXLost      uint64 // of those, taken back by Reclaim: lost with the host
	TXInFlight  int    // slots holding packets the host has not completed
	TXFree      int    // TX slots free for Send
	RXReceived  uint64 // packets copied out of the host's slots
	FillLent    int    // RX slots lent to the host (empty, being filled, or published and unread)
	BellsRung   uint64 // times the daemon rang the host's doorbell (it slept)
	Sleeps      uint64 // times Wait blocked on the daemon's doorbell
	Throttled   uint64 // wake-ups for nothing that Wait slowed down (bell.go)
}

// Lost is what Reclaim took back from a host that is gone.
type Lost struct {
	// TXPackets is the packets handed to the host and never completed:
	// lost with it (count them host_lost).
	TXPackets int
	// FillSlots is the RX slots the host held: empty, being filled, or
	// published on the RX ring and never received.
	FillSlots int
	// RXUnread is the packets the host published on the RX ring that
	// Receive never took (part of FillSlots; 0 when the ring index was
	// invalid). Drain with Receive before Reclaim to deliver them instead.
	RXUnread int
}

// Files are what a host needs: the region's memfd and the host's end of the
// doorbell socket.
type Files struct {
	Region *os.File
	Bell   *os.File
}

// List returns the files in the order InheritedFiles expects, for
// exec.Cmd.ExtraFiles.
func (f Files) List() []*os.File { return []*os.File{f.Region, f.Bell} }

// Close closes both files.
func (f Files) Close() error {
	var errs []error
	for _, file := range f.List() {
		if file != nil {
			errs = append(errs, file.Close())
		}
	}
	return errors.Join(errs...)
}

// InheritedFiles names the files a spawned host inherited at descriptors
// first (the region) and first+1 (the doorbell): ExtraFiles index i is
// descriptor 3+i.
func InheritedFiles(first int) Files {
	return Files{
		Region: os.NewFile(uintptr(first), "shm-region"),
		Bell:   os.NewFile(uintptr(first+1), "shm-bell"),
	}
}

// Nonce is the secret a host presents to receive its region.
type Nonce [NonceBytes]byte

// NewNonce draws a nonce.
func NewNonce() (Nonce, error) {
	var n Nonce
	if _, err := rand.Read(n[:]); err != nil {
		return n, fmt.Errorf("shm: nonce: %w", err)
	}
	return n, nil
}

// String is the nonce in hex, for the control message.
func (n Nonce) String() string { return hex.EncodeToString(n[:]) }

// ParseNonce reads a nonce written by String.
func ParseNonce(s string) (Nonce, error) {
	var n Nonce
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(n) {
		return n, fmt.Errorf("shm: nonce %q: want %d hex digits", s, 2*len(n))
	}
	copy(n[:], b)
	return n, nil
}

// Peer is the host that received a region.
type Peer struct {
	PID, UID, GID int
	// Pidfd refers to the host process: it polls readable when the host
	// exits. The caller owns it and closes it.
	Pidfd *os.File
}
