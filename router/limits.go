package router

import "time"

// Limits of the router package. Every number has its unit and its reason.
const (
	// ICMPErrorsPerSecond (1000 messages per second) is the steady rate of
	// ICMP/ICMPv6 errors the router synthesizes for reject routes, the
	// default of Linux's net.ipv4.icmp_msgs_per_sec. RFC 1812 §4.3.2.8 and
	// RFC 4443 §2.4(f) require a limit so that a flood to a rejected prefix
	// cannot make us flood the sender (or a spoofed victim) back.
	ICMPErrorsPerSecond = 1000

	// ICMPErrorBurst (50 messages) is how many errors may leave back to back
	// after a quiet period, Linux's net.ipv4.icmp_msgs_burst: enough for a
	// TUN batch's worth of connection attempts to be told at once.
	ICMPErrorBurst = 50

	// MaxICMPv4ErrorBytes (576 bytes) bounds an ICMPv4 error, IP header
	// included: the minimum datagram every IPv4 host must accept (RFC 791),
	// which is also what Linux quotes up to (RFC 1812 §4.3.2.3).
	MaxICMPv4ErrorBytes = 576

	// MaxICMPv6ErrorBytes (1280 bytes) bounds an ICMPv6 error, IPv6 header
	// included: the IPv6 minimum MTU (RFC 4443 §2.4(c)).
	MaxICMPv6ErrorBytes = 1280

	// ICMPErrorHopLimit (64 hops) is the TTL / hop limit of synthesized
	// errors, Linux's default.
	ICMPErrorHopLimit = 64

	// MaxIPv6ExtHeaders (8 headers) bounds the walk over an IPv6
	// extension-header chain when deciding whether a packet is itself an
	// ICMPv6 error; a longer chain is not answered (RFC 7112 asks for the
	// whole chain in the first fragment and real chains have a few headers).
	MaxIPv6ExtHeaders = 8

	// MaxTargets (1<<20 targets) bounds a forward route's target index so it
	// packs into the table's 8-byte entries; configs allow far fewer
	// protocol instances.
	MaxTargets = 1 << 20
)

// icmpErrorInterval is the cost of one ICMP error in bucket credit.
const icmpErrorInterval = time.Second / ICMPErrorsPerSecond
