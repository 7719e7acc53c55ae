package openvpn

import "switchyard/stats"

// Drop reasons of the openvpn protocol, besides the node's own.
var (
	// Replayed: a data packet whose packet id was seen already or is older
	// than the replay window.
	Replayed = stats.NewReason("replayed")
	// DecryptFailed: a data packet whose tag did not verify, or that is
	// too short to hold one (garbage on the port, a wrong key).
	DecryptFailed = stats.NewReason("decrypt_failed")
	// UnknownKey: a data packet for a key id with no key (yet, or any
	// longer).
	UnknownKey = stats.NewReason("unknown_key")
	// UnknownPeer: a datagram from an address that is not the session's
	// peer.
	UnknownPeer = stats.NewReason("unknown_peer")
	// SpoofedSource: a packet from a client whose source is not the address
	// the server gave it.
	SpoofedSource = stats.NewReason("spoofed_source")
	// NoPeer: a packet from the router for an address no client holds.
	NoPeer = stats.NewReason("no_peer")
	// NoSession: a packet from the router while no session is up.
	NoSession = stats.NewReason("no_session")
)
