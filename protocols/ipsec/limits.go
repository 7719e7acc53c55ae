package ipsec

import "time"

// Limits of the ipsec protocol. Every number has its unit and its reason.
const (
	// pskFileMaxBytes (4 KiB) bounds what is read of a psk_file.
	pskFileMaxBytes = 4 << 10
	// certFileMaxBytes (64 KiB) bounds a cert_file, key_file or ca_file.
	certFileMaxBytes = 64 << 10
	// maxPeerCerts (4) bounds the CERT payloads of the peer looked at:
	// its certificate and up to three intermediates.
	maxPeerCerts = 4
	// maxProposals (16) bounds the combinations offered in one SA payload.
	maxProposals = 16
	// maxSelectors (16) bounds local_ts and remote_ts.
	maxSelectors = 16

	// defaultRekeyTime (4 h) and defaultChildRekeyTime (1 h) are
	// strongSwan's defaults; minRekeyTime (2 s) keeps a typo from
	// re-keying in a loop (tests rekey every few seconds).
	defaultRekeyTime      = 4 * time.Hour
	defaultChildRekeyTime = time.Hour
	minRekeyTime          = 2 * time.Second
	// defaultDPDDelay (30 s): a peer quiet this long gets an empty
	// INFORMATIONAL; one that does not answer it (all retransmissions) is
	// dead. minDPDDelay (1 s).
	defaultDPDDelay = 30 * time.Second
	minDPDDelay     = time.Second
	// defaultKeepalive (20 s) is strongSwan's NAT-T keepalive interval;
	// minKeepalive (1 s).
	defaultKeepalive = 20 * time.Second
	minKeepalive     = time.Second

	// retransmitBase (1 s) is the first retransmission timeout of an IKE
	// request; each next one doubles, up to retransmitTries sends
	// (1+2+4+8+16 s ≈ 31 s before the peer is declared dead).
	retransmitBase  = time.Second
	retransmitTries = 5
	// retryMin (1 s) and retryMax (30 s) bound the pause before a failed
	// IKE SA is initiated again; it doubles after each failure in a row.
	retryMin = time.Second
	retryMax = 30 * time.Second
	// tickInterval (100 ms) is how often the IKE goroutine checks its
	// timers.
	tickInterval = 100 * time.Millisecond
	// deleteTimeout (1 s) bounds the wait for the answer to the Delete sent
	// on stop.
	deleteTimeout = time.Second

	// maxHalfOpen (64 SAs) bounds a responder's half-open IKE SAs (between
	// IKE_SA_INIT and IKE_AUTH); past it IKE_SA_INIT requests are dropped.
	// cookieThreshold (8 SAs): past it a COOKIE is demanded first (RFC 7296
	// §2.6), so a flood from spoofed addresses keeps no state.
	// halfOpenTimeout (30 s) is how long a half-open SA waits for IKE_AUTH.
	maxHalfOpen     = 64
	cookieThreshold = 8
	halfOpenTimeout = 30 * time.Second

	// rekeyHoldTimeout (5 s): after answering the peer's CHILD SA rekey we
	// keep sending on the old SA until the peer deletes it, at most this
	// long. rekeyRetry (30 s): a refused rekey is tried again after it.
	rekeyHoldTimeout = 5 * time.Second
	// rekeyJitter (10 %): a rekey happens up to this share of rekey_time
	// or child_rekey_time early, different for each SA (RFC 7296 §2.8.1).
	rekeyJitter = 0.1
	rekeyRetry  = 30 * time.Second
	// seqRekeyAt: a CHILD SA with 32-bit sequence numbers is rekeyed when
	// its counter passes this (2^32 - 2^24, ~16 M packets before the end).
	seqRekeyAt = 1<<32 - 1<<24

	// ikeQueue (64 messages) is the queue from the readers to the IKE
	// goroutine; beyond it IKE messages are dropped (the peer retransmits).
	ikeQueue = 64
	// maxIKEMessage (64 KiB) is the largest IKE message handled.
	maxIKEMessage = 65535
	// nonceLen (32 bytes) is the nonce sent: at least half the PRF key
	// size of the largest PRF (RFC 7296 §2.10).
	nonceLen = 32
	// minNonceLen (16 bytes) and maxNonceLen (256 bytes): RFC 7296 §3.9.
	minNonceLen, maxNonceLen = 16, 256

	// maxIPv4Payload (65 507 bytes) is the largest UDP payload over IPv4;
	// sealed packets above it are dropped (malformed).
	maxIPv4Payload = 65535 - 20 - 8
	maxIPv6Payload = 65535 - 8
)
