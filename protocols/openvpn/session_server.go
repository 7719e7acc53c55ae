package openvpn

// The server side of a key exchange, the TLS goroutine of a server peer's
// key state:
//
//  1. TLS handshake as the server (the client's certificate must chain to
//     ca_file), then read the client's key method 2 message and answer
//     with ours.
//  2. On the first key: the client must announce tls-ekm (IV_PROTO bit 3)
//     and a cipher both sides allow (IV_CIPHERS, else IV_NCP=2 means
//     AES-256-GCM); reply builds the push reply (address, routes,
//     peer id).
//  3. Install the data key (exported keying material, server direction)
//     before pushing, so the client's first data packet decrypts; then
//     PUSH_REPLY (at once when the client announced request-push, else when
//     its PUSH_REQUEST comes).
//  4. Then serve PUSH_REQUEST again (answered with the same reply) and end
//     the session on EXIT.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// serverOptions is the options string of a server's key method 2 message.
const serverOptions = "V4,dev-type tun,link-mtu 1521,tun-mtu 1500,proto UDPv4,keydir 0,cipher AES-256-GCM,auth [null-digest],keysize 256,key-method 2,tls-server"

func (s *session) serverKeyExchange(ks *keyState) error {
	ctx, cancel := context.WithTimeout(s.ctx, handshakeTimeout)
	defer cancel()
	tc := tls.Server(ks.conn(), s.cfg.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	stop := context.AfterFunc(s.ctx, func() { ks.close() })
	defer stop()
	r := &msgReader{r: tc}
	info, err := r.keyMethod(false)
	if err != nil {
		return fmt.Errorf("key method 2: %w", err)
	}
	if _, err := tc.Write(keyMethod2(true, serverOptions, "")); err != nil {
		return err
	}
	first := s.pushed.Load() == nil
	var p pushReply
	if first {
		iv := parsePeerInfo(info.PeerInfo)
		proto, _ := strconv.Atoi(iv["IV_PROTO"])
		if proto&(1<<3) == 0 {
			return errors.New("the client does not support tls-ekm key export (IV_PROTO bit 3); the old PRF is not supported")
		}
		if proto&(1<<1) == 0 {
			return errors.New("the client does not support P_DATA_V2 (IV_PROTO bit 1)")
		}
		cipherName := ""
		offered := strings.Split(iv["IV_CIPHERS"], ":")
		if iv["IV_CIPHERS"] == "" && iv["IV_NCP"] >= "2" {
			offered = []string{cipherAES256GCM}
		}
		for _, c := range s.cfg.ciphers {
			for _, o := range offered {
				if strings.EqualFold(c, o) {
					cipherName = c
					break
				}
			}
			if cipherName != "" {
				break
			}
		}
		if cipherName == "" {
			return fmt.Errorf("no common data cipher: the client offers %q, we allow %v", iv["IV_CIPHERS"], s.cfg.ciphers)
		}
		if p, err = s.cfg.reply(info); err != nil {
			return err
		}
		p.Cipher, p.TLSEKM = cipherName, true
		p.requestPush = proto&(1<<2) != 0
	} else {
		p = *s.pushed.Load()
	}
	cs := tc.ConnectionState()
	mat, err := cs.ExportKeyingMaterial(ekmLabel, nil, keyMaterialBytes)
	if err != nil {
		return fmt.Errorf("export keying material: %w", err)
	}
	k, err := newDataKey(ks.id, p.Cipher, mat, true, p.PeerID)
	if err != nil {
		return err
	}
	// Decrypt with the new key at once; send with it only once the client
	// has our key method message (and push reply), so it has the key too.
	s.ring.add(k)
	reply := []byte(p.text() + "\x00")
	pushedNow := !first // a renegotiation pushes nothing
	if first {
		s.pushed.Store(&p)
		if p.requestPush {
			if _, err := tc.Write(reply); err != nil {
				return err
			}
			pushedNow = true
		}
	}
	if err := s.waitAcked(ctx, ks); err != nil {
		return err
	}
	s.ring.promote(k)
	if first {
		s.up <- p
	}
	for {
		msg, err := r.text()
		if err != nil {
			if s.ctx.Err() != nil || ks.isClosed() {
				return nil
			}
			return err
		}
		switch {
		case msg == "PUSH_REQUEST":
			// Answered once: the client asks again until it has one.
			if pushedNow {
				continue
			}
			if _, err := tc.Write(reply); err != nil {
				return err
			}
			pushedNow = true
		case msg == "EXIT" || strings.HasPrefix(msg, "EXIT,"):
			return errors.New("client says EXIT")
		}
	}
}

// waitAcked waits until every control message of ks was acknowledged.
func (s *session) waitAcked(ctx context.Context, ks *keyState) error {
	for {
		s.mu.Lock()
		idle := ks.snd.idle()
		s.mu.Unlock()
		if idle {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ks.closed:
			return errKeyStateClosed
		case <-time.After(ackPoll):
		}
	}
}

// parsePeerInfo splits IV_…=value lines.
func parsePeerInfo(s string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = v
		}
	}
	return m
}

// text is the PUSH_REPLY message of p (server).
func (p *pushReply) text() string {
	var b strings.Builder
	b.WriteString("PUSH_REPLY")
	if p.Gateway.IsValid() {
		fmt.Fprintf(&b, ",route-gateway %s", p.Gateway)
	}
	b.WriteString(",topology subnet")
	fmt.Fprintf(&b, ",ping %d,ping-restart %d", int(p.Ping.Seconds()), int(p.PingRestart.Seconds()))
	if p.Addr.IsValid() {
		fmt.Fprintf(&b, ",ifconfig %s %s", p.Addr.Addr(), maskOf(p.Addr.Bits()))
	}
	for _, r := range p.Routes {
		if r.Addr().Is4() {
			fmt.Fprintf(&b, ",route %s %s", r.Addr(), maskOf(r.Bits()))
		} else {
			fmt.Fprintf(&b, ",route-ipv6 %s", r)
		}
	}
	fmt.Fprintf(&b, ",peer-id %d,cipher %s,protocol-flags cc-exit tls-ekm", p.PeerID, p.Cipher)
	return b.String()
}

func maskOf(bits int) string {
	m := ^uint32(0) << (32 - bits)
	if bits == 0 {
		m = 0
	}
	return fmt.Sprintf("%d.%d.%d.%d", m>>24, m>>16&0xff, m>>8&0xff, m&0xff)
}
