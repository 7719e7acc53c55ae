package packet

// Limits of the packet layer. Every number has its unit and its reason.
const (
	// Headroom is the number of bytes (16) reserved in front of every packet
	// in a buffer. Linux TUN with IFF_VNET_HDR needs at least 10 bytes for the
	// virtio-net header; 16 matches wireguard-go and keeps payloads aligned.
	Headroom = 16

	// MaxPacketBytes (65535 bytes) is the largest IP packet a buffer holds.
	// TUN writes coalesce (GRO) into a buffer's spare capacity and UDP GRO
	// receives super-datagrams of up to 64 KiB, so buffers are full-size.
	MaxPacketBytes = 65535

	// BufferBytes is the size of one pooled buffer: headroom plus the largest
	// packet.
	BufferBytes = Headroom + MaxPacketBytes

	// MaxBatch (128 packets) is the most packets one Batch carries: the TUN
	// and UDP batch size of golang.zx2c4.com/wireguard on Linux.
	MaxBatch = 128

	// IPv4HeaderBytes and IPv6HeaderBytes are the fixed header sizes.
	IPv4HeaderBytes = 20
	IPv6HeaderBytes = 40
)
