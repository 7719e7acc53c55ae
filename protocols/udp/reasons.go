package udp

import "switchyard/stats"

// Drop reasons of the udp protocol, besides the node's own.
var (
	// UnknownPeer: a datagram from an address other than the configured peer.
	UnknownPeer = stats.NewReason("unknown_peer")

	// SourceNotAllowed: a packet from the peer whose inner source address
	// is outside allowed_sources.
	SourceNotAllowed = stats.NewReason("source_not_allowed")
)
