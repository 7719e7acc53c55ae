// Package ike encodes and decodes IKEv2 messages (RFC 7296): the header,
// the payload chain, the payloads this implementation uses, and the
// Encrypted (SK) payload with AES-GCM-16 (RFC 5282). It also derives keys
// (prf+). It holds no state: the exchanges live in protocols/ipsec.
//
// Parsing never trusts a length: every payload is bounds-checked against
// its message and the chain is bounded (MaxPayloads), so hostile input
// yields an error, never a panic.
package ike

// Exchange types (RFC 7296 §3.1).
const (
	IKE_SA_INIT     uint8 = 34
	IKE_AUTH        uint8 = 35
	CREATE_CHILD_SA uint8 = 36
	INFORMATIONAL   uint8 = 37
)

// Header flags (RFC 7296 §3.1).
const (
	FlagInitiator uint8 = 0x08
	FlagVersion   uint8 = 0x10
	FlagResponse  uint8 = 0x20
)

// Payload types (RFC 7296 §3.2).
const (
	PayloadNone    uint8 = 0
	PayloadSA      uint8 = 33
	PayloadKE      uint8 = 34
	PayloadIDi     uint8 = 35
	PayloadIDr     uint8 = 36
	PayloadCERT    uint8 = 37
	PayloadCERTREQ uint8 = 38
	PayloadAUTH    uint8 = 39
	PayloadNonce   uint8 = 40
	PayloadNotify  uint8 = 41
	PayloadDelete  uint8 = 42
	PayloadVendor  uint8 = 43
	PayloadTSi     uint8 = 44
	PayloadTSr     uint8 = 45
	PayloadSK      uint8 = 46
	PayloadCP      uint8 = 47
	PayloadEAP     uint8 = 48
)

// Protocol IDs (RFC 7296 §3.3.1).
const (
	ProtoIKE uint8 = 1
	ProtoAH  uint8 = 2
	ProtoESP uint8 = 3
)

// Transform types (RFC 7296 §3.3.2).
const (
	TransformENCR  uint8 = 1
	TransformPRF   uint8 = 2
	TransformINTEG uint8 = 3
	TransformDH    uint8 = 4
	TransformESN   uint8 = 5
)

// Transform IDs used here.
const (
	ENCR_AES_GCM_16        uint16 = 20 // RFC 4106, RFC 5282
	ENCR_CHACHA20_POLY1305 uint16 = 28 // RFC 7634
	PRF_HMAC_SHA2_256      uint16 = 5
	PRF_HMAC_SHA2_384      uint16 = 6
	DH_ECP256              uint16 = 19
	DH_CURVE25519          uint16 = 31
	ESN_NONE               uint16 = 0
	ESN_ON                 uint16 = 1
	attrKeyLength          uint16 = 14
)

// Notify message types (RFC 7296 §3.10.1, RFC 7427).
const (
	NotifyUnsupportedCritical       uint16 = 1
	NotifyInvalidSyntax             uint16 = 7
	NotifyInvalidMessageID          uint16 = 9
	NotifyInvalidSPI                uint16 = 11
	NotifyNoProposalChosen          uint16 = 14
	NotifyInvalidKE                 uint16 = 17
	NotifyAuthenticationFailed      uint16 = 24
	NotifySinglePairRequired        uint16 = 34
	NotifyNoAdditionalSAs           uint16 = 35
	NotifyInternalAddressFailure    uint16 = 36
	NotifyFailedCPRequired          uint16 = 37
	NotifyTSUnacceptable            uint16 = 38
	NotifyTemporaryFailure          uint16 = 43
	NotifyChildSANotFound           uint16 = 44
	NotifyInitialContact            uint16 = 16384
	NotifyNATDetectionSourceIP      uint16 = 16388
	NotifyNATDetectionDestIP        uint16 = 16389
	NotifyCookie                    uint16 = 16390
	NotifyUseTransportMode          uint16 = 16391
	NotifyRekeySA                   uint16 = 16393
	NotifyESPTFCPaddingNotSupported uint16 = 16394
	NotifyNonFirstFragmentsAlso     uint16 = 16395
	NotifySignatureHashAlgorithms   uint16 = 16431
)

// ID types (RFC 7296 §3.5).
const (
	IDIPv4  uint8 = 1
	IDFQDN  uint8 = 2
	IDEmail uint8 = 3
	IDIPv6  uint8 = 5
	IDKeyID uint8 = 11
)

// AUTH methods (RFC 7296 §3.8, RFC 7427).
const (
	AuthPSK       uint8 = 2
	AuthSignature uint8 = 14
)

// Traffic selector types (RFC 7296 §3.13.1).
const (
	TSIPv4Range uint8 = 7
	TSIPv6Range uint8 = 8
)

// Configuration payload (RFC 7296 §3.15).
const (
	CFGRequest             uint8  = 1
	CFGReply               uint8  = 2
	AttrInternalIP4Address uint16 = 1
	AttrInternalIP6Address uint16 = 8
)
