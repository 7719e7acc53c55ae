package wireguard

import (
	"time"

	"golang.zx2c4.com/wireguard/device"
)

// Limits of the wireguard protocol. Every number has its unit and its reason.
const (
	// feedDepth (4 batches) is the capacity of the channel between the
	// actor's Receive and the device's TUN reader. It only smooths the
	// hand-over: the bound that matters is the actor's mailbox, which fills
	// (and drops by its policy) while Receive waits on a full channel.
	feedDepth = 4

	// tunMTU (1420 bytes) is what the actor-fed TUN reports as its MTU. The
	// device uses it only to pad encrypted packets (to a multiple of 16
	// bytes, capped at the MTU); it is WireGuard's default.
	tunMTU = device.DefaultMTU

	// maxPacket (65 487 bytes) is the largest IP packet handed to the
	// device: its message buffers are 65 535 bytes and must hold the 16-byte
	// transport header, the packet padded to a multiple of 16 and the 16-byte
	// authentication tag. Larger packets are dropped as malformed.
	maxPacket = device.MaxContentSize - device.PaddingMultiple

	// maxKeepalive (65 535 s) is the largest persistent keepalive the UAPI
	// takes (a 16-bit count of seconds).
	maxKeepalive = 65535 * time.Second

	// keyFileMaxBytes (4 KiB) bounds what is read of a key file: a key is 44
	// bytes of base64, so anything much larger is not a key file.
	keyFileMaxBytes = 4 << 10

	// deviceLogBurst (10 lines) is how many lines wireguard-go's own logger
	// may write per stats.LogInterval; the rest are counted and reported.
	deviceLogBurst = 10
)
