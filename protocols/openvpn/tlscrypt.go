package openvpn

// tls-crypt (OpenVPN's tls_crypt.c): every control packet is authenticated
// with HMAC-SHA256 and encrypted with AES-256-CTR under a static key shared
// by all clients of a server.
//
//	wrap:   header = opcode | session id | packet id (4) | net time (4)
//	        tag    = HMAC-SHA256(hmac key, header || plaintext)
//	        out    = header || tag || AES-256-CTR(cipher key, IV = tag[:16], plaintext)
//	unwrap: decrypt with IV = tag[:16], recompute the tag, compare in
//	        constant time, then check the packet id against a replay window.
//
// The key file (`openvpn --genkey tls-crypt`) holds 256 bytes in hex: two
// keys of a 64-byte cipher part and a 64-byte HMAC part. The server sends
// with key 0 and receives with key 1 (KEY_DIRECTION_NORMAL); the client the
// other way round. AES-256 uses the first 32 bytes of a cipher part,
// HMAC-SHA256 the first 32 of an HMAC part.

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"
	"sync"
	"time"
)

const (
	staticKeyBytes  = 256
	tlsCryptHeader  = 1 + 8 + 4 + 4 // opcode, session id, packet id, time
	tlsCryptTagSize = 32
	// tlsCryptOverhead is what tls-crypt adds to a control packet body.
	tlsCryptOverhead = tlsCryptHeader + tlsCryptTagSize
)

// parseStaticKey decodes an "OpenVPN Static key V1" file.
func parseStaticKey(text []byte) ([staticKeyBytes]byte, error) {
	var key [staticKeyBytes]byte
	const begin, end = "-----BEGIN OpenVPN Static key V1-----", "-----END OpenVPN Static key V1-----"
	s := string(text)
	i := strings.Index(s, begin)
	j := strings.Index(s, end)
	if i < 0 || j < i {
		return key, errors.New("not an OpenVPN static key (no BEGIN/END OpenVPN Static key V1 lines); make one with openvpn --genkey tls-crypt")
	}
	var hexText strings.Builder
	for _, line := range strings.Split(s[i+len(begin):j], "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		hexText.WriteString(line)
	}
	b, err := hex.DecodeString(hexText.String())
	if err != nil {
		return key, fmt.Errorf("static key: %v", err)
	}
	if len(b) != staticKeyBytes {
		return key, fmt.Errorf("static key holds %d bytes, want %d (a 2048-bit key)", len(b), staticKeyBytes)
	}
	copy(key[:], b)
	return key, nil
}

// tlsCrypt is one end's tls-crypt state: its send and receive keys, its
// packet id counter and the replay window of what it received. Safe for
// concurrent use.
type tlsCrypt struct {
	mu sync.Mutex

	encBlock cipher.Block
	encMAC   hash.Hash
	decBlock cipher.Block
	decMAC   hash.Hash

	sendID uint32
	replay ctrlReplay
	now    func() time.Time
}

// newTLSCrypt returns tls-crypt state for the client (server false) or the
// server end of key.
func newTLSCrypt(key *[staticKeyBytes]byte, server bool) *tlsCrypt {
	out, in := 1, 0 // client: KEY_DIRECTION_INVERSE
	if server {
		out, in = 0, 1
	}
	part := func(k, off int) []byte { return key[k*128+off : k*128+off+32] }
	eb, _ := aes.NewCipher(part(out, 0))
	db, _ := aes.NewCipher(part(in, 0))
	return &tlsCrypt{
		encBlock: eb, encMAC: hmac.New(sha256.New, part(out, 64)),
		decBlock: db, decMAC: hmac.New(sha256.New, part(in, 64)),
		now: time.Now,
	}
}

// wrap appends to dst the packet with header byte hdr, session id sid and
// the encrypted body.
func (t *tlsCrypt) wrap(dst []byte, hdr byte, sid sessionID, body []byte) ([]byte, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.sendID == ^uint32(0) {
		return dst, errors.New("tls-crypt packet id exhausted")
	}
	t.sendID++
	start := len(dst)
	dst = append(dst, hdr)
	dst = append(dst, sid[:]...)
	dst = binary.BigEndian.AppendUint32(dst, t.sendID)
	dst = binary.BigEndian.AppendUint32(dst, uint32(t.now().Unix()))
	t.encMAC.Reset()
	t.encMAC.Write(dst[start:])
	t.encMAC.Write(body)
	dst = t.encMAC.Sum(dst)
	tag := dst[len(dst)-tlsCryptTagSize:]
	n := len(dst)
	dst = append(dst, body...)
	cipher.NewCTR(t.encBlock, tag[:aes.BlockSize]).XORKeyStream(dst[n:], dst[n:])
	return dst, nil
}

var (
	errAuth   = errors.New("tls-crypt: authentication failed")
	errReplay = errors.New("tls-crypt: replayed packet id")
)

// unwrap checks and decrypts pkt in place; it returns the body (a slice of
// pkt) and writes the sender's session id to sid.
func (t *tlsCrypt) unwrap(pkt []byte, sid *sessionID) ([]byte, error) {
	if len(pkt) < tlsCryptOverhead {
		return nil, errShort
	}
	hdr := pkt[:tlsCryptHeader]
	tag := pkt[tlsCryptHeader:tlsCryptOverhead]
	body := pkt[tlsCryptOverhead:]
	t.mu.Lock()
	defer t.mu.Unlock()
	var iv [aes.BlockSize]byte
	copy(iv[:], tag)
	cipher.NewCTR(t.decBlock, iv[:]).XORKeyStream(body, body)
	t.decMAC.Reset()
	t.decMAC.Write(hdr)
	t.decMAC.Write(body)
	var sum [tlsCryptTagSize]byte
	if subtle.ConstantTimeCompare(t.decMAC.Sum(sum[:0]), tag) != 1 {
		return nil, errAuth
	}
	id := binary.BigEndian.Uint32(hdr[9:])
	if !t.replay.check(id) {
		return nil, errReplay
	}
	copy(sid[:], hdr[1:9])
	return body, nil
}

// peekSID returns the session id of a control packet without checking it.
func peekSID(pkt []byte) (sessionID, bool) {
	var s sessionID
	if len(pkt) < 9 {
		return s, false
	}
	copy(s[:], pkt[1:9])
	return s, true
}

// ctrlReplay is tls-crypt's replay window: a bitmap of the last
// ctrlReplayWindow ids below the highest seen.
type ctrlReplay struct {
	top    uint32
	bitmap uint64 // bit i: top-i seen
	any    bool
}

func (r *ctrlReplay) check(id uint32) bool {
	switch {
	case !r.any || id > r.top:
		shift := uint64(id - r.top)
		if !r.any || shift >= 64 {
			r.bitmap = 0
		} else {
			r.bitmap <<= shift
		}
		r.bitmap |= 1
		r.top, r.any = id, true
		return true
	case r.top-id >= ctrlReplayWindow:
		return false
	default:
		bit := uint64(1) << (r.top - id)
		if r.bitmap&bit != 0 {
			return false
		}
		r.bitmap |= bit
		return true
	}
}

// authentic reports whether pkt passes tls-crypt, without decrypting it in
// place or touching the replay window: the check of a new client's first
// packet before any state is made for it.
func (t *tlsCrypt) authentic(pkt []byte) bool {
	if len(pkt) < tlsCryptOverhead || len(pkt) > 2048 {
		return false
	}
	var buf [2048]byte
	c := buf[:len(pkt)]
	copy(c, pkt)
	body := c[tlsCryptOverhead:]
	t.mu.Lock()
	defer t.mu.Unlock()
	var iv [aes.BlockSize]byte
	copy(iv[:], c[tlsCryptHeader:])
	cipher.NewCTR(t.decBlock, iv[:]).XORKeyStream(body, body)
	t.decMAC.Reset()
	t.decMAC.Write(c[:tlsCryptHeader])
	t.decMAC.Write(body)
	var sum [tlsCryptTagSize]byte
	return subtle.ConstantTimeCompare(t.decMAC.Sum(sum[:0]), c[tlsCryptHeader:tlsCryptOverhead]) == 1
}
