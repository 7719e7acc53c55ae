package shm

import (
	"time"

	"switchyard/packet"
)

// Limits of the shared-memory crossing. Every number has its unit and its
// reason.
const (
	// Version (1) is the region layout version written in the header. A host
	// refuses a region of any other version before it maps it.
	Version = 1

	// CacheLineBytes (64 bytes) separates what the two processes write:
	// each ring's producer index, its consumer index and each sleeping flag
	// sit on a cache line of their own, so a store by one side never
	// invalidates the line the other side is spinning on.
	CacheLineBytes = 64

	// PageBytes (4096 bytes) aligns the rings and the first slot, so the
	// header, the rings and the slots never share a page.
	PageBytes = 4096

	// HeaderBytes (4096 bytes, one page) holds the header (magic, version,
	// sizes, region id) and the two sleeping flags.
	HeaderBytes = PageBytes

	// DescBytes (12 bytes) is one ring entry: slot, length and generation,
	// three little-endian uint32.
	DescBytes = 12

	// DefaultSlotBytes (65 551 bytes, packet.BufferBytes) is a slot the size
	// of a pool buffer: headroom plus the largest IP packet, so a GRO
	// super-packet crosses whole. A node whose packets are known to be
	// smaller may configure smaller slots (memory per host shrinks in
	// proportion).
	DefaultSlotBytes = packet.BufferBytes

	// MinSlotBytes (1296 bytes) is the headroom plus 1280 bytes, the IPv6
	// minimum link MTU: any IP link must carry a packet that size.
	MinSlotBytes = packet.Headroom + 1280

	// MaxSlotBytes (128 KiB) bounds a configured slot. More than a pool
	// buffer buys nothing (a received packet is copied into one) and only
	// costs memory.
	MaxSlotBytes = 128 << 10

	// DefaultTXSlots and DefaultRXSlots (256 slots each, two full batches)
	// are the slots per direction: one batch in the host's hands while the
	// next is being filled. With DefaultSlotBytes that is 2 × 256 × 64 KiB
	// = 32 MiB of address space per host, of which only the touched pages
	// (one per MTU-sized packet) are ever resident.
	DefaultTXSlots = 2 * packet.MaxBatch
	DefaultRXSlots = 2 * packet.MaxBatch

	// MaxSlots (16 384 slots) bounds each direction, so every ring index and
	// slot number fits easily in a uint32 and a region stays small enough
	// to map.
	MaxSlots = 1 << 14

	// MaxRegionBytes (1 GiB) bounds the size of one region; a host refuses
	// a header that claims more before it maps anything.
	MaxRegionBytes = 1 << 30

	// MaxUninvitedRings (16 rings) is how far a peer may ring beyond what
	// our sleeping flag invited before we report it as flooding the
	// doorbell (bell.go). An honest peer rings only after clearing the
	// flag, so it never gets near.
	MaxUninvitedRings = 16

	// FloodRings (4096 rings) is how far beyond its invitations a peer may
	// ring without publishing anything before it is reported as flooding
	// the doorbell. Rings that come with work are forgiven (bell.go); a
	// flood writes thousands of rings a millisecond, an honest race a few.
	FloodRings = 4096

	// MaxEmptyWakes (16 wake-ups) is how many times in a row a peer may wake
	// us without moving any ring index we wait on before each further such
	// wake-up waits EmptyWakeBackoff. An honest peer rings after publishing,
	// so it practically never gets there.
	MaxEmptyWakes = 16

	// EmptyWakeBackoff (1 ms) throttles a peer that rings for nothing to
	// about 1000 wake-ups a second: no thread of ours spins for it.
	EmptyWakeBackoff = time.Millisecond

	// BellDrainBytes (64 bytes) is how much of the doorbell socket one
	// wake-up reads: pending rings coalesce into one wake-up.
	BellDrainBytes = 64

	// NonceBytes (32 bytes, 256 bits) is the secret a host that the daemon
	// did not spawn presents on the handover socket.
	NonceBytes = 32

	// HandoverReadTimeout (2 s) bounds how long one connection to the
	// handover socket may take to present its nonce, so a silent client
	// cannot hold the listener.
	HandoverReadTimeout = 2 * time.Second

	// ringDoorbellTries (4 attempts) bounds the compare-and-swap loop that
	// clears a peer's sleeping flag: a hostile peer flipping its flag can
	// make the loop fail, never make it spin; after that we ring anyway.
	ringDoorbellTries = 4
)
