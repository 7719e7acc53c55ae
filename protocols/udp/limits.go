package udp

// Limits of the udp protocol. Every number has its unit and its reason.
const (
	// maxIPv4Payload (65 507 bytes) is the largest UDP payload an IPv4
	// datagram carries: 65 535 minus the 20-byte IPv4 and 8-byte UDP headers.
	// Larger packets are dropped as malformed before the send (the kernel
	// would refuse the whole sendmmsg with EMSGSIZE).
	maxIPv4Payload = 65535 - 20 - 8

	// maxIPv6Payload (65 527 bytes) is the largest UDP payload of an IPv6
	// datagram without jumbograms: the payload length field excludes the
	// IPv6 header, so only the 8-byte UDP header counts.
	maxIPv6Payload = 65535 - 8
)
