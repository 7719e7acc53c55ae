package wireguard

import "switchyard/stats"

// Drop reasons of the wireguard protocol, besides the node's own.
var (
	// NoPeer: no peer's allowed IPs matched the packet's destination.
	NoPeer = stats.NewReason("no_peer")
)
