package openconnect

import "switchyard/stats"

// Drop reasons of the openconnect protocol, besides the node's own.
var (
	// UnknownPeer: an inner packet whose source is not the address the
	// server gave the session it came on (spoofed).
	UnknownPeer = stats.NewReason("unknown_peer")
	// NoPeer: no connected session holds the packet's destination.
	NoPeer = stats.NewReason("no_peer")
)
