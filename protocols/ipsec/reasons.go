package ipsec

import "switchyard/stats"

// Drop reasons of the ipsec protocol, besides the node's own.
var (
	// NoSA: an outbound packet while no CHILD SA is up, or an ESP datagram
	// whose SPI names no inbound SA.
	NoSA = stats.NewReason("no_sa")
	// Replay: an ESP datagram whose sequence number was seen or is older
	// than the replay window.
	Replay = stats.NewReason("replay")
	// AuthFailed: an ESP datagram whose ICV does not verify.
	AuthFailed = stats.NewReason("auth_failed")
	// UnknownPeer: a datagram on the NAT-T port from another address than
	// the peer.
	UnknownPeer = stats.NewReason("unknown_peer")
	// SeqExhausted: an outbound packet when a 32-bit sequence number would
	// wrap (the SA waits for its rekey).
	SeqExhausted = stats.NewReason("seq_exhausted")
	// Keepalive: a NAT-T keepalive (one 0xff byte), counted so that in =
	// out + drops holds.
	Keepalive = stats.NewReason("keepalive")
	// IKE: an IKE message on the NAT-T port (non-ESP marker), handed to the
	// IKE goroutine rather than the injector; IKEQueueFull when its queue
	// was full.
	IKE          = stats.NewReason("ike")
	IKEQueueFull = stats.NewReason("ike_queue_full")
)

// SourceNotAllowed: a decrypted packet whose source is outside remote_ts.
var SourceNotAllowed = stats.NewReason("source_not_allowed")
