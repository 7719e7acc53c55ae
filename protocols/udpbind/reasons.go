package udpbind

import "switchyard/stats"

// Drop reasons of the UDP bind, counted on Options.Stats.
var (
	// Empty: a datagram with no payload. It carries nothing, and no
	// protocol sends one.
	Empty = stats.NewReason("empty")
)
