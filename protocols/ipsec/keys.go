package ipsec

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/binary"
	"fmt"

	"switchyard/protocols/ipsec/esp"
	"switchyard/protocols/ipsec/ike"
)

// dhCurve returns the ECDH curve of a DH group.
func dhCurve(group uint16) (ecdh.Curve, error) {
	switch group {
	case ike.DH_CURVE25519:
		return ecdh.X25519(), nil
	case ike.DH_ECP256:
		return ecdh.P256(), nil
	}
	return nil, fmt.Errorf("unsupported DH group %d", group)
}

// newDH makes a key pair for group and returns it with its KE payload
// data: the X25519 public key, or x|y of a P-256 point (RFC 5903 §7:
// without the 0x04 of the uncompressed form).
func newDH(group uint16) (*ecdh.PrivateKey, []byte, error) {
	curve, err := dhCurve(group)
	if err != nil {
		return nil, nil, err
	}
	priv, err := curve.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	pub := priv.PublicKey().Bytes()
	if group == ike.DH_ECP256 {
		pub = pub[1:]
	}
	return priv, pub, nil
}

// dhShared computes g^ir from our key and the peer's KE data.
func dhShared(group uint16, priv *ecdh.PrivateKey, peer []byte) ([]byte, error) {
	curve, err := dhCurve(group)
	if err != nil {
		return nil, err
	}
	if group == ike.DH_ECP256 {
		if len(peer) != 64 {
			return nil, fmt.Errorf("P-256 KE data of %d bytes, want 64", len(peer))
		}
		peer = append([]byte{4}, peer...)
	}
	pub, err := curve.NewPublicKey(peer)
	if err != nil {
		return nil, fmt.Errorf("peer's DH public key: %w", err)
	}
	return priv.ECDH(pub)
}

// ikeKeys are the keys of an IKE SA (RFC 7296 §2.14).
type ikeKeys struct {
	skd, skpi, skpr []byte
	ei, er          *ike.SKCipher // initiator's and responder's sending keys
}

// deriveIKE computes SKEYSEED and the IKE SA keys.
func deriveIKE(p IKEProposal, ni, nr, shared []byte, spii, spir uint64) (*ikeKeys, error) {
	prf := ike.PRF(p.PRF)
	return deriveIKEFromSeed(p, prf.Sum(append(append([]byte{}, ni...), nr...), shared), ni, nr, spii, spir)
}

// deriveIKEFromSeed expands SKEYSEED into the IKE SA keys.
func deriveIKEFromSeed(p IKEProposal, seed, ni, nr []byte, spii, spir uint64) (*ikeKeys, error) {
	prf := ike.PRF(p.PRF)
	var s []byte
	s = append(s, ni...)
	s = append(s, nr...)
	s = binary.BigEndian.AppendUint64(s, spii)
	s = binary.BigEndian.AppendUint64(s, spir)
	kl := ike.KeyLen(p.Encr, p.KeyLen) + ike.SaltLen
	ps := prf.Size()
	km := prf.Plus(seed, s, ps+2*kl+2*ps)
	k := &ikeKeys{skd: km[:ps]}
	off := ps
	mk := func() (*ike.SKCipher, error) {
		key := km[off : off+kl]
		off += kl
		aead, err := ike.NewAEAD(p.Encr, key[:kl-ike.SaltLen])
		if err != nil {
			return nil, err
		}
		c := &ike.SKCipher{AEAD: aead}
		copy(c.Salt[:], key[kl-ike.SaltLen:])
		return c, nil
	}
	var err error
	if k.ei, err = mk(); err != nil {
		return nil, err
	}
	if k.er, err = mk(); err != nil {
		return nil, err
	}
	k.skpi = km[off : off+ps]
	k.skpr = km[off+ps : off+2*ps]
	return k, nil
}

// deriveChild computes a CHILD SA's two halves from SK_d and the nonces
// (RFC 7296 §2.17): the initiator's sending key first. It returns the
// initiator→responder and responder→initiator keys (with salt).
func deriveChild(prf ike.PRF, skd, ni, nr []byte, p ESPProposal) (i2r, r2i []byte) {
	kl := ike.KeyLen(p.Encr, p.KeyLen) + ike.SaltLen
	var seed []byte
	seed = append(seed, ni...)
	seed = append(seed, nr...)
	km := prf.Plus(skd, seed, 2*kl)
	return km[:kl], km[kl:]
}

// newESP builds the outbound and inbound halves of a CHILD SA.
func newESP(p ESPProposal, esn bool, outSPI, inSPI uint32, outKey, inKey []byte) (*esp.Outbound, *esp.Inbound, error) {
	kl := len(outKey) - ike.SaltLen
	oa, err := ike.NewAEAD(p.Encr, outKey[:kl])
	if err != nil {
		return nil, nil, err
	}
	ia, err := ike.NewAEAD(p.Encr, inKey[:kl])
	if err != nil {
		return nil, nil, err
	}
	return esp.NewOutbound(outSPI, oa, outKey[kl:], esn), esp.NewInbound(inSPI, ia, inKey[kl:], esn), nil
}

// pskAuth is the AUTH data of a PSK (RFC 7296 §2.15):
// prf(prf(PSK, "Key Pad for IKEv2"), msg | nonce | prf(SK_p, ID body)).
func pskAuth(prf ike.PRF, psk, msg, nonce, skp, idBody []byte) []byte {
	pad := prf.Sum(psk, []byte("Key Pad for IKEv2"))
	return prf.Sum(pad, msg, nonce, prf.Sum(skp, idBody))
}

// randSPI returns a random non-zero IKE SPI.
func randSPI() uint64 {
	var b [8]byte
	for {
		_, _ = rand.Read(b[:])
		if v := binary.BigEndian.Uint64(b[:]); v != 0 {
			return v
		}
	}
}

// randESPSPI returns a random ESP SPI above the reserved 1-255.
func randESPSPI() uint32 {
	var b [4]byte
	for {
		_, _ = rand.Read(b[:])
		if v := binary.BigEndian.Uint32(b[:]); v > 255 {
			return v
		}
	}
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}
