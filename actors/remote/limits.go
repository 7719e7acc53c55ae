package remote

import "time"

// Limits of the remote transport. Every number has its unit and its reason.
const (
	// MaxEnvelopeBytes (512 KiB) bounds one envelope's msgpack payload. A
	// batch of 128 full-MTU packets (~190 KB) fits in one; a batch of
	// coalesced 64 KiB packets is split into several envelopes. A receiver
	// drops a larger payload as oversized without decoding it.
	MaxEnvelopeBytes = 512 << 10

	// EndpointWriterBatch (16 envelopes) is how many messages protoactor's
	// endpoint writer packs into one gRPC message, so one gRPC message holds
	// at most 16 × MaxEnvelopeBytes = 8 MiB of payload.
	EndpointWriterBatch = 16

	// EndpointWriterQueue (4096 messages) is the ring of protoactor's
	// endpoint writer. Batches never come near it (the window bounds them,
	// DefaultWindow × protocols); the default (1 000 000) would only hide a
	// leak.
	EndpointWriterQueue = 4096

	// MaxGRPCMessageBytes (16 MiB) is the gRPC message limit, raised from
	// gRPC's 4 MiB default (which silently breaks the stream on a full
	// endpoint-writer batch) to twice the largest batch the writer builds.
	// A larger message is refused by gRPC and counted as oversized.
	MaxGRPCMessageBytes = 2 * EndpointWriterBatch * MaxEnvelopeBytes

	// FlowWindowBytes (16 MiB) is gRPC's HTTP/2 flow-control window, per
	// stream and per connection. protoactor carries everything to a peer on
	// one stream, and gRPC's default (64 KiB, grown only by its bandwidth
	// estimator) admits about one batch per round trip: measured 0.35
	// against 2.8 Gbit/s in process. 16 MiB covers MaxGRPCMessageBytes.
	FlowWindowBytes = MaxGRPCMessageBytes

	// SocketBufferBytes (256 KiB) is gRPC's read and write buffer: a few
	// batches per syscall instead of gRPC's 32 KiB.
	SocketBufferBytes = 256 << 10

	// PendingBatches (8 batches) bounds the ring a sender keeps behind a full
	// window. Waiting batches merge up to batch.max_packets, so 8 keep the
	// window fed; more would only let one stopped host hold a large part of
	// the pool (32 × 128 packets would be all 4096 buffers of the default).
	PendingBatches = 8

	// MaxWindow (1024 envelopes) bounds config's remote.window.
	MaxWindow = 1024

	// OpenTimeout (5 s) bounds how long the daemon waits for a host to
	// answer an OPEN before it counts the host as down and retries.
	OpenTimeout = 5 * time.Second

	// StatsInterval (1 s) is how often a host reports its counters to the
	// daemon that opened its instances.
	StatsInterval = time.Second

	// StagedBatches (8 batches) bounds drop_oldest's staging queue behind a
	// full shared-memory ring, as PendingBatches bounds gRPC's: what the
	// daemon keeps for a host that holds every slot.
	StagedBatches = PendingBatches

	// NoBuffersPause (1 ms) is how long a shared-memory reader waits before
	// it tries again when its process's pool is empty; the packets wait on
	// the ring meanwhile.
	NoBuffersPause = time.Millisecond

	// SHMTXSlots and SHMRXSlots (512 slots each: four batches) size an
	// instance's region. A host completes a packet only when its protocol
	// is done with it, so the TX slots are also the window of packets in
	// the host's hands: four batches keep the host's protocol fed while the
	// next are filled.
	SHMTXSlots = 4 * 128
	SHMRXSlots = 4 * 128

	// HandoverTimeout (5 s) bounds how long a region waits for its host to
	// fetch it from the handover socket.
	HandoverTimeout = 5 * time.Second

	// StuckTimeout (2 s) is how long a host may hold packets of a region
	// without completing any before it is declared stuck and killed: far
	// above a batch's time in an honest host (well under a millisecond),
	// short enough that a stopped host costs a tunnel seconds, not minutes.
	StuckTimeout = 2 * time.Second

	// StuckCheckInterval (250 ms) is how often a link looks whether its
	// host still completes.
	StuckCheckInterval = 250 * time.Millisecond
)
