// Package config holds Switchyard's config types and turns a YAML file into
// a validated Config: strict decoding (unknown keys are errors), defaults
// for absent keys, and validation. Every error reads
// "file:line:col: path: message", and Parse reports all of them at once.
//
// Protocol settings are kept raw (Settings) and decoded by the protocol that
// owns them, with the same strictness and error format.
package config

import (
	_ "embed"
	"fmt"
	"io"
	"net/netip"
	"runtime"
	"strings"
	"time"
)

// Config is a node's whole configuration.
type Config struct {
	// File is the path the config was loaded from; "<default>" for the
	// embedded default.
	File string
	// Node is `node:`, this process's identity.
	Node Node
	// Log is `log:`.
	Log Log
	// Admin is `admin:`, the loopback HTTP endpoint.
	Admin Admin
	// Remote is `remote:`, this node's listener and transport for protocol
	// hosts (used only when some protocol has `host:`).
	Remote Remote
	// Hosts is `hosts:`, the protocol hosts protocols may run on, in file
	// order. Default none.
	Hosts []Host
	// TUN is `tun:`, the TUN device packets enter and leave by.
	TUN TUN
	// Batch is `batch:`, how packets are grouped on the data path.
	Batch Batch
	// Mailbox is `mailbox:`, the default mailbox of every data-path actor.
	Mailbox Mailbox
	// Supervision is `supervision:`, how failed actors are restarted.
	Supervision Supervision
	// Routes is `routes:`, in file order.
	Routes []Route
	// Protocols is `protocols:`, the protocol instances, in file order.
	Protocols []Protocol
}

// Node is the `node:` section.
type Node struct {
	// Name is `name:`; it defaults to the host name, or "switchyard" when
	// the host name is not a valid node name ([A-Za-z0-9][A-Za-z0-9._-]*,
	// at most MaxNodeName bytes).
	Name string
}

// Log is the `log:` section.
type Log struct {
	// Level is `level:`: debug, info (the default), warn or error.
	Level string
}

// Admin is the `admin:` section.
type Admin struct {
	// Listen is `listen:`, an ip:port; default 127.0.0.1:9190. Port 0 picks
	// a free port (for tests). An address that is not loopback requires
	// TokenFile.
	Listen netip.AddrPort
	// TokenFile is `token_file:`, a file holding the bearer token every
	// admin request must then carry (`Authorization: Bearer <token>`).
	// Relative paths are relative to the config file's directory. The file
	// must not be accessible to group or others (mode 0600 or 0400), like a
	// private key. Default none: no token, and loopback only.
	TokenFile string
	// Token is the content of TokenFile, trimmed; Parse reads it. Never
	// logged or served.
	Token string
}

// IsLoopback reports whether the admin endpoint listens on a loopback
// address (127.0.0.0/8 or ::1), where only this host can reach it.
func (a Admin) IsLoopback() bool { return a.Listen.Addr().Unmap().IsLoopback() }

// Remote is the `remote:` section: this node's protoactor remote listener
// and the transport of every remote connection, to and from protocol hosts.
type Remote struct {
	// Listen is `listen:`, an ip:port (an IP literal, no host name); default
	// 127.0.0.1:0, port 0 picking any free port. The daemon receives
	// inbound batches here. An address that is not loopback (0.0.0.0 and
	// :: are not) requires TLS.
	Listen netip.AddrPort
	// Window is `window:`, the batches in flight per remote protocol actor
	// (sent, not yet acknowledged) before the daemon drops by the mailbox
	// policy; 1..MaxRemoteWindow, default 32.
	Window int
	// TLS is `tls:`, mutual TLS for every remote connection of this node,
	// the listener and the dials. Default none.
	TLS TLS
	// SecretFile is `secret_file:`, a file holding the secret every remote
	// connection of this node carries (one word of at least MinTokenBytes
	// printable characters, e.g. `openssl rand -hex 32`; mode 0600). A host
	// the daemon does not spawn is started with the same file
	// (`switchyard host --secret-file`). Default none: the daemon makes a
	// fresh secret at each start and hands it to the hosts it spawns.
	SecretFile string
	// Secret is the content of SecretFile, trimmed; Parse reads it. Never
	// logged.
	Secret string
	// Pos is where the section is in the file; without a line when the
	// section is absent.
	Pos Position
}

// IsLoopback reports whether the remote listener is on a loopback address
// (127.0.0.0/8 or ::1), where only this host can reach it.
func (r Remote) IsLoopback() bool { return r.Listen.Addr().Unmap().IsLoopback() }

// TLS is the `remote.tls:` section, mutual TLS: every peer presents a
// certificate signed by CA, and so does this node. Relative paths are
// relative to the config file's directory; Parse stores them joined to it,
// checks that the three files can be read, and that Key is not accessible
// to group or others. Either all three are set or none.
type TLS struct {
	// CA is `ca:`, the PEM file of the CA that signs all peers'
	// certificates.
	CA string
	// Cert is `cert:`, the PEM file of this node's certificate.
	Cert string
	// Key is `key:`, the PEM file of this node's private key (mode 0600 or
	// 0400).
	Key string
}

// Enabled reports whether mutual TLS is configured: CA, Cert and Key all
// set.
func (t TLS) Enabled() bool { return t.CA != "" && t.Cert != "" && t.Key != "" }

// Host is one `hosts:` entry: a protocol host process (`switchyard host`)
// that runs the protocols naming it in their `host:`.
type Host struct {
	// Name is `name:`, required and unique, with the rules of protocol
	// names: [a-z0-9][a-z0-9._-]*, at most MaxProtocolName bytes.
	Name string
	// Listen is `listen:`, the ip:port (an IP literal) the host's remote
	// listener binds and the daemon dials; required, port 1-65535, unique
	// among hosts and not remote.listen. An address that is not loopback
	// requires remote.tls.
	Listen netip.AddrPort
	// Spawn is `spawn:`: the daemon starts `switchyard host` itself and
	// supervises it. Default false: the host is started elsewhere and the
	// daemon connects to it.
	Spawn bool
	// Transport is `transport:`, how batches cross to the host: "shm"
	// (shared memory, for a host on this machine: spawned, or listening on
	// loopback) or "grpc" (protoactor remote; the only one for a host on
	// another machine). Default: shm where it can be, grpc otherwise.
	// protoactor remote carries the control messages either way.
	Transport string
	// Pos is where the entry is in the file.
	Pos Position
}

// Transports of a host.
const (
	TransportSHM  = "shm"
	TransportGRPC = "grpc"
)

// UsesSHM reports whether batches cross to the host through shared
// memory: transport shm, or no transport set on a host of this machine.
func (h Host) UsesSHM() bool {
	return h.Transport == TransportSHM || (h.Transport == "" && h.SameMachine() && runtime.GOOS == "linux")
}

// SameMachine reports whether the host runs on this machine: spawned by
// the daemon, or listening on loopback.
func (h Host) SameMachine() bool { return h.Spawn || h.IsLoopback() }

// IsLoopback reports whether the host listens on a loopback address.
func (h Host) IsLoopback() bool { return h.Listen.Addr().Unmap().IsLoopback() }

// Host returns the hosts entry named name.
func (c *Config) Host(name string) (Host, bool) {
	for _, h := range c.Hosts {
		if h.Name == name {
			return h, true
		}
	}
	return Host{}, false
}

// TUN is the `tun:` section.
type TUN struct {
	// Name is `name:`, the interface name; default "sy0". At most
	// MaxIfName bytes, not "." or "..", without '/', ':' or white space.
	Name string
	// MTU is `mtu:` in bytes; default 1420. MinMTU..MaxMTU, and at least
	// MinMTUIPv6 when an address is IPv6.
	MTU int
	// Addresses is `addresses:`, the interface addresses with their prefix
	// length ("10.90.0.1/24"); host bits are kept. Default none.
	Addresses []netip.Prefix
	// InstallRoutes is `install_routes:`: add a kernel route into the TUN
	// for every route prefix. Default true.
	InstallRoutes bool
}

// Batch is the `batch:` section.
type Batch struct {
	// MaxPackets is `max_packets:`, the most packets per batch;
	// 1..MaxBatchPackets, default 128.
	MaxPackets int
	// PoolBuffers is `pool_buffers:`, the packet buffers of the node's pool;
	// MinPoolBuffers..MaxPoolBuffers, default 4096.
	PoolBuffers int
}

// Mailbox policies: which batch a full mailbox drops.
const (
	PolicyDropNewest = "drop_newest" // refuse the arriving batch
	PolicyDropOldest = "drop_oldest" // evict the oldest queued batch
	PolicyCoDel      = "codel"       // RFC 8289 on the sojourn time; full: refuse the arriving batch
)

// Mailbox is a `mailbox:` section (top level, or a protocol's override).
type Mailbox struct {
	// Capacity is `capacity:` in batches; 1..MaxMailboxCapacity, default 256.
	Capacity int
	// Policy is `policy:`, PolicyDropNewest (default), PolicyDropOldest or
	// PolicyCoDel, as written (for errors and messages); Drop is its typed
	// value.
	Policy string
	// Target is `target:`, CoDel's acceptable standing queueing delay
	// (RFC 8289 §4.3); 0 < Target ≤ Interval, default 5ms. Used by codel.
	Target Duration
	// Interval is `interval:`, CoDel's window for the delay to fall below
	// Target before it starts dropping (RFC 8289 §4.4);
	// ≤ MaxCoDelInterval, default 100ms. Used by codel.
	Interval Duration
}

// DropPolicy is a bounded mailbox's drop policy: which batch goes when it
// is full. actors/mailbox uses it as its Policy.
type DropPolicy uint8

const (
	// DropNewest is tail drop: the arriving batch is dropped.
	DropNewest DropPolicy = iota
	// DropOldest is head drop: the batch that waited longest is dropped.
	DropOldest
	// DropCoDel drops at the head by CoDel (RFC 8289) when batches have
	// waited longer than the target for an interval; a full mailbox
	// refuses the arriving batch as DropNewest does.
	DropCoDel
)

func (p DropPolicy) String() string {
	switch p {
	case DropOldest:
		return PolicyDropOldest
	case DropCoDel:
		return PolicyCoDel
	}
	return PolicyDropNewest
}

// Drop is the typed policy of a validated config (Validate refuses any
// other string, so nothing is parsed again at use).
func (m Mailbox) Drop() DropPolicy {
	switch m.Policy {
	case PolicyDropOldest:
		return DropOldest
	case PolicyCoDel:
		return DropCoDel
	}
	return DropNewest
}

// Supervision is the `supervision:` section.
type Supervision struct {
	// MaxRestarts is `max_restarts:`, how many restarts within Within an
	// actor gets before its supervisor gives up; ≥ 0, default 10.
	MaxRestarts int
	// Within is `within:`, the restart-counting window; > 0, default 10s.
	Within Duration
	// Backoff is `backoff:`, the wait before a restart; ≥ 0, default 100ms.
	Backoff Duration
}

// Route actions besides forwarding to a protocol (the empty action).
const (
	ActionDrop   = "drop"   // discard silently
	ActionReject = "reject" // discard and answer with ICMP unreachable
)

// Route is one `routes:` entry.
type Route struct {
	// Prefix is `prefix:`, masked: "10.90.0.1/24" becomes 10.90.0.0/24.
	Prefix netip.Prefix
	// To is `to:`, the name of the protocol instance that gets the packets.
	To string
	// Action is `action:`: "" (forward to To), ActionDrop or ActionReject.
	// Exactly one of To and Action is set.
	Action string
	// Pos is where the entry is in the file.
	Pos Position
}

// Protocol is one `protocols:` entry: an instance of a protocol.
type Protocol struct {
	// Name is `name:`, unique, [a-z0-9][a-z0-9._-]*, at most
	// MaxProtocolName bytes. Routes name it in `to:`.
	Name string
	// Type is `type:`, the protocol ("udp", "wireguard"). The protocols
	// registry knows which exist; config only requires one.
	Type string
	// TypePos is where the type value is, for "unknown protocol type".
	TypePos Position
	// Host is `host:`, where the instance runs: the name of a Hosts entry,
	// or "" for this process.
	Host string
	// HostPos is where the host value is, for "unknown host" (the entry
	// when host is absent).
	HostPos Position
	// Mailbox is the effective mailbox: the entry's `mailbox:` keys over the
	// top-level mailbox, key by key.
	Mailbox Mailbox
	// Settings is `settings:`, decoded by the protocol. It may be empty.
	Settings Settings
	// Pos is where the entry is in the file.
	Pos Position
}

// Duration is a time.Duration written as a Go duration string with a unit
// ("10s", "100ms", "1m30s"). A bare number is an error (except 0), and so
// is a negative duration.
type Duration time.Duration

// ParseDuration parses a config duration.
func ParseDuration(s string) (Duration, error) {
	if s == "0" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		if strings.Trim(s, "+-0123456789._") == "" && s != "" {
			return 0, fmt.Errorf("must have a unit, e.g. 10s")
		}
		return 0, fmt.Errorf("invalid duration %s, want e.g. 10s, 100ms or 1m30s", quoteShort(s))
	}
	if d < 0 {
		return 0, fmt.Errorf("must not be negative, got %s", s)
	}
	return Duration(d), nil
}

// String formats d like time.Duration ("1m30s").
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseDuration.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

//go:embed default.yaml
var defaultYAML []byte

// DefaultYAML returns the embedded default config (a copy).
func DefaultYAML() []byte { return append([]byte(nil), defaultYAML...) }

// DefaultFile is the File of the embedded default config.
const DefaultFile = "<default>"

// Default returns the embedded default config. It panics if the embedded
// file does not parse, which a test rules out.
func Default() *Config {
	c, err := Parse(DefaultFile, defaultYAML)
	if err != nil {
		panic(fmt.Sprintf("config: embedded default does not parse: %v", err))
	}
	return c
}

// Load reads the config file at path and parses it. The file must be a
// regular file (checked before opening it, see OpenRegularFile); one larger
// than MaxFileBytes is refused at the position where it passes the limit.
func Load(path string) (*Config, error) {
	f, _, err := OpenRegularFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, pathErr(err))
	}
	return Parse(path, data)
}

// Errorf returns an error at pos about the value at path, for packages
// that check a config further (unknown protocol types, placement).
func (c *Config) Errorf(pos Position, path, format string, args ...any) *Error {
	if pos.File == "" {
		pos.File = c.File
	}
	return &Error{Pos: pos, Path: path, Msg: fmt.Sprintf(format, args...)}
}
