package openvpn

import "time"

// Limits of the openvpn protocol. Every number has its unit and its reason.
const (
	// defaultMTU (1420 bytes) is the largest inner packet sent when the
	// settings give none: the node's default TUN MTU. Larger packets are
	// dropped (malformed) rather than fragmented.
	defaultMTU = 1420
	// minMTU (576 bytes) and maxMTU (9000 bytes) bound the mtu setting.
	minMTU, maxMTU = 576, 9000

	// keyFileMaxBytes (64 KiB) bounds what is read of a key, certificate or
	// tls-crypt key file.
	keyFileMaxBytes = 64 << 10

	// controlPayloadBytes (1100 bytes) is the most TLS bytes carried by one
	// control packet: OpenVPN's tls-mtu default (1250) less the headers,
	// tls-crypt's 56 bytes and the acks, with room to spare.
	controlPayloadBytes = 1100
	// sendWindow (6 messages) is how many control messages may be
	// unacknowledged at once: OpenVPN's TLS_RELIABLE_N_SEND_BUFFERS.
	sendWindow = 6
	// recvWindow (12 messages) is how far ahead of the next expected message
	// id a control message is buffered: OpenVPN's
	// TLS_RELIABLE_N_REC_BUFFERS. Messages beyond it are dropped unacked.
	recvWindow = 12
	// maxAcks (8 ids) is the most acks written into one control packet
	// (OpenVPN's RELIABLE_ACK_SIZE); more wait for the next packet.
	maxAcks = 8
	// maxQueuedControlBytes (256 KiB) bounds the TLS bytes queued behind a
	// full send window; a TLS write beyond it fails the key state.
	maxQueuedControlBytes = 256 << 10
	// tlsInQueue (64 messages) is how many in-order control payloads wait
	// for the TLS reader; past it messages stay in the receive window (and
	// are not acknowledged), so the peer retransmits.
	tlsInQueue = 64
	// ctrlQueue (64 datagrams) is the queue of control datagrams from the
	// readers to the session goroutine; past it they are dropped (counted):
	// the peer retransmits.
	ctrlQueue = 64

	// retransmitMin (1 s) and retransmitMax (8 s) bound the retransmission
	// timeout of a control message: it doubles after each retransmission.
	retransmitMin = time.Second
	retransmitMax = 8 * time.Second
	// handshakeTimeout (60 s) bounds a TLS handshake with key exchange
	// (OpenVPN's hand-window).
	handshakeTimeout = 60 * time.Second
	// pushTimeout (30 s) bounds the wait for PUSH_REPLY after the first key
	// exchange (one PUSH_REQUEST is sent; the client also announces
	// IV_PROTO_REQUEST_PUSH, so an OpenVPN 2.6 server pushes at once).
	pushTimeout = 30 * time.Second
	// maxPushBytes (64 KiB) bounds a PUSH_REPLY with its continuations and
	// any one control-channel message.
	maxPushBytes = 64 << 10

	// defaultPing (10 s) and defaultPingRestart (60 s) apply when the server
	// pushes no ping/ping-restart (the values of keepalive 10 60).
	defaultPing        = 10 * time.Second
	defaultPingRestart = 60 * time.Second
	// tickInterval (100 ms) is how often a session checks its timers.
	tickInterval = 100 * time.Millisecond
	// transitionWindow (60 s) is how long a key replaced by renegotiation
	// still decrypts (OpenVPN's transition-window).
	transitionWindow = 60 * time.Second

	// reconnectMin (1 s) and reconnectMax (30 s) bound the pause between two
	// attempts to (re)connect: it doubles after every failure in a row.
	reconnectMin = time.Second
	reconnectMax = 30 * time.Second

	// replayWindowPackets (2048 packet ids) is the data channel's replay
	// window: an id this far behind the highest seen is refused as old.
	replayWindowPackets = 2048
	// ctrlReplayWindow (64 packet ids) is tls-crypt's replay window.
	ctrlReplayWindow = 64

	// defaultMaxClients (64) and maxClients (4096) bound the clients of a
	// server at once; peer ids index a table of maxClients entries.
	defaultMaxClients = 64
	maxClients        = 4096
	// maxHandshakes (32 sessions) bounds the sessions of a server still in
	// their handshake; each expires after handshakeTimeout. Past it new
	// clients are refused (counted) until one finishes or expires.
	maxHandshakes = 32
	// newPeersPerBatch (8) bounds the new handshakes one received batch may
	// start; the rest are dropped (their client retransmits).
	newPeersPerBatch = 8

	// ackPoll (5 ms) is how often a server's key exchange looks whether
	// its last control messages were acknowledged before it sends with the
	// new key.
	ackPoll = 5 * time.Millisecond

	// renegPacketIDs (0xF000_0000 packet ids, 15/16 of the space) is when a
	// session renegotiates whatever reneg_sec says: a data key must never
	// reuse a packet id (its nonce), and sealing fails at 2^32-1.
	renegPacketIDs = 0xF000_0000

	// minRenegSec (5 s) is the shortest reneg_sec: a key exchange takes a
	// few round trips and the old key lives on for transitionWindow.
	minRenegSec = 5
)
