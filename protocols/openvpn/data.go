package openvpn

// Data channel flow (P_DATA_V2 with AES-256-GCM or CHACHA20-POLY1305):
//
//  1. Send: sealBatch borrows the router's batch and seals each packet into
//     an output buffer of the caller's (pooled, full capacity): header
//     opcode|key id, peer id, packet id, then the AEAD output with its tag
//     moved in front of the ciphertext (OpenVPN 2.6's layout). The packet
//     ids of a whole batch are taken with one atomic add.
//  2. The caller sends the output buffers with one sendmmsg.
//  3. Receive: open decrypts one datagram in place: the tag is copied
//     behind the ciphertext (Go's AEAD wants it there), opened in place,
//     and the plaintext moved to the packet's Headroom — the one copy per
//     packet, because OpenVPN's 24-byte header is longer than the
//     headroom. The packet id is checked against the key's replay window
//     only after the tag verified. The caller holds the key's lock for a
//     whole batch (lockRecv/unlockRecv).

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"switchyard/packet"
)

const (
	dataHeader   = 4 + 4 // opcode|peer id, packet id: the additional data
	dataTag      = 16
	dataOverhead = dataHeader + dataTag
	// keyMaterialBytes is what the TLS exporter gives: two keys of a
	// 64-byte cipher part and a 64-byte HMAC part (struct key2).
	keyMaterialBytes = 256
	noPeerID         = 0xffffff // P_DATA_V2 without a pushed peer id
)

// pingMagic is the payload of OpenVPN's keepalive ping on the data channel.
var pingMagic = [16]byte{0x2a, 0x18, 0x7b, 0xf3, 0x64, 0x1e, 0xb4, 0xcb, 0x07, 0xed, 0x2d, 0x0a, 0x98, 0x1f, 0xc7, 0x48}

// Ciphers of the data channel, in OpenVPN's names.
const (
	cipherAES256GCM = "AES-256-GCM"
	cipherChaCha    = "CHACHA20-POLY1305"
)

func supportedCipher(name string) bool { return name == cipherAES256GCM || name == cipherChaCha }

// dataKey is one key id's data-channel keys, both directions.
type dataKey struct {
	id      byte
	created time.Time

	sealAEAD cipher.AEAD
	sealIV   [8]byte
	sendID   atomic.Uint32
	sendMu   sync.Mutex // the nonce scratch of sealBatch: the actor and the pinger share the key
	sealNon  [12]byte
	sendHdr  uint32 // opcode|key id << 24 | peer id
	openAEAD cipher.AEAD
	openIV   [8]byte
	recvMu   sync.Mutex
	replay   replayWindow
	openNon  [12]byte     // recvMu
	retireAt atomic.Int64 // unix nanos after which it no longer decrypts; 0: live
}

func newAEAD(name string, key []byte) (cipher.AEAD, error) {
	switch name {
	case cipherAES256GCM:
		b, err := aes.NewCipher(key[:32])
		if err != nil {
			return nil, err
		}
		return cipher.NewGCM(b)
	case cipherChaCha:
		return chacha20poly1305.New(key[:32])
	}
	return nil, fmt.Errorf("cipher %q is not supported", name)
}

// newDataKey makes the keys of key id from 256 bytes of key material. The
// client sends with key 0 and receives with key 1 (KEY_DIRECTION_NORMAL),
// the server the other way round; the implicit IV is the first 8 bytes of
// the HMAC part.
func newDataKey(id byte, cipherName string, mat []byte, server bool, peerID uint32) (*dataKey, error) {
	if len(mat) != keyMaterialBytes {
		return nil, fmt.Errorf("key material of %d bytes, want %d", len(mat), keyMaterialBytes)
	}
	out, in := 0, 1
	if server {
		out, in = 1, 0
	}
	k := &dataKey{id: id, created: time.Now()}
	var err error
	if k.sealAEAD, err = newAEAD(cipherName, mat[out*128:]); err != nil {
		return nil, err
	}
	if k.openAEAD, err = newAEAD(cipherName, mat[in*128:]); err != nil {
		return nil, err
	}
	copy(k.sealIV[:], mat[out*128+64:])
	copy(k.openIV[:], mat[in*128+64:])
	k.sendHdr = uint32(opDataV2<<opShift|id)<<24 | peerID&0xffffff
	return k, nil
}

// sealBatch borrows in (buffers in Batch layout, packets at Headroom) and
// out (as many full-capacity buffers); it writes the datagram of in[i] into
// out[i] and reslices out[i] to it. It fails only when the packet ids run
// out (the key must be renegotiated first).
func (k *dataKey) sealBatch(in, out [][]byte) error {
	n := uint32(len(in))
	last := k.sendID.Add(n)
	if last < n || last == ^uint32(0) {
		return errors.New("data channel packet ids exhausted")
	}
	id := last - n
	k.sendMu.Lock()
	defer k.sendMu.Unlock()
	nonce := &k.sealNon
	copy(nonce[4:], k.sealIV[:])
	for i, buf := range in {
		id++
		pt := buf[packet.Headroom:]
		o := out[i][:cap(out[i])]
		binary.BigEndian.PutUint32(o, k.sendHdr)
		binary.BigEndian.PutUint32(o[4:], id)
		binary.BigEndian.PutUint32(nonce[:], id)
		ct := k.sealAEAD.Seal(o[dataOverhead:dataOverhead], nonce[:], pt, o[:dataHeader])
		// Tag to the front: [hdr][tag][ciphertext].
		var tag [dataTag]byte
		copy(tag[:], ct[len(pt):])
		copy(o[dataHeader:dataOverhead], tag[:])
		out[i] = o[:dataOverhead+len(pt)]
	}
	return nil
}

// sealOne seals one payload (a ping) into a new buffer.
func (k *dataKey) sealOne(payload []byte) ([]byte, error) {
	in := make([]byte, packet.Headroom+len(payload))
	copy(in[packet.Headroom:], payload)
	out := make([]byte, dataOverhead+len(payload)+dataTag)
	bufs := [][]byte{out}
	if err := k.sealBatch([][]byte{in}, bufs); err != nil {
		return nil, err
	}
	return bufs[0], nil
}

var (
	errDecrypt = errors.New("data packet does not decrypt")
	errOld     = errors.New("data packet replayed or too old")
)

// open decrypts the datagram buf[:n] (a receive buffer of full capacity,
// the datagram at its start) in place and moves the plaintext to
// buf[Headroom:]; it returns the plaintext's length. The caller holds
// k.recvMu.
func (k *dataKey) open(buf []byte, n int) (int, error) {
	if n < dataOverhead || n+dataTag > cap(buf) {
		return 0, errDecrypt
	}
	buf = buf[:cap(buf)]
	id := binary.BigEndian.Uint32(buf[4:])
	if !k.replay.fresh(id) {
		return 0, errOld
	}
	nonce := &k.openNon
	binary.BigEndian.PutUint32(nonce[:], id)
	copy(nonce[4:], k.openIV[:])
	ctLen := n - dataOverhead
	copy(buf[n:n+dataTag], buf[dataHeader:dataOverhead])
	ct := buf[dataOverhead : n+dataTag]
	pt, err := k.openAEAD.Open(ct[:0], nonce[:], ct, buf[:dataHeader])
	if err != nil {
		return 0, errDecrypt
	}
	if !k.replay.mark(id) {
		return 0, errOld
	}
	copy(buf[packet.Headroom:], pt[:ctLen])
	return ctLen, nil
}

// replayWindow remembers which of the last replayWindowPackets packet ids
// were seen (RFC 6479 style bitmap).
type replayWindow struct {
	top    uint32
	any    bool
	bitmap [replayWindowPackets / 64]uint64
}

// fresh reports whether id could be accepted (not seen, not too old),
// without recording it.
func (r *replayWindow) fresh(id uint32) bool {
	if id == 0 {
		return false // OpenVPN's packet ids start at 1
	}
	if !r.any || id > r.top {
		return true
	}
	if r.top-id >= replayWindowPackets-64 { // one word is the one being reused
		return false
	}
	return r.bitmap[(id/64)%uint32(len(r.bitmap))]&(1<<(id%64)) == 0
}

// mark records id (after its packet authenticated); false if it is stale.
func (r *replayWindow) mark(id uint32) bool {
	if !r.fresh(id) {
		return false
	}
	words := uint32(len(r.bitmap))
	if !r.any || id > r.top {
		if !r.any {
			clear(r.bitmap[:])
		} else {
			cur, next := r.top/64, id/64
			if next-cur >= words {
				clear(r.bitmap[:])
			} else {
				for w := cur + 1; w <= next; w++ {
					r.bitmap[w%words] = 0
				}
			}
		}
		r.top, r.any = id, true
	}
	r.bitmap[(id/64)%words] |= 1 << (id % 64)
	return true
}

// keyRing holds the data keys of a session by key id and the one to send
// with. Readers look keys up without a lock.
type keyRing struct {
	keys    [8]atomic.Pointer[dataKey]
	primary atomic.Pointer[dataKey]
}

// install adds k and makes it the key to send with; the key it replaces
// keeps decrypting for transitionWindow.
func (r *keyRing) install(k *dataKey) {
	r.add(k)
	r.promote(k)
}

// add makes k decrypt, without sending with it yet.
func (r *keyRing) add(k *dataKey) { r.keys[k.id].Store(k) }

// promote makes k (added before) the key to send with.
func (r *keyRing) promote(k *dataKey) {
	if old := r.primary.Load(); old != nil && old.id != k.id {
		old.retireAt.Store(time.Now().Add(transitionWindow).UnixNano())
	}
	r.primary.Store(k)
}

// forRecv returns the live key of id, or nil.
func (r *keyRing) forRecv(id byte, now int64) *dataKey {
	k := r.keys[id&keyIDMask].Load()
	if k == nil {
		return nil
	}
	if t := k.retireAt.Load(); t != 0 && now > t {
		return nil
	}
	return k
}
