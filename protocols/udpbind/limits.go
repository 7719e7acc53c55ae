package udpbind

// Limits of the UDP bind. Every number has its unit and its reason.
const (
	// BatchSize (128 datagrams) is what a receive function is given and the
	// most a Send takes: conn.IdealBatchSize, the TUN batch size.
	BatchSize = 128

	// maxGROSegments (64 datagrams) is the most the kernel coalesces into one
	// UDP GRO super-datagram (UDP_GRO_CNT_MAX) and into one UDP GSO send
	// (UDP_MAX_SEGMENTS). With GRO, a receive reads into the last
	// len(bufs)/64 slots (2 of 128) and splits forward, so every segment
	// finds a slot.
	maxGROSegments = 64

	// socketBufferBytes (7 MiB) is the receive and send buffer asked of the
	// kernel for each socket, as conn.StdNetBind does (SO_RCVBUFFORCE with
	// CAP_NET_ADMIN, else clamped to net.core.rmem_max / wmem_max).
	socketBufferBytes = 7 << 20

	// maxIPv4Payload (65 507 bytes) and maxIPv6Payload (65 527 bytes) bound
	// one UDP datagram, a GSO super-datagram included: 65 535 minus the
	// 20-byte IPv4 and 8-byte UDP headers; IPv6's payload length excludes
	// its own header.
	maxIPv4Payload = 65535 - 20 - 8
	maxIPv6Payload = 65535 - 8

	// endpointCacheSize (8 sources) is how many recent sources each socket
	// keeps an endpoint for. A protocol has one peer or a few; a flood from
	// many sources only costs an allocation per datagram from those.
	endpointCacheSize = 8

	// openRetries (100) is how often Open(0) retries when the random IPv4
	// port is taken for IPv6, as conn.StdNetBind does.
	openRetries = 100
)
