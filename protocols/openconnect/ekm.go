package openconnect

// The DTLS key of PSK-NEGOTIATE is the RFC 5705 exporter of the TLS
// session. crypto/tls refuses it on TLS 1.2 without the extended master
// secret (RFC 7627) unless GODEBUG=tlsunsafeekm=1, and ocserv negotiates
// exactly that: with cisco-client-compat it turns TLS 1.3 off, and gnutls
// does not answer Go's EMS extension there. openconnect (gnutls) exports
// the key all the same, so this file does what the exporter would, for one
// connection, without a process-wide GODEBUG:
//
//  1. the key log (tls.Config.KeyLogWriter) gives the master secret;
//  2. the server random is read from the plaintext ServerHello as it
//     passes through wireConn;
//  3. RFC 5705 with the TLS 1.2 PRF (RFC 5246 §5) of the suite's hash:
//     PRF(master_secret, label, client_random ‖ server_random).
//
// TLS 1.3 and TLS 1.2 with EMS use crypto/tls's own exporter.

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"hash"
	"strings"
	"sync"

	"switchyard/protocols/openconnect/cstp"
)

// keyLog keeps the CLIENT_RANDOM line of one TLS 1.2 connection.
type keyLog struct {
	mu           sync.Mutex
	clientRandom []byte
	master       []byte
}

func (k *keyLog) Write(line []byte) (int, error) {
	f := strings.Fields(string(line))
	if len(f) == 3 && f[0] == "CLIENT_RANDOM" {
		cr, err1 := hex.DecodeString(f[1])
		ms, err2 := hex.DecodeString(f[2])
		if err1 == nil && err2 == nil {
			k.mu.Lock()
			k.clientRandom, k.master = cr, ms
			k.mu.Unlock()
		}
	}
	return len(line), nil
}

// serverHelloBytes (43) reach the end of the ServerHello's random: record
// header (5), handshake header (4), version (2), random (32).
const serverHelloBytes = 5 + 4 + 2 + 32

// serverRandom returns the random of the sniffed ServerHello.
func (c *wireConn) serverRandom() ([]byte, error) {
	h := c.head
	if len(h) < serverHelloBytes || h[0] != 22 || h[5] != 2 {
		return nil, errors.New("no ServerHello seen")
	}
	return h[11:43], nil
}

// exportKey returns the PSK-NEGOTIATE key of conn, which was made with
// KeyLogWriter kl over sniffer.
func exportKey(conn *tls.Conn, kl *keyLog, sniffer *wireConn) ([]byte, error) {
	cs := conn.ConnectionState()
	key, err := cs.ExportKeyingMaterial(cstp.ExporterLabel, nil, cstp.ExporterBytes)
	if err == nil || cs.Version != tls.VersionTLS12 {
		return key, err
	}
	return exportKey12(cs, kl, sniffer)
}

// exportKey12 computes the TLS 1.2 exporter from the key log and the
// sniffed server random.
func exportKey12(cs tls.ConnectionState, kl *keyLog, sniffer *wireConn) ([]byte, error) {
	kl.mu.Lock()
	cr, ms := kl.clientRandom, kl.master
	kl.mu.Unlock()
	sr, serr := sniffer.serverRandom()
	if ms == nil || serr != nil {
		return nil, errors.New("TLS 1.2 without extended master secret and no key log to export from")
	}
	newHash := sha256.New
	if strings.HasSuffix(tls.CipherSuiteName(cs.CipherSuite), "_SHA384") {
		newHash = sha512.New384
	}
	seed := append(append([]byte(nil), cr...), sr...)
	return prf12(newHash, ms, []byte(cstp.ExporterLabel), seed, cstp.ExporterBytes), nil
}

// prf12 is the TLS 1.2 PRF: P_hash(secret, label ‖ seed) cut to n bytes.
func prf12(newHash func() hash.Hash, secret, label, seed []byte, n int) []byte {
	ls := append(append([]byte(nil), label...), seed...)
	mac := hmac.New(newHash, secret)
	mac.Write(ls)
	a := mac.Sum(nil) // A(1)
	var out bytes.Buffer
	for out.Len() < n {
		mac.Reset()
		mac.Write(a)
		mac.Write(ls)
		out.Write(mac.Sum(nil))
		mac.Reset()
		mac.Write(a)
		a = mac.Sum(nil)
	}
	return out.Bytes()[:n]
}
