// Package ipsec is the `ipsec` protocol: IKEv2 (RFC 7296) and ESP in UDP
// (RFC 4303, RFC 3948), net-to-net the way strongSwan peers meet, written
// from the RFCs with Go's standard crypto. Settings use strongSwan's words:
//
//	protocols:
//	  - name: site-b
//	    type: ipsec
//	    settings:
//	      local_addrs: 10.93.0.2        # the address IKE and ESP leave from
//	      remote_addrs: 10.93.0.1       # the peer
//	      local_id: b                   # default: local_addrs
//	      remote_id: a                  # default: remote_addrs
//	      auth: psk                     # psk (pubkey: not yet)
//	      psk_file: /etc/switchyard/site-b.psk   # mode 0600; first line, or 0x<hex>
//	      proposals: [aes256gcm16-prfsha256-x25519, aes128gcm16-prfsha256-ecp256]
//	      esp_proposals: [aes256gcm16, aes128gcm16, chacha20poly1305]
//	      local_ts: [10.1.0.0/24]
//	      remote_ts: [10.2.0.0/24]      # become routes to this instance
//	      rekey_time: 4h                # IKE SA: re-established after this
//	      child_rekey_time: 1h          # CHILD SA: re-established after this
//	      dpd_delay: 30s                # liveness check when the peer is quiet
//	      keepalive: 20s                # NAT-T keepalives on port 4500
//
// The instance initiates (mode: initiator, the default). UDP encapsulation
// is always used, the way strongSwan's `encap = yes` forces it: IKE_SA_INIT
// goes to port 500 (local_port/remote_port), everything after it to 4500
// with the non-ESP marker, and ESP in UDP on 4500. See README.md.
package ipsec

import (
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"switchyard/config"
	"switchyard/protocols"
	"switchyard/protocols/ipsec/ike"
)

func init() {
	protocols.Register(protocols.Info{Name: "ipsec", Parse: parse, New: newActor})
}

// IKEProposal is one IKE proposal: an AEAD, a PRF and a DH group.
type IKEProposal struct {
	Encr   uint16 // ike.ENCR_AES_GCM_16
	KeyLen uint16 // bits
	PRF    uint16
	DH     uint16
}

// ESPProposal is one ESP proposal: an AEAD and whether 64-bit sequence
// numbers are offered.
type ESPProposal struct {
	Encr   uint16
	KeyLen uint16 // bits (256 for ChaCha20-Poly1305, not sent)
	ESN    []uint16
}

// Settings is a parsed and validated ipsec settings block.
type Settings struct {
	Mode         string // "initiator" or "responder"
	Local        netip.Addr
	Remote       netip.Addr
	LocalPort    uint16 // IKE_SA_INIT port, 500 by default
	RemotePort   uint16
	NATTPort     uint16 // local NAT-T port (4500): IKE after IKE_SA_INIT, and ESP
	RemoteNATT   uint16 // the peer's NAT-T port: always 4500 (RFC 3948)
	LocalID      Identity
	RemoteID     Identity
	PSK          []byte       // auth: psk
	Pubkey       *pubkeyAuth  // auth: pubkey (certificates, RFC 7427)
	Vips         []netip.Addr // initiator: virtual IPs asked for (0.0.0.0: any)
	Pool         netip.Prefix // responder: where the initiator's virtual IP comes from
	Proposals    []IKEProposal
	ESPProposals []ESPProposal
	LocalTS      []netip.Prefix
	RemoteTS     []netip.Prefix
	RekeyTime    time.Duration
	ChildRekey   time.Duration
	DPDDelay     time.Duration
	Keepalive    time.Duration
}

// Endpoints implements protocols.Underlay.
func (s Settings) Endpoints() []netip.AddrPort {
	return []netip.AddrPort{netip.AddrPortFrom(s.Remote, s.RemotePort), netip.AddrPortFrom(s.Remote, s.RemoteNATT)}
}

// ListenPorts implements protocols.Underlay.
func (s Settings) ListenPorts() []uint16 { return []uint16{s.LocalPort, s.NATTPort} }

// Ports implements config.PortBinder.
func (s Settings) Ports() []config.Port {
	return []config.Port{{Network: "udp", Port: s.LocalPort, Field: "local_port"},
		{Network: "udp", Port: s.NATTPort, Field: "natt_port"}}
}

// Identity is an IKE identity (RFC 7296 §3.5), read the way strongSwan
// reads one: an IP address, user@host (RFC822), @#hex (key ID), @fqdn or
// anything else (FQDN).
type Identity struct {
	Type uint8
	Data []byte
}

func (id Identity) String() string {
	switch id.Type {
	case ike.IDIPv4, ike.IDIPv6:
		a, _ := netip.AddrFromSlice(id.Data)
		return a.String()
	case ike.IDKeyID:
		return "@#" + hex.EncodeToString(id.Data)
	}
	return string(id.Data)
}

// Equal reports whether two identities are the same.
func (id Identity) Equal(o Identity) bool {
	return id.Type == o.Type && string(id.Data) == string(o.Data)
}

// ParseIdentity reads an identity in strongSwan's notation.
func ParseIdentity(s string) Identity {
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Is4() {
			return Identity{ike.IDIPv4, a.AsSlice()}
		}
		return Identity{ike.IDIPv6, a.AsSlice()}
	}
	if strings.HasPrefix(s, "@#") {
		if b, err := hex.DecodeString(s[2:]); err == nil {
			return Identity{ike.IDKeyID, b}
		}
	}
	if strings.HasPrefix(s, "@") {
		return Identity{ike.IDFQDN, []byte(s[1:])}
	}
	if strings.Contains(s, "@") {
		return Identity{ike.IDEmail, []byte(s)}
	}
	return Identity{ike.IDFQDN, []byte(s)}
}

type rawSettings struct {
	Mode           string           `yaml:"mode"`
	LocalAddrs     string           `yaml:"local_addrs"`
	RemoteAddrs    string           `yaml:"remote_addrs"`
	LocalPort      *int             `yaml:"local_port"`
	RemotePort     *int             `yaml:"remote_port"`
	NATTPort       *int             `yaml:"natt_port"`
	LocalID        string           `yaml:"local_id"`
	RemoteID       string           `yaml:"remote_id"`
	Auth           string           `yaml:"auth"`
	PSKFile        string           `yaml:"psk_file"`
	CertFile       string           `yaml:"cert_file"`
	KeyFile        string           `yaml:"key_file"`
	CAFile         string           `yaml:"ca_file"`
	Vips           []string         `yaml:"vips"`
	Pool           string           `yaml:"pool"`
	Proposals      []string         `yaml:"proposals"`
	ESPProposals   []string         `yaml:"esp_proposals"`
	LocalTS        []string         `yaml:"local_ts"`
	RemoteTS       []string         `yaml:"remote_ts"`
	RekeyTime      *config.Duration `yaml:"rekey_time"`
	ChildRekeyTime *config.Duration `yaml:"child_rekey_time"`
	DPDDelay       *config.Duration `yaml:"dpd_delay"`
	Keepalive      *config.Duration `yaml:"keepalive"`
}

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
	set := Settings{Mode: raw.Mode, LocalPort: 500, RemotePort: 500, NATTPort: 4500, RemoteNATT: 4500,
		RekeyTime: defaultRekeyTime, ChildRekey: defaultChildRekeyTime,
		DPDDelay: defaultDPDDelay, Keepalive: defaultKeepalive}
	switch set.Mode {
	case "":
		set.Mode = "initiator"
	case "initiator", "responder":
	default:
		fail("mode", "must be initiator or responder, got %q", raw.Mode)
	}
	addr := func(field, text string) netip.Addr {
		if text == "" {
			fail(field, "is required (one IP address)")
			return netip.Addr{}
		}
		a, err := netip.ParseAddr(strings.TrimSpace(text))
		if err != nil || a.Zone() != "" || a.IsUnspecified() || a.IsMulticast() {
			fail(field, "must be one unicast IP address, got %q", text)
			return netip.Addr{}
		}
		return a.Unmap()
	}
	set.Local = addr("local_addrs", raw.LocalAddrs)
	set.Remote = addr("remote_addrs", raw.RemoteAddrs)
	if set.Local.IsValid() && set.Remote.IsValid() && set.Local.Is4() != set.Remote.Is4() {
		fail("remote_addrs", "must be the address family of local_addrs")
	}
	port := func(field string, p *int, dst *uint16) {
		if p == nil {
			return
		}
		if *p < 1 || *p > 65535 {
			fail(field, "must be 1-65535, got %d", *p)
			return
		}
		*dst = uint16(*p)
	}
	port("local_port", raw.LocalPort, &set.LocalPort)
	port("remote_port", raw.RemotePort, &set.RemotePort)
	port("natt_port", raw.NATTPort, &set.NATTPort)
	if set.LocalPort == set.NATTPort {
		fail("natt_port", "must differ from local_port (%d)", set.LocalPort)
	}
	if raw.LocalID != "" {
		set.LocalID = ParseIdentity(raw.LocalID)
	} else if set.Local.IsValid() {
		set.LocalID = ParseIdentity(set.Local.String())
	}
	if raw.RemoteID != "" {
		set.RemoteID = ParseIdentity(raw.RemoteID)
	} else if set.Remote.IsValid() {
		set.RemoteID = ParseIdentity(set.Remote.String())
	}
	switch raw.Auth {
	case "", "psk":
		if raw.PSKFile == "" {
			fail("psk_file", "is required with auth: psk")
		} else if psk, err := readPSK(resolve(base, raw.PSKFile)); err != nil {
			fail("psk_file", "%v", err)
		} else {
			set.PSK = psk
		}
	case "pubkey":
		switch {
		case raw.CertFile == "":
			fail("cert_file", "is required with auth: pubkey")
		case raw.KeyFile == "":
			fail("key_file", "is required with auth: pubkey")
		case raw.CAFile == "":
			fail("ca_file", "is required with auth: pubkey (the CA the peer's certificate must chain to)")
		default:
			pk, err := loadPubkey(resolve(base, raw.CertFile), resolve(base, raw.KeyFile), resolve(base, raw.CAFile))
			if err != nil {
				field, msg, _ := strings.Cut(err.Error(), ": ")
				fail(field, "%s", msg)
			} else {
				set.Pubkey = pk
			}
		}
	default:
		fail("auth", "must be psk or pubkey, got %q", raw.Auth)
	}
	if raw.Auth != "pubkey" {
		for _, f := range []struct{ name, v string }{{"cert_file", raw.CertFile}, {"key_file", raw.KeyFile}, {"ca_file", raw.CAFile}} {
			if f.v != "" {
				fail(f.name, "is for auth: pubkey")
			}
		}
	}
	for i, v := range raw.Vips {
		a, err := netip.ParseAddr(strings.TrimSpace(v))
		if err != nil || !a.Is4() {
			fail(fmt.Sprintf("vips[%d]", i), "must be an IPv4 address (0.0.0.0: any), got %q", v)
			continue
		}
		set.Vips = append(set.Vips, a)
	}
	if len(set.Vips) > 0 && set.Mode != "initiator" {
		fail("vips", "is for mode: initiator")
	}
	if raw.Pool != "" {
		p, err := netip.ParsePrefix(strings.TrimSpace(raw.Pool))
		switch {
		case err != nil || !p.Addr().Is4() || p.Bits() > 30:
			fail("pool", "must be an IPv4 prefix of at least 4 addresses, such as 10.3.0.0/24, got %q", raw.Pool)
		case set.Mode != "responder":
			fail("pool", "is for mode: responder")
		default:
			set.Pool = p.Masked()
		}
	}
	if len(raw.Proposals) == 0 {
		raw.Proposals = []string{"aes256gcm16-prfsha256-x25519", "aes128gcm16-prfsha256-ecp256"}
	}
	for i, p := range raw.Proposals {
		ps, err := parseIKEProposal(p)
		if err != nil {
			fail(fmt.Sprintf("proposals[%d]", i), "%v", err)
		}
		set.Proposals = append(set.Proposals, ps...)
	}
	if len(set.Proposals) > maxProposals {
		fail("proposals", "at most %d combinations, got %d", maxProposals, len(set.Proposals))
	}
	if len(raw.ESPProposals) == 0 {
		raw.ESPProposals = []string{"aes256gcm16", "aes128gcm16"}
	}
	for i, p := range raw.ESPProposals {
		ps, err := parseESPProposal(p)
		if err != nil {
			fail(fmt.Sprintf("esp_proposals[%d]", i), "%v", err)
		}
		set.ESPProposals = append(set.ESPProposals, ps...)
	}
	if len(set.ESPProposals) > maxProposals {
		fail("esp_proposals", "at most %d, got %d", maxProposals, len(set.ESPProposals))
	}
	set.LocalTS = parseTS(raw.LocalTS, "local_ts", fail, set.Local)
	set.RemoteTS = parseTS(raw.RemoteTS, "remote_ts", fail, set.Remote)
	dur := func(field string, d *config.Duration, min time.Duration, dst *time.Duration) {
		if d == nil {
			return
		}
		if time.Duration(*d) < min {
			fail(field, "must be at least %v, got %v", min, time.Duration(*d))
			return
		}
		*dst = time.Duration(*d)
	}
	dur("rekey_time", raw.RekeyTime, minRekeyTime, &set.RekeyTime)
	dur("child_rekey_time", raw.ChildRekeyTime, minRekeyTime, &set.ChildRekey)
	dur("dpd_delay", raw.DPDDelay, minDPDDelay, &set.DPDDelay)
	dur("keepalive", raw.Keepalive, minKeepalive, &set.Keepalive)
	if len(errs) > 0 {
		return nil, errs
	}
	return set, nil
}

// parseTS reads a list of prefixes; absent: the endpoint's address alone
// (strongSwan's default, dynamic).
func parseTS(list []string, field string, fail func(string, string, ...any), self netip.Addr) []netip.Prefix {
	if len(list) == 0 {
		if self.IsValid() {
			return []netip.Prefix{netip.PrefixFrom(self, self.BitLen())}
		}
		return nil
	}
	if len(list) > maxSelectors {
		fail(field, "at most %d selectors, got %d", maxSelectors, len(list))
		return nil
	}
	var out []netip.Prefix
	for i, text := range list {
		text = strings.TrimSpace(text)
		var p netip.Prefix
		var err error
		if strings.Contains(text, "/") {
			p, err = netip.ParsePrefix(text)
		} else {
			var a netip.Addr
			a, err = netip.ParseAddr(text)
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if err != nil || p.Addr().Zone() != "" || p.Addr().Is4In6() {
			fail(fmt.Sprintf("%s[%d]", field, i), "must be a prefix such as 10.1.0.0/24 or an address, got %q", text)
			continue
		}
		if slices.Contains(out, p.Masked()) {
			fail(fmt.Sprintf("%s[%d]", field, i), "duplicate prefix %s", p.Masked())
			continue
		}
		out = append(out, p.Masked())
	}
	return out
}

// parseIKEProposal reads strongSwan's notation: algorithms joined by '-',
// every combination of the encryption, PRF and DH algorithms listed.
func parseIKEProposal(text string) ([]IKEProposal, error) {
	type ek struct{ id, bits uint16 }
	var encs []ek
	var prfs, dhs []uint16
	for _, tok := range strings.Split(strings.ToLower(strings.TrimSpace(text)), "-") {
		switch tok {
		case "aes128gcm16", "aes128gcm128", "aes128gcm":
			encs = append(encs, ek{ike.ENCR_AES_GCM_16, 128})
		case "aes256gcm16", "aes256gcm128", "aes256gcm":
			encs = append(encs, ek{ike.ENCR_AES_GCM_16, 256})
		case "prfsha256":
			prfs = append(prfs, ike.PRF_HMAC_SHA2_256)
		case "prfsha384":
			prfs = append(prfs, ike.PRF_HMAC_SHA2_384)
		case "x25519", "curve25519":
			dhs = append(dhs, ike.DH_CURVE25519)
		case "ecp256":
			dhs = append(dhs, ike.DH_ECP256)
		default:
			return nil, fmt.Errorf("unsupported algorithm %q in %q (supported: aes128gcm16 aes256gcm16 prfsha256 prfsha384 x25519 ecp256)", tok, text)
		}
	}
	if len(encs) == 0 || len(prfs) == 0 || len(dhs) == 0 {
		return nil, fmt.Errorf("%q needs an AEAD (aes128gcm16, aes256gcm16), a PRF (prfsha256, prfsha384) and a DH group (x25519, ecp256)", text)
	}
	var out []IKEProposal
	for _, e := range encs {
		for _, p := range prfs {
			for _, d := range dhs {
				out = append(out, IKEProposal{Encr: e.id, KeyLen: e.bits, PRF: p, DH: d})
			}
		}
	}
	return out, nil
}

// parseESPProposal reads an ESP proposal: an AEAD and optionally esn or
// noesn (default noesn, as strongSwan).
func parseESPProposal(text string) ([]ESPProposal, error) {
	var out []ESPProposal
	var esn []uint16
	for _, tok := range strings.Split(strings.ToLower(strings.TrimSpace(text)), "-") {
		switch tok {
		case "aes128gcm16", "aes128gcm128", "aes128gcm":
			out = append(out, ESPProposal{Encr: ike.ENCR_AES_GCM_16, KeyLen: 128})
		case "aes256gcm16", "aes256gcm128", "aes256gcm":
			out = append(out, ESPProposal{Encr: ike.ENCR_AES_GCM_16, KeyLen: 256})
		case "chacha20poly1305":
			out = append(out, ESPProposal{Encr: ike.ENCR_CHACHA20_POLY1305, KeyLen: 256})
		case "esn":
			esn = append(esn, ike.ESN_ON)
		case "noesn":
			esn = append(esn, ike.ESN_NONE)
		case "x25519", "curve25519", "ecp256", "modp2048", "modp3072":
			return nil, fmt.Errorf("DH groups in esp_proposals (PFS) are not supported, got %q", text)
		default:
			return nil, fmt.Errorf("unsupported algorithm %q in %q (supported: aes128gcm16 aes256gcm16 chacha20poly1305 esn noesn)", tok, text)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%q needs an AEAD (aes128gcm16, aes256gcm16, chacha20poly1305)", text)
	}
	if len(esn) == 0 {
		esn = []uint16{ike.ESN_NONE}
	}
	for i := range out {
		out[i].ESN = esn
	}
	return out, nil
}

func resolve(base, path string) string {
	if path == "" || filepath.IsAbs(path) || base == "" {
		return path
	}
	return filepath.Join(base, path)
}

// readPSK reads a pre-shared key file: a regular file that group and others
// cannot access. Its first line is the key; "0x…" is hex.
func readPSK(path string) ([]byte, error) {
	b, err := readFileLimited(path, pskFileMaxBytes, true)
	if err != nil {
		return nil, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimSuffix(line, "\r")
	if strings.HasPrefix(line, "0x") {
		k, err := hex.DecodeString(line[2:])
		if err != nil {
			return nil, fmt.Errorf("%s: bad hex after 0x: %v", path, err)
		}
		line = string(k)
	}
	if line == "" {
		return nil, fmt.Errorf("%s is empty (the key is its first line)", path)
	}
	return []byte(line), nil
}

// readFileLimited reads a regular file of at most limit bytes; a private
// one must not be accessible to group or others.
func readFileLimited(path string, limit int64, private bool) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); private && perm&0o077 != 0 {
		return nil, fmt.Errorf("%s is accessible to group or others (mode %04o); chmod 600 it", path, perm)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, limit)
	}
	return b, nil
}

func newActor(inst protocols.Instance) actor.Actor {
	set, ok := inst.Settings.(Settings)
	if !ok {
		panic(fmt.Sprintf("ipsec %s: settings of type %T, want ipsec.Settings", inst.Name, inst.Settings))
	}
	return newIPsecActor(inst.Name, set, inst.Env)
}
