package ipsec

// Authentication: PSK (RFC 7296 §2.15) or certificates with RFC 7427
// digital signatures (auth method 14): ECDSA (P-256 with SHA-256, P-384
// with SHA-384) or RSA PKCS#1 v1.5 with SHA-256. The peer's certificate
// (CERT payloads, X.509 signature encoding) must chain to ca_file and name
// remote_id in its subjectAltName; its AUTH must verify over the signed
// octets with the certificate's key.

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"slices"

	"switchyard/protocols/ipsec/ike"
)

// certX509 is the CERT/CERTREQ encoding "X.509 Certificate - Signature".
const certX509 = 4

// Hash algorithms of SIGNATURE_HASH_ALGORITHMS (RFC 7427 §4).
var signatureHashes = []byte{0, 2, 0, 3, 0, 4} // SHA2-256, SHA2-384, SHA2-512

// AlgorithmIdentifiers (DER) of the signatures made and accepted.
var (
	oidECDSASHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidECDSASHA384 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	oidECDSASHA512 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}
	oidRSASHA256   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidRSASHA384   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}
	oidRSASHA512   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 13}
)

type algorithmIdentifier struct {
	Algorithm  asn1.ObjectIdentifier
	Parameters asn1.RawValue `asn1:"optional"`
}

// pubkeyAuth is the certificate material of auth: pubkey.
type pubkeyAuth struct {
	chain  [][]byte // our certificate, then intermediates (DER)
	key    crypto.Signer
	cas    *x509.CertPool
	caHash []byte // SHA-1 of each CA's SubjectPublicKeyInfo, concatenated (CERTREQ)
}

// loadPubkey reads cert_file, key_file (private) and ca_file.
func loadPubkey(certFile, keyFile, caFile string) (*pubkeyAuth, error) {
	certPEM, err := readFileLimited(certFile, certFileMaxBytes, false)
	if err != nil {
		return nil, fmt.Errorf("cert_file: %w", err)
	}
	keyPEM, err := readFileLimited(keyFile, certFileMaxBytes, true)
	if err != nil {
		return nil, fmt.Errorf("key_file: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("cert_file: %s with %s: %w", certFile, keyFile, err)
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, errors.New("key_file: not a signing key")
	}
	switch k := signer.Public().(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return nil, errors.New("key_file: ECDSA keys must be P-256 or P-384")
		}
	case *rsa.PublicKey:
	default:
		return nil, fmt.Errorf("key_file: %T keys are not supported (ECDSA or RSA)", k)
	}
	caPEM, err := readFileLimited(caFile, certFileMaxBytes, false)
	if err != nil {
		return nil, fmt.Errorf("ca_file: %w", err)
	}
	p := &pubkeyAuth{chain: pair.Certificate, key: signer, cas: x509.NewCertPool()}
	for len(caPEM) > 0 {
		var der []byte
		der, caPEM = pemNext(caPEM)
		if der == nil {
			break
		}
		ca, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		p.cas.AddCert(ca)
		h := sha1.Sum(ca.RawSubjectPublicKeyInfo)
		p.caHash = append(p.caHash, h[:]...)
	}
	if len(p.caHash) == 0 {
		return nil, fmt.Errorf("ca_file: %s holds no PEM certificate", caFile)
	}
	return p, nil
}

// pemNext returns the DER of the next CERTIFICATE block in b and the rest.
func pemNext(b []byte) ([]byte, []byte) {
	for {
		blk, rest := pem.Decode(b)
		if blk == nil {
			return nil, nil
		}
		if blk.Type == "CERTIFICATE" {
			return blk.Bytes, rest
		}
		b = rest
	}
}

// sign returns the AUTH payload body of a signature over octets.
func (p *pubkeyAuth) sign(octets []byte) ([]byte, error) {
	var oid asn1.ObjectIdentifier
	var h crypto.Hash
	switch k := p.key.Public().(type) {
	case *ecdsa.PublicKey:
		oid, h = oidECDSASHA256, crypto.SHA256
		if k.Curve == elliptic.P384() {
			oid, h = oidECDSASHA384, crypto.SHA384
		}
	default:
		oid, h = oidRSASHA256, crypto.SHA256
	}
	ai := algorithmIdentifier{Algorithm: oid}
	if h == crypto.SHA256 && oid.Equal(oidRSASHA256) {
		ai.Parameters = asn1.NullRawValue
	}
	der, err := asn1.Marshal(ai)
	if err != nil {
		return nil, err
	}
	d := h.New()
	d.Write(octets)
	sig, err := p.key.Sign(rand.Reader, d.Sum(nil), h) // ECDSA: ASN.1 ECDSA-Sig-Value, as RFC 7427 wants
	if err != nil {
		return nil, err
	}
	data := append([]byte{byte(len(der))}, der...)
	return ike.AUTHBody(ike.AuthSignature, append(data, sig...)), nil
}

// verifyPeer checks the peer's certificate (the CERT payloads of ps) against
// the CAs and remote_id, and its signature data over octets.
func (p *pubkeyAuth) verifyPeer(ps []ike.Payload, id Identity, method uint8, data, octets []byte) error {
	if method != ike.AuthSignature {
		return fmt.Errorf("AUTH method %d, want digital signature (14)", method)
	}
	var certs []*x509.Certificate
	for _, pl := range ps {
		if pl.Type != ike.PayloadCERT || len(pl.Body) < 2 || pl.Body[0] != certX509 || len(certs) >= maxPeerCerts {
			continue
		}
		c, err := x509.ParseCertificate(pl.Body[1:])
		if err != nil {
			return fmt.Errorf("peer certificate: %w", err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return errors.New("no certificate from the peer")
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	leaf := certs[0]
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: p.cas, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("peer certificate: %w", err)
	}
	if !certNames(leaf, id) {
		return fmt.Errorf("peer certificate does not name %q", id)
	}
	if len(data) < 1 || int(data[0])+1 > len(data) {
		return errors.New("AUTH: bad AlgorithmIdentifier length")
	}
	var ai algorithmIdentifier
	if rest, err := asn1.Unmarshal(data[1:1+int(data[0])], &ai); err != nil || len(rest) != 0 {
		return errors.New("AUTH: bad AlgorithmIdentifier")
	}
	sig := data[1+int(data[0]):]
	var h crypto.Hash
	rsaSig := false
	switch {
	case ai.Algorithm.Equal(oidECDSASHA256):
		h = crypto.SHA256
	case ai.Algorithm.Equal(oidECDSASHA384):
		h = crypto.SHA384
	case ai.Algorithm.Equal(oidECDSASHA512):
		h = crypto.SHA512
	case ai.Algorithm.Equal(oidRSASHA256):
		h, rsaSig = crypto.SHA256, true
	case ai.Algorithm.Equal(oidRSASHA384):
		h, rsaSig = crypto.SHA384, true
	case ai.Algorithm.Equal(oidRSASHA512):
		h, rsaSig = crypto.SHA512, true
	default:
		return fmt.Errorf("AUTH: unsupported signature algorithm %v", ai.Algorithm)
	}
	d := h.New()
	d.Write(octets)
	digest := d.Sum(nil)
	switch k := leaf.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if rsaSig || !ecdsa.VerifyASN1(k, digest, sig) {
			return errors.New("AUTH: ECDSA signature does not verify")
		}
	case *rsa.PublicKey:
		if !rsaSig || rsa.VerifyPKCS1v15(k, h, digest, sig) != nil {
			return errors.New("AUTH: RSA signature does not verify")
		}
	default:
		return fmt.Errorf("AUTH: peer key of type %T", k)
	}
	return nil
}

// certNames reports whether c's subjectAltName holds id.
func certNames(c *x509.Certificate, id Identity) bool {
	switch id.Type {
	case ike.IDFQDN:
		return slices.Contains(c.DNSNames, string(id.Data))
	case ike.IDEmail:
		return slices.Contains(c.EmailAddresses, string(id.Data))
	case ike.IDIPv4, ike.IDIPv6:
		return slices.ContainsFunc(c.IPAddresses, func(ip net.IP) bool {
			a := ip.To4()
			if id.Type == ike.IDIPv6 {
				a = ip.To16()
			}
			return bytes.Equal(a, id.Data)
		})
	}
	return false
}

// certPayloads are our CERT payloads.
func (p *pubkeyAuth) certPayloads() []ike.Payload {
	var out []ike.Payload
	for _, der := range p.chain {
		out = append(out, ike.Payload{Type: ike.PayloadCERT, Body: append([]byte{certX509}, der...)})
	}
	return out
}

// certReq is our CERTREQ: the CAs we trust.
func (p *pubkeyAuth) certReq() ike.Payload {
	return ike.Payload{Type: ike.PayloadCERTREQ, Body: append([]byte{certX509}, p.caHash...)}
}

// signedOctets are what AUTH covers: a message of the IKE_SA_INIT exchange,
// the other end's nonce and prf(SK_p, ID body).
func signedOctets(prf ike.PRF, msg, nonce, skp, idBody []byte) []byte {
	var b []byte
	b = append(b, msg...)
	b = append(b, nonce...)
	return append(b, prf.Sum(skp, idBody)...)
}

// ourAuth returns our AUTH payload body over the signed octets.
func (c *controller) ourAuth(prf ike.PRF, msg, nonce, skp, idBody []byte) ([]byte, error) {
	if c.set.Pubkey != nil {
		return c.set.Pubkey.sign(signedOctets(prf, msg, nonce, skp, idBody))
	}
	return ike.AUTHBody(ike.AuthPSK, pskAuth(prf, c.set.PSK, msg, nonce, skp, idBody)), nil
}

// checkAuth verifies the peer's AUTH (and certificate) in ps.
func (c *controller) checkAuth(prf ike.PRF, ps []ike.Payload, id Identity, authBody, msg, nonce, skp, idBody []byte) error {
	method, data, err := ike.ParseAUTH(authBody)
	if err != nil {
		return err
	}
	if c.set.Pubkey != nil {
		return c.set.Pubkey.verifyPeer(ps, id, method, data, signedOctets(prf, msg, nonce, skp, idBody))
	}
	if method != ike.AuthPSK {
		return fmt.Errorf("AUTH method %d, want PSK (2)", method)
	}
	if !hmac.Equal(data, pskAuth(prf, c.set.PSK, msg, nonce, skp, idBody)) {
		return errors.New("AUTH does not verify with the PSK")
	}
	return nil
}
