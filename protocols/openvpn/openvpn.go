// Package openvpn is the OpenVPN 2.6 protocol in TLS mode over UDP, client
// side: tls-crypt on the control channel, crypto/tls over OpenVPN's
// reliability layer, key method 2 with peer info, PUSH_REQUEST/PUSH_REPLY,
// data keys from the TLS exporter (tls-ekm), and the P_DATA_V2 data channel
// with AES-256-GCM or CHACHA20-POLY1305.
//
//	protocols:
//	  - name: office
//	    type: openvpn
//	    settings:
//	      remote: 192.0.2.1:1194
//	      ca_file: ca.crt
//	      cert_file: client.crt
//	      key_file: client.key           # mode 0600
//	      tls_crypt_file: tc.key         # mode 0600
//	      data_ciphers: [AES-256-GCM, CHACHA20-POLY1305]
//	      remote_cert_tls: server
//	      accept_routes: true
//	      mtu: 1420
//
// See README.md for what is supported and what is refused.
package openvpn

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"switchyard/config"
	"switchyard/protocols"
)

func init() {
	protocols.Register(protocols.Info{Name: "openvpn", Parse: parse, New: newActor})
}

// Settings is a parsed and validated openvpn settings block.
type Settings struct {
	// Server is true for mode: server.
	Server bool
	// Listen is the server's UDP address (server).
	Listen netip.AddrPort
	// Network is the tunnel network (server, OpenVPN's `server`): the server
	// is its first address, the clients get the following ones.
	Network netip.Prefix
	// PushRoutes are pushed to every client (server).
	PushRoutes []netip.Prefix
	// MaxClients bounds the clients connected at once (server).
	MaxClients int
	// Ping and PingRestart are pushed to clients and used by the server
	// itself (server; OpenVPN's keepalive).
	Ping, PingRestart time.Duration
	// Remote is the server's address and UDP port (client).
	Remote netip.AddrPort
	// RootCAs verifies the server's certificate chain (ca_file).
	RootCAs *x509.CertPool
	// Cert is the client certificate and key.
	Cert tls.Certificate
	// TLSCryptKey is the tls-crypt static key.
	TLSCryptKey [staticKeyBytes]byte
	// DataCiphers are the data-channel ciphers offered, in order.
	DataCiphers []string
	// RemoteCertTLSServer requires the server certificate's extended key
	// usage to include TLS server authentication.
	RemoteCertTLSServer bool
	// AcceptRoutes passes the pushed routes to the node.
	AcceptRoutes bool
	// MTU is the largest inner packet sent.
	MTU int
	// Reneg is the renegotiation interval (reneg_sec); 0: never (the peer
	// may still renegotiate).
	Reneg time.Duration
}

// Endpoints implements protocols.Underlay.
func (s Settings) Endpoints() []netip.AddrPort {
	if s.Server {
		return nil
	}
	return []netip.AddrPort{s.Remote}
}

// ListenPorts implements protocols.Underlay (a client binds a free port).
func (s Settings) ListenPorts() []uint16 {
	if s.Server {
		return []uint16{s.Listen.Port()}
	}
	return nil
}

func (s Settings) allowsCipher(name string) bool { return slices.Contains(s.DataCiphers, name) }

// rawSettings is the settings block as written.
type rawSettings struct {
	// Mode is "client" (default) or "server".
	Mode string `yaml:"mode"`
	// Listen is ip:port (server).
	Listen string `yaml:"listen"`
	// Server is the tunnel network, CIDR (server; OpenVPN's `server`).
	Server string `yaml:"server"`
	// PushRoutes are routes pushed to clients (server).
	PushRoutes []string `yaml:"push_routes"`
	// MaxClients (server, default 64).
	MaxClients *int `yaml:"max_clients"`
	// Keepalive is OpenVPN's keepalive: [ping, ping-restart] in seconds
	// (server, default [10, 60]).
	Keepalive []int `yaml:"keepalive"`
	// Remote is the server, ip:port.
	Remote string `yaml:"remote"`
	// CAFile, CertFile, KeyFile: PEM files as OpenVPN's ca, cert, key.
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// TLSCryptFile is OpenVPN's tls-crypt key (openvpn --genkey tls-crypt).
	TLSCryptFile string `yaml:"tls_crypt_file"`
	// DataCiphers as OpenVPN's data-ciphers.
	DataCiphers []string `yaml:"data_ciphers"`
	// RemoteCertTLS as OpenVPN's remote-cert-tls: "server" or empty.
	RemoteCertTLS string `yaml:"remote_cert_tls"`
	// AcceptRoutes installs pushed routes (default false).
	AcceptRoutes bool `yaml:"accept_routes"`
	// MTU is the tunnel MTU (default 1420).
	MTU *int `yaml:"mtu"`
	// RenegSec as OpenVPN's reneg-sec, in seconds (default 0: never).
	RenegSec int `yaml:"reneg_sec"`
	// Compression and static-key mode are refused with a clear error.
	Compress string `yaml:"compress"`
	Secret   string `yaml:"secret"`
}

// parse decodes a settings block strictly and validates it; it reads the
// files it names (a key others can read is refused, so `switchyard check`
// catches it).
func parse(s config.Settings) (any, error) {
	var raw rawSettings
	if err := s.Decode(&raw); err != nil {
		return nil, err
	}
	var errs config.Errors
	fail := func(field, format string, args ...any) { errs = append(errs, s.Errorf(field, format, args...)) }
	base := ""
	if s.Pos().File != "" {
		base = filepath.Dir(s.Pos().File)
	}
	set := Settings{MTU: defaultMTU, AcceptRoutes: raw.AcceptRoutes}
	switch raw.Mode {
	case "", "client":
		for field, given := range map[string]bool{"listen": raw.Listen != "", "server": raw.Server != "",
			"push_routes": raw.PushRoutes != nil, "max_clients": raw.MaxClients != nil, "keepalive": raw.Keepalive != nil} {
			if given {
				fail(field, "is a server setting (mode: server)")
			}
		}
		if ap, err := netip.ParseAddrPort(raw.Remote); err != nil || ap.Port() == 0 {
			fail("remote", "must be ip:port of the server, such as 192.0.2.1:1194, got %q", raw.Remote)
		} else {
			set.Remote = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		}
	case "server":
		set.Server = true
		if raw.Remote != "" {
			fail("remote", "is a client setting (mode: client)")
		}
		if raw.AcceptRoutes {
			fail("accept_routes", "is a client setting (mode: client)")
		}
		if ap, err := netip.ParseAddrPort(raw.Listen); err != nil || ap.Port() == 0 {
			fail("listen", "must be ip:port to listen on, such as 0.0.0.0:1194, got %q", raw.Listen)
		} else {
			set.Listen = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		}
		if pfx, err := netip.ParsePrefix(raw.Server); err != nil || !pfx.Addr().Is4() || pfx.Bits() > 29 {
			fail("server", "must be an IPv4 network of at least 8 addresses, such as 10.8.0.0/24, got %q", raw.Server)
		} else {
			set.Network = pfx.Masked()
		}
		for _, r := range raw.PushRoutes {
			pfx, err := netip.ParsePrefix(r)
			if err != nil {
				fail("push_routes", "%q is not a prefix such as 10.1.0.0/16", r)
				continue
			}
			set.PushRoutes = append(set.PushRoutes, pfx.Masked())
		}
		set.Ping, set.PingRestart = defaultPing, defaultPingRestart
		if raw.Keepalive != nil {
			if k := raw.Keepalive; len(k) != 2 || k[0] < 1 || k[1] < 2*k[0] || k[1] > 3600 {
				fail("keepalive", "must be [ping, ping-restart] in seconds, ping ≥ 1, ping-restart ≥ 2×ping and ≤ 3600, got %v", k)
			} else {
				set.Ping, set.PingRestart = time.Duration(k[0])*time.Second, time.Duration(k[1])*time.Second
			}
		}
		set.MaxClients = defaultMaxClients
		if raw.MaxClients != nil {
			if m := *raw.MaxClients; m < 1 || m > maxClients {
				fail("max_clients", "must be 1-%d, got %d", maxClients, m)
			} else {
				set.MaxClients = m
			}
		}
	default:
		fail("mode", "must be client or server, got %q", raw.Mode)
	}
	if raw.Compress != "" {
		fail("compress", "compression is not supported (OpenVPN 2.6 discourages it: VORACLE)")
	}
	if raw.Secret != "" {
		fail("secret", "static-key mode is not supported; use TLS mode (ca_file, cert_file, key_file)")
	}
	if raw.CAFile == "" {
		fail("ca_file", "is required (the CA that signed the peer's certificate)")
	} else if b, err := readFile(resolve(base, raw.CAFile), false); err != nil {
		fail("ca_file", "%v", err)
	} else {
		set.RootCAs = x509.NewCertPool()
		if !set.RootCAs.AppendCertsFromPEM(b) {
			fail("ca_file", "%s holds no PEM certificate", raw.CAFile)
		}
	}
	switch {
	case raw.CertFile == "":
		fail("cert_file", "is required (this end's certificate)")
	case raw.KeyFile == "":
		fail("key_file", "is required (this end's certificate key)")
	default:
		certPEM, err1 := readFile(resolve(base, raw.CertFile), false)
		keyPEM, err2 := readFile(resolve(base, raw.KeyFile), true)
		switch {
		case err1 != nil:
			fail("cert_file", "%v", err1)
		case err2 != nil:
			fail("key_file", "%v", err2)
		default:
			cert, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				fail("cert_file", "%s with %s: %v", raw.CertFile, raw.KeyFile, err)
			}
			set.Cert = cert
		}
	}
	if raw.TLSCryptFile == "" {
		fail("tls_crypt_file", "is required (openvpn --genkey tls-crypt); tls-auth and no wrapping are not supported")
	} else if b, err := readFile(resolve(base, raw.TLSCryptFile), true); err != nil {
		fail("tls_crypt_file", "%v", err)
	} else if k, err := parseStaticKey(b); err != nil {
		fail("tls_crypt_file", "%s: %v", raw.TLSCryptFile, err)
	} else {
		set.TLSCryptKey = k
	}
	set.DataCiphers = raw.DataCiphers
	if len(set.DataCiphers) == 0 {
		set.DataCiphers = []string{cipherAES256GCM, cipherChaCha}
	}
	for _, c := range set.DataCiphers {
		if !supportedCipher(c) {
			fail("data_ciphers", "%q is not supported; use AES-256-GCM and/or CHACHA20-POLY1305", c)
		}
	}
	switch raw.RemoteCertTLS {
	case "server":
		if set.Server {
			fail("remote_cert_tls", "is a client setting (a server requires client certificates for TLS client authentication)")
		}
		set.RemoteCertTLSServer = true
	case "":
	default:
		fail("remote_cert_tls", "must be server (or left out), got %q", raw.RemoteCertTLS)
	}
	if raw.MTU != nil {
		if m := *raw.MTU; m < minMTU || m > maxMTU {
			fail("mtu", "must be %d-%d bytes, got %d", minMTU, maxMTU, m)
		} else {
			set.MTU = m
		}
	}
	if raw.RenegSec < 0 || raw.RenegSec > 0 && raw.RenegSec < minRenegSec {
		fail("reneg_sec", "must be 0 (never) or at least %d seconds, got %d", minRenegSec, raw.RenegSec)
	} else {
		set.Reneg = time.Duration(raw.RenegSec) * time.Second
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return set, nil
}

func resolve(base, path string) string {
	if path == "" || filepath.IsAbs(path) || base == "" {
		return path
	}
	return filepath.Join(base, path)
}

// readFile reads at most keyFileMaxBytes of a regular file; a private one
// (a key) must not be accessible to group or others.
func readFile(path string, private bool) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); private && perm&0o077 != 0 {
		return nil, fmt.Errorf("%s is accessible to group or others (mode %04o); chmod 600 it", path, perm)
	}
	b, err := io.ReadAll(io.LimitReader(f, keyFileMaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(b) > keyFileMaxBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, keyFileMaxBytes)
	}
	return b, nil
}

// tlsConfig is the client's TLS configuration: OpenVPN checks the chain
// against its CA and, with remote-cert-tls server, the extended key usage;
// it does not check host names.
func (a *clientActor) tlsConfig() *tls.Config {
	set := a.set
	return &tls.Config{
		// Always present the certificate, as OpenVPN does, even when the
		// server's list of acceptable CAs does not name its issuer: the
		// server then refuses it with a verify error it logs.
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &set.Cert, nil },
		MinVersion:           tls.VersionTLS12,
		InsecureSkipVerify:   true, // replaced by VerifyPeerCertificate below
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("server sent no certificate")
			}
			certs := make([]*x509.Certificate, len(raw))
			for i, r := range raw {
				c, err := x509.ParseCertificate(r)
				if err != nil {
					return err
				}
				certs[i] = c
			}
			inter := x509.NewCertPool()
			for _, c := range certs[1:] {
				inter.AddCert(c)
			}
			usage := []x509.ExtKeyUsage{x509.ExtKeyUsageAny}
			if set.RemoteCertTLSServer {
				usage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
			}
			_, err := certs[0].Verify(x509.VerifyOptions{Roots: set.RootCAs, Intermediates: inter, KeyUsages: usage})
			return err
		},
	}
}

// newActor returns the actor of one instance; it opens nothing.
func newActor(inst protocols.Instance) actor.Actor {
	set, ok := inst.Settings.(Settings)
	if !ok {
		panic(fmt.Sprintf("openvpn %s: settings of type %T, want openvpn.Settings", inst.Name, inst.Settings))
	}
	if set.Server {
		return newServerActor(inst.Name, set, inst.Env)
	}
	return newClientActor(inst.Name, set, inst.Env)
}
