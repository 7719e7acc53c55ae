package ike

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"fmt"
	"hash"

	"golang.org/x/crypto/chacha20poly1305"
)

// PRF is a negotiated pseudo-random function.
type PRF uint16

// New returns the HMAC of the PRF keyed with key.
func (p PRF) New(key []byte) hash.Hash {
	switch uint16(p) {
	case PRF_HMAC_SHA2_384:
		return hmac.New(sha512.New384, key)
	default:
		return hmac.New(sha256.New, key)
	}
}

// Size is the PRF's output (and key) length in bytes.
func (p PRF) Size() int {
	if uint16(p) == PRF_HMAC_SHA2_384 {
		return 48
	}
	return 32
}

// Sum returns prf(key, data...).
func (p PRF) Sum(key []byte, data ...[]byte) []byte {
	m := p.New(key)
	for _, d := range data {
		m.Write(d)
	}
	return m.Sum(nil)
}

// Plus returns n bytes of prf+(key, seed) (RFC 7296 §2.13).
func (p PRF) Plus(key, seed []byte, n int) []byte {
	out := make([]byte, 0, n+p.Size())
	var t []byte
	m := p.New(key)
	for i := 1; len(out) < n; i++ {
		m.Reset()
		m.Write(t)
		m.Write(seed)
		m.Write([]byte{byte(i)})
		t = m.Sum(nil)
		out = append(out, t...)
	}
	return out[:n]
}

// SaltLen (4 bytes) is the implicit nonce part of GCM (RFC 4106) and
// ChaCha20-Poly1305 (RFC 7634) keys.
const SaltLen = 4

// IVLen (8 bytes) and ICVLen (16 bytes) are the explicit IV and the tag of
// every AEAD used here.
const (
	IVLen  = 8
	ICVLen = 16
)

// KeyLen returns the key length in bytes (without salt) of encryption
// transform id with keyBits.
func KeyLen(id, keyBits uint16) int {
	if id == ENCR_CHACHA20_POLY1305 {
		return chacha20poly1305.KeySize
	}
	return int(keyBits) / 8
}

// NewAEAD returns the AEAD of encryption transform id with key (salt
// excluded).
func NewAEAD(id uint16, key []byte) (cipher.AEAD, error) {
	switch id {
	case ENCR_AES_GCM_16:
		blk, err := aes.NewCipher(key)
		if err != nil {
			return nil, err
		}
		return cipher.NewGCM(blk)
	case ENCR_CHACHA20_POLY1305:
		return chacha20poly1305.New(key)
	}
	return nil, fmt.Errorf("unsupported encryption transform %d", id)
}

// SKCipher seals and opens SK payloads in one direction.
type SKCipher struct {
	AEAD cipher.AEAD
	Salt [SaltLen]byte
	IV   uint64 // the next explicit IV; unique per key
}

// Seal builds an encrypted message: header h, an SK payload holding inner.
func (c *SKCipher) Seal(h Header, inner []Payload) []byte {
	first := PayloadNone
	if len(inner) > 0 {
		first = inner[0].Type
	}
	plain := AppendPayloads(nil, inner, PayloadNone)
	plain = append(plain, 0) // pad length 0 (AEAD: no block alignment needed)
	h.NextPayload = PayloadSK
	total := HeaderLen + 4 + IVLen + len(plain) + ICVLen
	h.Length = uint32(total)
	b := AppendHeader(make([]byte, 0, total), h)
	b = append(b, first, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(4+IVLen+len(plain)+ICVLen))
	aad := b
	c.IV++
	var nonce [12]byte
	copy(nonce[:], c.Salt[:])
	binary.BigEndian.PutUint64(nonce[4:], c.IV)
	b = append(b, nonce[4:]...)
	return c.AEAD.Seal(b, nonce[:], plain, aad)
}

// Open decrypts the SK payload sk (the last payload of msg, as
// ParsePayloads returned it) and parses its inner payloads.
func (c *SKCipher) Open(msg []byte, sk Payload, first uint8) ([]Payload, error) {
	if len(sk.Body) < IVLen+ICVLen+1 {
		return nil, malformed("SK payload of %d bytes", len(sk.Body))
	}
	aad := msg[:len(msg)-len(sk.Body)]
	var nonce [12]byte
	copy(nonce[:], c.Salt[:])
	copy(nonce[4:], sk.Body[:IVLen])
	plain, err := c.AEAD.Open(nil, nonce[:], sk.Body[IVLen:], aad)
	if err != nil {
		return nil, fmt.Errorf("SK payload: %w", err)
	}
	pad := int(plain[len(plain)-1])
	if pad+1 > len(plain) {
		return nil, malformed("SK padding %d of %d", pad, len(plain))
	}
	plain = plain[:len(plain)-1-pad]
	return ParsePayloads(first, plain, nil)
}
