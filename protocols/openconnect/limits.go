package openconnect

import "time"

// Limits of the openconnect protocol. Every number has its unit and its reason.
const (
	// defaultMTU (1406 bytes) is the tunnel MTU asked for when the settings
	// give none: openconnect's default for a 1500-byte path.
	defaultMTU = 1406
	// minMTU (576 bytes) and maxMTU (9000 bytes) bound the mtu setting:
	// below 576 IPv4 hosts may refuse, above 9000 no path carries it.
	minMTU, maxMTU = 576, 9000
	// baseMTU (1500 bytes) is the path MTU announced in X-CSTP-Base-MTU.
	baseMTU = 1500

	// secretFileMaxBytes (4 KiB) bounds what is read of a password file.
	secretFileMaxBytes = 4 << 10
	// usersFileMaxBytes (4 MiB) bounds an ocpasswd file (~40 000 users).
	usersFileMaxBytes = 4 << 20

	// authTimeout (20 s) bounds a whole login (every round of it) and a
	// CONNECT; a gateway that takes longer is treated as down.
	authTimeout = 20 * time.Second
	// maxAuthRounds (8) bounds the form rounds of one login: ocserv's plain
	// auth takes two (user name, then password).
	maxAuthRounds = 8

	// cookieRetries (2) is how many CONNECTs in a row refused with a 5xx
	// keep the cookie; the next attempt logs in afresh (ocserv answers 503
	// to a cookie it has forgotten).
	cookieRetries = 2

	// reconnectMin (1 s) and reconnectMax (30 s) bound the pause between two
	// attempts to (re)connect: it doubles after every failure in a row.
	reconnectMin = time.Second
	reconnectMax = 30 * time.Second

	// readBufferBytes (256 KiB) is the TLS reader's buffer: it holds the
	// largest frame (64 KiB) and a burst of records behind it.
	readBufferBytes = 256 << 10
	// writeBufferBytes (256 KiB) is what a connection keeps of the buffer
	// in which a batch's TLS records are gathered (wire.go); a larger batch
	// gets a buffer that is dropped afterwards.
	writeBufferBytes = 256 << 10
	// maxFramePayload (16 376 bytes) is the largest packet sent over CSTP:
	// a frame must fit one TLS record (16 KiB of plaintext) because ocserv
	// reads one frame per record. Larger packets are dropped (malformed);
	// tunnel MTUs are far below it.
	maxFramePayload = 16384 - 8
	// writeTimeout (5 s) bounds one TLS or DTLS write: a peer that stops
	// reading for that long is dead and the session is reconnected.
	writeTimeout = 5 * time.Second
	// disconnectTimeout (1 s) bounds the DISCONNECT frame sent on stop.
	disconnectTimeout = time.Second

	// tickInterval (250 ms) is how often a session checks its DPD and
	// keepalive timers.
	tickInterval = 250 * time.Millisecond
	// defaultDPD (30 s) is the dead peer detection interval when the server
	// announces none; a channel with nothing received for dpdDeadFactor
	// intervals after a DPD request is dead.
	defaultDPD    = 30 * time.Second
	dpdDeadFactor = 3
	// dtlsRetry (10 s) is the pause before DTLS is tried again after its
	// handshake failed or it stopped answering (data meanwhile goes over CSTP).
	dtlsRetry = 10 * time.Second
	// udpBufferBytes (4 MiB) is the socket buffer asked for DTLS sockets:
	// a few batches of full-size packets (the kernel caps it at
	// net.core.rmem_max / wmem_max).
	udpBufferBytes = 4 << 20
	// dtlsHandshakeTimeout (5 s) bounds one DTLS handshake.
	dtlsHandshakeTimeout = 5 * time.Second
)
