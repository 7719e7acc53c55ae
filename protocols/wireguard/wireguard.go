// Package wireguard is the WireGuard protocol: packets routed to an instance
// are encrypted by golang.zx2c4.com/wireguard/device and exchanged with
// WireGuard peers (wireguard-go, the Linux kernel module, other Switchyards).
//
//	protocols:
//	  - name: office
//	    type: wireguard
//	    settings:
//	      private_key_file: /etc/switchyard/office.key  # or private_key: <base64>
//	      listen_port: 51820                            # optional
//	      peers:
//	        - public_key: <base64>
//	          endpoint: 10.91.0.2:51820                 # optional
//	          allowed_ips: [10.90.0.0/24, "fd90::/64"]
//	          persistent_keepalive: 25s                 # optional
//	          preshared_key_file: /etc/switchyard/psk   # optional
//
// The device is given a tun.Device of ours that the actor feeds (tun.go) and
// a conn.Bind that refuses datagrams that are not WireGuard messages
// (bind.go). See README.md for the counters, drop reasons and limits.
package wireguard

import (
	"crypto/ecdh"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"switchyard/config"
	"switchyard/protocols"
)

func init() {
	protocols.Register(protocols.Info{Name: "wireguard", Parse: parse, New: newActor})
}

// Key is a Curve25519 key or a preshared key, 32 bytes.
type Key [32]byte

// String returns the key in base64, as `wg` prints it.
func (k Key) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

// IsZero reports whether the key is all zeros (absent).
func (k Key) IsZero() bool { return k == Key{} }

// ParseKey decodes a base64 key as `wg genkey` prints it.
func ParseKey(s string) (Key, error) {
	var k Key
	s = strings.TrimSpace(s)
	if s == "" {
		return k, errors.New("is empty")
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return k, errors.New("is not valid base64 (a key is 44 characters as `wg genkey` prints it)")
	}
	if len(b) != len(k) {
		return k, fmt.Errorf("decodes to %d bytes, want 32", len(b))
	}
	copy(k[:], b)
	return k, nil
}

// PublicKey returns the public key of a private key (the same as
// `wg pubkey`: X25519 clamps the scalar).
func PublicKey(private Key) Key {
	pk, err := ecdh.X25519().NewPrivateKey(private[:])
	if err != nil {
		panic(err) // only for a wrong length, impossible for a Key
	}
	var pub Key
	copy(pub[:], pk.PublicKey().Bytes())
	return pub
}

// Settings is a parsed and validated wireguard settings block: what Parse
// returns and what the actor is created with.
type Settings struct {
	// PrivateKey is the instance's static private key.
	PrivateKey Key
	// ListenPort is the UDP port, bound on every address of both families;
	// 0 lets the kernel choose one.
	ListenPort uint16
	// Peers are the peers, in config order.
	Peers []Peer
}

// Ports implements config.PortBinder: listen_port, bound on every address
// of both families (none when the kernel chooses it).
func (s Settings) Ports() []config.Port {
	return []config.Port{{Network: "udp", Port: s.ListenPort, Field: "listen_port"}}
}

// Peer is one WireGuard peer.
type Peer struct {
	PublicKey    Key
	PresharedKey Key            // zero: none
	Endpoint     netip.AddrPort // invalid: none (the peer must connect first)
	AllowedIPs   []netip.Prefix // masked
	// PersistentKeepalive is the keepalive interval, whole seconds; 0 is off.
	PersistentKeepalive time.Duration
}

// Endpoints implements protocols.Underlay: the peers' configured
// endpoints.
func (s Settings) Endpoints() []netip.AddrPort {
	var out []netip.AddrPort
	for _, p := range s.Peers {
		if p.Endpoint.IsValid() {
			out = append(out, p.Endpoint)
		}
	}
	return out
}

// ListenPorts implements protocols.Underlay: listen_port, unless the kernel
// chooses it.
func (s Settings) ListenPorts() []uint16 {
	if s.ListenPort == 0 {
		return nil
	}
	return []uint16{s.ListenPort}
}

// rawSettings is the settings block as written in the config.
type rawSettings struct {
	// PrivateKey is the private key in base64. Exactly one of PrivateKey and
	// PrivateKeyFile is required.
	PrivateKey string `yaml:"private_key"`
	// PrivateKeyFile is a file holding the private key in base64; it must
	// not be accessible to group or others (mode 0600 or stricter).
	PrivateKeyFile string `yaml:"private_key_file"`
	// ListenPort is the UDP port, 1-65535; absent lets the kernel choose.
	ListenPort *int `yaml:"listen_port"`
	// Peers are the peers; at least one.
	Peers []rawPeer `yaml:"peers"`
}

type rawPeer struct {
	// PublicKey is the peer's public key in base64 (required).
	PublicKey string `yaml:"public_key"`
	// Endpoint is the peer's ip:port (optional for a responder).
	Endpoint string `yaml:"endpoint"`
	// AllowedIPs are the prefixes routed to and accepted from the peer.
	AllowedIPs []string `yaml:"allowed_ips"`
	// PersistentKeepalive is the keepalive interval, whole seconds with a
	// unit ("25s"); absent or 0 is off.
	PersistentKeepalive config.Duration `yaml:"persistent_keepalive"`
	// PresharedKey / PresharedKeyFile: an optional preshared key, at most
	// one of the two.
	PresharedKey     string `yaml:"preshared_key"`
	PresharedKeyFile string `yaml:"preshared_key_file"`
}

// parse decodes a settings block strictly and validates it. It opens
// nothing but the key files, which it reads (a key file that is missing,
// malformed or readable by others is what `switchyard check` must catch).
func parse(s config.Settings) (any, error) {
	var raw rawSettings
	if err := s.Decode(&raw); err != nil {
		return nil, err
	}
	var errs config.Errors
	fail := func(field, format string, args ...any) { errs = append(errs, s.Errorf(field, format, args...)) }
	base := filepath.Dir(s.Pos().File)

	var set Settings
	var ok bool
	set.PrivateKey, ok = keyFromEither(s, base, "private_key", raw.PrivateKey, raw.PrivateKeyFile, true, &errs)
	if ok && set.PrivateKey.IsZero() {
		fail("private_key", "is all zeros")
		ok = false
	}
	var ownPublic Key
	if ok {
		ownPublic = PublicKey(set.PrivateKey)
	}

	if raw.ListenPort != nil {
		if p := *raw.ListenPort; p < 1 || p > 65535 {
			fail("listen_port", "must be 1-65535, got %d", p)
		} else {
			set.ListenPort = uint16(p)
		}
	}

	if len(raw.Peers) == 0 {
		fail("peers", "at least one peer is required")
	}
	seenKey := map[Key]int{}
	seenPrefix := map[netip.Prefix]int{}
	for i, rp := range raw.Peers {
		at := func(field string) string { return fmt.Sprintf("peers[%d].%s", i, field) }
		var p Peer
		if rp.PublicKey == "" {
			fail(at("public_key"), "is required")
		} else if k, err := ParseKey(rp.PublicKey); err != nil {
			fail(at("public_key"), "%v", err)
		} else {
			p.PublicKey = k
			switch first, dup := seenKey[k]; {
			case dup:
				fail(at("public_key"), "duplicate: peers[%d] has the same key", first)
			case ok && k == ownPublic:
				fail(at("public_key"), "is this instance's own public key")
			default:
				seenKey[k] = i
			}
		}
		p.PresharedKey, _ = keyFromEither(s, base, at("preshared_key"), rp.PresharedKey, rp.PresharedKeyFile, false, &errs)

		if rp.Endpoint != "" {
			ep, msg := parseEndpoint(rp.Endpoint)
			if msg != "" {
				fail(at("endpoint"), "%s", msg)
			}
			p.Endpoint = ep
		}

		if len(rp.AllowedIPs) == 0 {
			fail(at("allowed_ips"), "at least one prefix is required")
		}
		for j, text := range rp.AllowedIPs {
			field := fmt.Sprintf("%s[%d]", at("allowed_ips"), j)
			pfx, err := netip.ParsePrefix(strings.TrimSpace(text))
			if err != nil || pfx.Addr().Zone() != "" {
				fail(field, "must be a prefix such as 10.90.0.0/24 or fd90::/64, got %q", text)
				continue
			}
			if pfx.Addr().Is4In6() {
				fail(field, "write IPv4 prefixes in IPv4 form, got %q", text)
				continue
			}
			pfx = pfx.Masked()
			if first, dup := seenPrefix[pfx]; dup {
				if first == i {
					fail(field, "duplicate prefix %s", pfx)
				} else {
					fail(field, "%s is already allowed for peers[%d]", pfx, first)
				}
				continue
			}
			seenPrefix[pfx] = i
			p.AllowedIPs = append(p.AllowedIPs, pfx)
		}

		ka := time.Duration(rp.PersistentKeepalive)
		switch {
		case ka%time.Second != 0:
			fail(at("persistent_keepalive"), "must be whole seconds, got %v", ka)
		case ka > maxKeepalive:
			fail(at("persistent_keepalive"), "must be at most %v, got %v", maxKeepalive, ka)
		default:
			p.PersistentKeepalive = ka
		}
		set.Peers = append(set.Peers, p)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return set, nil
}

// keyFromEither reads a key given inline (field) or in a file (field+"_file").
// It reports whether a key was found; problems are appended to errs.
func keyFromEither(s config.Settings, base, field, inline, file string, required bool, errs *config.Errors) (Key, bool) {
	fileField := field + "_file"
	switch {
	case inline != "" && file != "":
		*errs = append(*errs, s.Errorf(fileField, "give %s or %s, not both", lastPart(field), lastPart(fileField)))
		return Key{}, false
	case inline != "":
		k, err := ParseKey(inline)
		if err != nil {
			*errs = append(*errs, s.Errorf(field, "%v", err))
			return Key{}, false
		}
		return k, true
	case file != "":
		k, err := readKeyFile(base, file)
		if err != nil {
			*errs = append(*errs, s.Errorf(fileField, "%v", err))
			return Key{}, false
		}
		return k, true
	case required:
		*errs = append(*errs, s.Errorf(field, "is required (give %s or %s)", lastPart(field), lastPart(fileField)))
	}
	return Key{}, false
}

func lastPart(field string) string {
	if i := strings.LastIndexByte(field, '.'); i >= 0 {
		return field[i+1:]
	}
	return field
}

// readKeyFile reads a base64 key from path (relative paths are relative to
// the config file's directory). The file must not be accessible to group or
// others: a key others can read is no secret.
func readKeyFile(base, path string) (Key, error) {
	if !filepath.IsAbs(path) && base != "" {
		path = filepath.Join(base, path)
	}
	f, fi, err := config.OpenRegularFile(path) // a FIFO must not block the open
	if err != nil {
		return Key{}, err
	}
	defer f.Close()
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return Key{}, fmt.Errorf("%s is readable by others (mode %04o); chmod 600 it", path, perm)
	}
	b, err := io.ReadAll(io.LimitReader(f, keyFileMaxBytes+1))
	if err != nil {
		return Key{}, fmt.Errorf("%s: %w", path, unwrapPathError(err))
	}
	if len(b) > keyFileMaxBytes {
		return Key{}, fmt.Errorf("%s: larger than %d bytes, not a key file", path, keyFileMaxBytes)
	}
	k, err := ParseKey(string(b))
	if err != nil {
		return Key{}, fmt.Errorf("%s: key %v", path, err)
	}
	return k, nil
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// parseEndpoint parses a peer endpoint; it returns the reason as a message
// when the text is not an ip:port.
func parseEndpoint(text string) (netip.AddrPort, string) {
	ap, err := netip.ParseAddrPort(text)
	if err != nil {
		if i := strings.LastIndexByte(text, ':'); i >= 0 {
			if p, perr := strconv.Atoi(text[i+1:]); perr == nil && (p < 1 || p > 65535) {
				return netip.AddrPort{}, fmt.Sprintf("port must be 1-65535, got %d", p)
			}
		}
		return netip.AddrPort{}, fmt.Sprintf("must be ip:port (host names are not resolved), got %q", text)
	}
	switch {
	case ap.Port() == 0:
		return netip.AddrPort{}, "port must be 1-65535, got 0"
	case ap.Addr().Zone() != "":
		return netip.AddrPort{}, fmt.Sprintf("IPv6 zones are not supported, got %q", text)
	case ap.Addr().IsUnspecified() || ap.Addr().IsMulticast():
		return netip.AddrPort{}, fmt.Sprintf("must be a unicast address, got %q", text)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), ""
}

// newActor returns the actor of one instance. It opens nothing: the device
// is created on *actor.Started.
func newActor(inst protocols.Instance) actor.Actor {
	set, ok := inst.Settings.(Settings)
	if !ok {
		panic(fmt.Sprintf("wireguard %s: settings of type %T, want wireguard.Settings", inst.Name, inst.Settings))
	}
	return newWGActor(inst.Name, set, inst.Env)
}
