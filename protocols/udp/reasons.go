package udp

import "switchyard/stats"

// Drop reasons of the udp protocol, besides the node's own.
var (
	// UnknownPeer: a datagram from an address other than the configured peer.
	UnknownPeer = stats.NewReason("unknown_peer")
)
