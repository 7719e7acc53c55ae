package lab

import (
	"fmt"
	"net/netip"
	"strings"
)

// Config is a daemon config for one side of the lab, written as the YAML of
// the config reference. Zero values leave a key out, so the daemon's
// defaults apply.
type Config struct {
	Node        string // node.name; default "gw-" + side label
	LogLevel    string // log.level
	PoolBuffers int    // batch.pool_buffers
	Batch       int    // batch.max_packets; 0 means 128
	Mailbox     Mailbox
	Supervision Supervision
	Protocols   []Protocol
	Rejects     []netip.Prefix // routes with action: reject

	// Out of process (issue 4): the daemon's own remote listener, its
	// window and mutual TLS, and the protocol hosts protocols may name.
	RemoteListen string   // remote.listen; "" leaves the default (127.0.0.1:0)
	RemoteWindow int      // remote.window, batches; 0 leaves the default
	TLS          TLSFiles // remote.tls; zero: none
	SecretFile   string   // remote.secret_file; "": none (the daemon makes one)
	Hosts        []Host
}

// Host is one `hosts:` entry: a `switchyard host` process.
type Host struct {
	Name      string
	Listen    string // ip:port inside the side's namespace
	Spawn     bool   // the daemon starts and supervises it
	Transport string // "shm", "grpc", or empty: the daemon's default (shm here)
}

// TLSFiles are the PEM files of `remote.tls:` (see WriteTLSFiles).
type TLSFiles struct {
	CA, Cert, Key string
}

// Enabled reports whether all three files are set.
func (t TLSFiles) Enabled() bool { return t.CA != "" && t.Cert != "" && t.Key != "" }

// Fixed addresses of the out-of-process placement. Each side has its own
// namespace and so its own loopback: both sides use the same ports.
const (
	HostName            = "vpn-host"
	DefaultHostListen   = "127.0.0.1:7100"
	DefaultRemoteListen = "127.0.0.1:7200"
)

// OutOfProcess returns c with every protocol on one spawned host, HostName,
// listening on DefaultHostListen, and the daemon's remote listener on
// DefaultRemoteListen (fixed, so a test can reach it).
func OutOfProcess(c Config) Config {
	return OutOfProcessOver(c, "")
}

// OutOfProcessOver is OutOfProcess with the batches crossing over transport
// ("shm" or "grpc"; empty: the default, shm).
func OutOfProcessOver(c Config, transport string) Config {
	c.Hosts = []Host{{Name: HostName, Listen: DefaultHostListen, Spawn: true, Transport: transport}}
	c.RemoteListen = DefaultRemoteListen
	ps := make([]Protocol, len(c.Protocols))
	for i, p := range c.Protocols {
		p.Host = HostName
		ps[i] = p
	}
	c.Protocols = ps
	return c
}

// Mailbox is a `mailbox:` block.
type Mailbox struct {
	Capacity int    // batches
	Policy   string // drop_newest | drop_oldest | codel
	Target   string // codel's target, "5ms"; "" leaves the default
	Interval string // codel's interval, "100ms"; "" leaves the default
}

// Supervision is the `supervision:` block; durations as the config writes
// them ("10s", "100ms").
type Supervision struct {
	MaxRestarts *int
	Within      string
	Backoff     string
}

// Protocol is one protocol instance, with the routes that lead to it.
type Protocol struct {
	Name     string
	Type     string // "udp", or a test protocol
	Port     int    // listen and peer port; default DefaultUDPPort
	Mailbox  Mailbox
	Settings []string // extra settings lines, "delay: 2ms"
	Routes   []netip.Prefix
	Host     string // hosts entry it runs on; "" is the daemon's process
}

// TunnelPrefixes are the TUN subnets, routed to the peer by default.
var TunnelPrefixes = []netip.Prefix{tun4[0].Masked(), tun6[0].Masked()}

// DefaultConfig is the demo's config for side: one udp instance `peer`
// carrying both TUN subnets over the veth, and on side a the reject
// prefixes Reject4 and Reject6.
func (l *Lab) DefaultConfig(side *Side) Config {
	c := Config{Protocols: []Protocol{{Name: "peer", Type: "udp", Routes: TunnelPrefixes}}}
	if side == l.A {
		c.Rejects = []netip.Prefix{Reject4, Reject6}
	}
	return c
}

// Peer returns the other side.
func (l *Lab) Peer(side *Side) *Side {
	if side == l.A {
		return l.B
	}
	return l.A
}

// YAML renders c as the config file of side's daemon.
func (l *Lab) YAML(side *Side, c Config) string {
	peer := l.Peer(side)
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	node := c.Node
	if node == "" {
		node = "gw-" + side.Label
	}
	w("# written by the switchyard lab for namespace %s", side.NS)
	w("node:\n  name: %s", node)
	if c.LogLevel != "" {
		w("log:\n  level: %s", c.LogLevel)
	}
	w("admin:\n  listen: %s", side.Admin)
	remoteYAML(w, c.RemoteListen, c.RemoteWindow, c.TLS, c.SecretFile, c.Hosts)
	w("tun:\n  name: %s\n  mtu: 1420\n  addresses: [%s/24, \"%s/64\"]\n  install_routes: true",
		side.TUNDev, side.TUN4, side.TUN6)
	batch := c.Batch
	if batch == 0 {
		batch = 128
	}
	w("batch:\n  max_packets: %d", batch)
	if c.PoolBuffers > 0 {
		w("  pool_buffers: %d", c.PoolBuffers)
	}
	if m := mailboxYAML(c.Mailbox); m != "" {
		w("mailbox: %s", m)
	}
	if s := c.Supervision; s.MaxRestarts != nil || s.Within != "" || s.Backoff != "" {
		w("supervision:")
		if s.MaxRestarts != nil {
			w("  max_restarts: %d", *s.MaxRestarts)
		}
		if s.Within != "" {
			w("  within: %s", s.Within)
		}
		if s.Backoff != "" {
			w("  backoff: %s", s.Backoff)
		}
	}
	w("routes:")
	for _, p := range c.Protocols {
		for _, r := range p.Routes {
			w("  - prefix: %q\n    to: %s", r, p.Name)
		}
	}
	for _, r := range c.Rejects {
		w("  - prefix: %q\n    action: reject", r)
	}
	w("protocols:")
	for _, p := range c.Protocols {
		port := p.Port
		if port == 0 {
			port = DefaultUDPPort
		}
		w("  - name: %s\n    type: %s", p.Name, p.Type)
		if p.Host != "" {
			w("    host: %s", p.Host)
		}
		if m := mailboxYAML(p.Mailbox); m != "" {
			w("    mailbox: %s", m)
		}
		w("    settings:")
		w("      listen: %s", netip.AddrPortFrom(side.Veth4, uint16(port)))
		w("      peer: %s", netip.AddrPortFrom(peer.Veth4, uint16(port)))
		for _, s := range p.Settings {
			w("      %s", s)
		}
	}
	return b.String()
}

// remoteYAML writes the `remote:` and `hosts:` sections, or nothing when
// all are zero.
func remoteYAML(w func(string, ...any), listen string, window int, tls TLSFiles, secretFile string, hosts []Host) {
	if listen != "" || window > 0 || tls.Enabled() || secretFile != "" {
		w("remote:")
		if listen != "" {
			w("  listen: %s", listen)
		}
		if window > 0 {
			w("  window: %d", window)
		}
		if tls.Enabled() {
			w("  tls: {ca: %q, cert: %q, key: %q}", tls.CA, tls.Cert, tls.Key)
		}
		if secretFile != "" {
			w("  secret_file: %q", secretFile)
		}
	}
	if len(hosts) > 0 {
		w("hosts:")
		for _, h := range hosts {
			w("  - name: %s\n    listen: %s\n    spawn: %t", h.Name, h.Listen, h.Spawn)
			if h.Transport != "" {
				w("    transport: %s", h.Transport)
			}
		}
	}
}

func mailboxYAML(m Mailbox) string {
	var parts []string
	if m.Capacity > 0 {
		parts = append(parts, fmt.Sprintf("capacity: %d", m.Capacity))
	}
	if m.Policy != "" {
		parts = append(parts, "policy: "+m.Policy)
	}
	if m.Target != "" {
		parts = append(parts, "target: "+m.Target)
	}
	if m.Interval != "" {
		parts = append(parts, "interval: "+m.Interval)
	}
	if len(parts) == 0 {
		return ""
	}
	return "{" + strings.Join(parts, ", ") + "}"
}
