// Package openconnect is the AnyConnect-compatible SSL VPN protocol spoken
// by ocserv (server) and openconnect (client): an XML login over HTTPS, a
// CSTP tunnel over TLS and, when it comes up, DTLS 1.2 with a pre-shared key
// exported from the TLS session (PSK-NEGOTIATE).
//
//	protocols:
//	  - name: office
//	    type: openconnect
//	    settings:
//	      mode: client
//	      server: https://vpn.example.net:443
//	      username: alice
//	      password_file: /etc/switchyard/office.pw   # mode 0600
//	      server_pin: pin-sha256:…                     # or server_ca_file
//	      dtls: true
//	      mtu: 1406
//	      accept_routes: true
//
// The wire format lives in the cstp sub-package. See README.md for the
// settings, counters, drop reasons and limits.
package openconnect

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/asynkron/protoactor-go/actor"

	"switchyard/config"
	"switchyard/protocols"
	"switchyard/protocols/openconnect/cstp"
)

func init() {
	protocols.Register(protocols.Info{Name: "openconnect", Parse: parse, New: newActor})
}

// Mode says which side of the SSL VPN an instance is.
type Mode string

const (
	ModeClient Mode = "client"
	ModeServer Mode = "server"
)

// Settings is a parsed and validated openconnect settings block.
type Settings struct {
	Mode   Mode
	Client ClientSettings // when Mode is client
	Server ServerSettings // when Mode is server
}

// ClientSettings are the settings of a client instance.
type ClientSettings struct {
	// URL is the gateway's https URL; Host is its host:port.
	URL  *url.URL
	Host string
	// Username and Password log in with a form (ocserv plain auth).
	Username string
	Password string
	// Group is the auth group to pick when the server offers a choice.
	Group string
	// Cert, if set, is the client certificate for certificate login.
	Cert *tls.Certificate
	// RootCAs verifies the server (server_ca_file); nil with Pin set.
	RootCAs *x509.CertPool
	// Pin is the SHA-256 of the server certificate's SubjectPublicKeyInfo
	// (server_pin); zero when RootCAs (or the system roots) verify.
	Pin    [32]byte
	HasPin bool
	// DTLS enables the DTLS channel (default true).
	DTLS bool
	// MTU is the tunnel MTU asked for.
	MTU int
	// AcceptRoutes says the node should install the routes the server
	// pushes (split-include) towards this instance.
	AcceptRoutes bool
}

// rawSettings is the settings block as written in the config.
type rawSettings struct {
	// Mode is "client" (default) or "server".
	Mode string `yaml:"mode"`

	// Server is the gateway URL, https://host[:port][/path] (client).
	Server string `yaml:"server"`
	// Username and PasswordFile: form login (client).
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	// Group is the auth group to choose (client, optional).
	Group string `yaml:"group"`
	// ServerCAFile or ServerPin verify the gateway (client).
	ServerCAFile string `yaml:"server_ca_file"`
	ServerPin    string `yaml:"server_pin"`
	// DTLS enables DTLS (default true).
	DTLS *bool `yaml:"dtls"`
	// MTU is the tunnel MTU (default 1406).
	MTU *int `yaml:"mtu"`
	// AcceptRoutes installs pushed routes (client, default false).
	AcceptRoutes bool `yaml:"accept_routes"`

	// CertFile and KeyFile: the client certificate (client) or the server's
	// certificate (server).
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`

	// Server mode.
	Listen       string           `yaml:"listen"`
	UsersFile    string           `yaml:"users_file"`
	ClientCAFile string           `yaml:"client_ca_file"`
	Pool         string           `yaml:"pool"`
	Routes       []string         `yaml:"routes"`
	DNS          []string         `yaml:"dns"`
	DPD          *config.Duration `yaml:"dpd"`
	Keepalive    *config.Duration `yaml:"keepalive"`
}

// parse decodes a settings block strictly and validates it. It opens
// nothing but the files it names, which it reads (a password file others
// can read, a key that does not match its certificate: `switchyard check`
// must catch those).
func parse(s config.Settings) (any, error) {
	var raw rawSettings
	if err := s.Decode(&raw); err != nil {
		return nil, err
	}
	var errs config.Errors
	fail := func(field, format string, args ...any) { errs = append(errs, s.Errorf(field, format, args...)) }
	base := filepath.Dir(s.Pos().File)
	if s.Pos().File == "" {
		base = ""
	}

	set := Settings{Mode: Mode(raw.Mode)}
	if raw.Mode == "" {
		set.Mode = ModeClient
	}
	switch set.Mode {
	case ModeClient:
		notFor := func(field string, given bool) {
			if given {
				fail(field, "is a server setting (mode: server)")
			}
		}
		notFor("listen", raw.Listen != "")
		notFor("users_file", raw.UsersFile != "")
		notFor("client_ca_file", raw.ClientCAFile != "")
		notFor("pool", raw.Pool != "")
		notFor("routes", raw.Routes != nil)
		notFor("dns", raw.DNS != nil)
		notFor("dpd", raw.DPD != nil)
		notFor("keepalive", raw.Keepalive != nil)
		set.Client = parseClient(s, base, &raw, fail)
	case ModeServer:
		notFor := func(field string, given bool) {
			if given {
				fail(field, "is a client setting (mode: client)")
			}
		}
		notFor("server", raw.Server != "")
		notFor("username", raw.Username != "")
		notFor("password_file", raw.PasswordFile != "")
		notFor("group", raw.Group != "")
		notFor("server_ca_file", raw.ServerCAFile != "")
		notFor("server_pin", raw.ServerPin != "")
		notFor("accept_routes", raw.AcceptRoutes)
		set.Server = parseServer(s, base, &raw, fail)
	default:
		fail("mode", "must be client or server, got %q", raw.Mode)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return set, nil
}

type failFunc func(field, format string, args ...any)

func parseClient(s config.Settings, base string, raw *rawSettings, fail failFunc) ClientSettings {
	c := ClientSettings{DTLS: true, MTU: defaultMTU, AcceptRoutes: raw.AcceptRoutes, Group: raw.Group, Username: raw.Username}
	if raw.DTLS != nil {
		c.DTLS = *raw.DTLS
	}
	if raw.MTU != nil {
		if m := *raw.MTU; m < minMTU || m > maxMTU {
			fail("mtu", "must be %d-%d bytes, got %d", minMTU, maxMTU, m)
		} else {
			c.MTU = m
		}
	}

	switch u, err := url.Parse(raw.Server); {
	case raw.Server == "":
		fail("server", "is required (https://host[:port])")
	case err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.Fragment != "":
		fail("server", "must be an https URL such as https://vpn.example.net:443, got %q", raw.Server)
	default:
		host := u.Host
		if u.Port() == "" {
			host = net.JoinHostPort(u.Hostname(), "443")
		} else if p, err := strconv.Atoi(u.Port()); err != nil || p < 1 || p > 65535 {
			fail("server", "port must be 1-65535, got %q", u.Port())
		}
		if u.Path == "" {
			u.Path = "/"
		}
		c.URL, c.Host = u, host
	}

	login := 0
	if raw.Username != "" || raw.PasswordFile != "" {
		login++
		switch {
		case raw.Username == "":
			fail("username", "is required with password_file")
		case raw.PasswordFile == "":
			fail("password_file", "is required with username")
		default:
			if strings.ContainsFunc(raw.Username, func(r rune) bool { return r < ' ' }) {
				fail("username", "must not contain control characters")
			}
			pw, err := readSecretFile(base, raw.PasswordFile)
			if err != nil {
				fail("password_file", "%v", err)
			}
			c.Password = pw
		}
	}
	if raw.CertFile != "" || raw.KeyFile != "" {
		login++
		if cert, ok := loadKeyPair(base, raw.CertFile, raw.KeyFile, fail); ok {
			c.Cert = &cert
		}
	}
	if login == 0 {
		fail("username", "a login is required: username with password_file, or cert_file with key_file")
	}

	switch {
	case raw.ServerCAFile != "" && raw.ServerPin != "":
		fail("server_pin", "give server_ca_file or server_pin, not both")
	case raw.ServerCAFile != "":
		pool, err := readCAFile(base, raw.ServerCAFile)
		if err != nil {
			fail("server_ca_file", "%v", err)
		}
		c.RootCAs = pool
	case raw.ServerPin != "":
		pin, err := ParsePin(raw.ServerPin)
		if err != nil {
			fail("server_pin", "%v", err)
		}
		c.Pin, c.HasPin = pin, true
	}
	return c
}

// ParsePin decodes a server pin as openconnect writes it:
// pin-sha256:<base64 of the SHA-256 of the certificate's SubjectPublicKeyInfo>.
func ParsePin(s string) ([32]byte, error) {
	var pin [32]byte
	b64, ok := strings.CutPrefix(strings.TrimSpace(s), "pin-sha256:")
	if !ok {
		return pin, fmt.Errorf("must be pin-sha256:<base64>, got %q", s)
	}
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(b) != len(pin) {
		return pin, fmt.Errorf("must be pin-sha256: and 32 bytes in base64 (44 characters), got %q", s)
	}
	copy(pin[:], b)
	return pin, nil
}

// PinOf returns the pin of a certificate, as ParsePin decodes it.
func PinOf(cert *x509.Certificate) [32]byte { return sha256.Sum256(cert.RawSubjectPublicKeyInfo) }

// FormatPin writes a pin as openconnect's --servercert takes it.
func FormatPin(pin [32]byte) string {
	return "pin-sha256:" + base64.StdEncoding.EncodeToString(pin[:])
}

func resolve(base, path string) string {
	if path == "" || filepath.IsAbs(path) || base == "" {
		return path
	}
	return filepath.Join(base, path)
}

// openPrivate opens a file that must be a regular file not accessible to
// group or others, and reads at most limit bytes of it.
func readPrivate(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, unwrapPathError(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, unwrapPathError(err))
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%s is accessible to group or others (mode %04o); chmod 600 it", path, perm)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, unwrapPathError(err))
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, limit)
	}
	return b, nil
}

// readSecretFile reads a password: the file's first line, without its line
// break (spaces are part of the password).
func readSecretFile(base, path string) (string, error) {
	path = resolve(base, path)
	b, err := readPrivate(path, secretFileMaxBytes)
	if err != nil {
		return "", err
	}
	pw, _, _ := strings.Cut(string(b), "\n")
	pw = strings.TrimSuffix(pw, "\r")
	if pw == "" {
		return "", fmt.Errorf("%s is empty (the password is its first line)", path)
	}
	return pw, nil
}

func readPublic(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, unwrapPathError(err))
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, usersFileMaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, unwrapPathError(err))
	}
	if len(b) > usersFileMaxBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, usersFileMaxBytes)
	}
	return b, nil
}

// loadKeyPair reads a certificate (chain) and its private key; the key
// file must not be accessible to group or others.
func loadKeyPair(base, certFile, keyFile string, fail failFunc) (tls.Certificate, bool) {
	if certFile == "" {
		fail("cert_file", "is required with key_file")
		return tls.Certificate{}, false
	}
	if keyFile == "" {
		fail("key_file", "is required with cert_file")
		return tls.Certificate{}, false
	}
	certPEM, err := readPublic(resolve(base, certFile))
	if err != nil {
		fail("cert_file", "%v", err)
		return tls.Certificate{}, false
	}
	keyPEM, err := readPrivate(resolve(base, keyFile), secretFileMaxBytes*4)
	if err != nil {
		fail("key_file", "%v", err)
		return tls.Certificate{}, false
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		fail("cert_file", "%s with %s: %v", certFile, keyFile, err)
		return tls.Certificate{}, false
	}
	return cert, true
}

func readCAFile(base, path string) (*x509.CertPool, error) {
	path = resolve(base, path)
	b, err := readPublic(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// newActor returns the actor of one instance. It opens nothing: the
// session starts on *actor.Started.
func newActor(inst protocols.Instance) actor.Actor {
	set, ok := inst.Settings.(Settings)
	if !ok {
		panic(fmt.Sprintf("openconnect %s: settings of type %T, want openconnect.Settings", inst.Name, inst.Settings))
	}
	if set.Mode == ModeServer {
		return newServerActor(inst.Name, set.Server, inst.Env)
	}
	return newClientActor(inst.Name, set.Client, inst.Env)
}

// Endpoints implements protocols.Underlay: a client's gateway when the
// server URL names it by address (a host name is resolved at connect time
// and is not known here), TCP and UDP on the same port.
func (s Settings) Endpoints() []netip.AddrPort {
	if s.Mode != ModeClient || s.Client.Host == "" {
		return nil
	}
	ap, err := netip.ParseAddrPort(s.Client.Host)
	if err != nil {
		return nil
	}
	return []netip.AddrPort{netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}
}

// ListenPorts implements protocols.Underlay: a server's TCP and UDP port.
func (s Settings) ListenPorts() []uint16 {
	if s.Mode != ModeServer || s.Server.Listen.Port() == 0 {
		return nil
	}
	return []uint16{s.Server.Listen.Port()}
}

// session is what the client reports to the node (protocols.Session) for
// tunnel t: the addresses the gateway assigned and, with accept_routes,
// the split-include routes it pushed.
func (c ClientSettings) session(t *cstp.Tunnel) protocols.Session {
	var s protocols.Session
	for _, a := range []netip.Prefix{t.Address, t.Address6} {
		if a.IsValid() {
			s.Addrs = append(s.Addrs, a)
		}
	}
	if c.AcceptRoutes {
		s.Routes = append(s.Routes, t.SplitInclude...)
	}
	return s
}
