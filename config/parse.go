package config

// Parse turns YAML into a Config:
//
//  1. parseDocument: YAML text to one AST document.
//  2. decoder: the AST into rawConfig, strictly; absent keys stay nil.
//  3. build: defaults for absent keys, routes masked, protocol mailboxes
//     merged over the top-level mailbox, positions recorded.
//  4. validate: ranges, names, cross references, duplicates.
//  5. secrets: the admin token file is read and the remote TLS files are
//     checked (a missing or world-readable file is what `switchyard check`
//     must catch).
//
// Errors from every step are collected, sorted by position and returned
// together.

import (
	"net/netip"
	"os"
	"runtime"

	"github.com/goccy/go-yaml/ast"
)

// rawConfig mirrors the file. Pointers tell absent keys from zero values.
type rawConfig struct {
	Node struct {
		Name *string `yaml:"name"`
	} `yaml:"node"`
	Log struct {
		Level *string `yaml:"level"`
	} `yaml:"log"`
	Admin struct {
		Listen    *netip.AddrPort `yaml:"listen"`
		TokenFile *string         `yaml:"token_file"`
	} `yaml:"admin"`
	Remote struct {
		Listen     *netip.AddrPort `yaml:"listen"`
		Window     *int            `yaml:"window"`
		SecretFile *string         `yaml:"secret_file"`
		TLS        struct {
			CA   string `yaml:"ca"`
			Cert string `yaml:"cert"`
			Key  string `yaml:"key"`
		} `yaml:"tls"`
	} `yaml:"remote"`
	Hosts []rawHost `yaml:"hosts"`
	TUN   struct {
		Name          *string        `yaml:"name"`
		MTU           *int           `yaml:"mtu"`
		Addresses     []netip.Prefix `yaml:"addresses"`
		InstallRoutes *bool          `yaml:"install_routes"`
	} `yaml:"tun"`
	Batch struct {
		MaxPackets  *int `yaml:"max_packets"`
		PoolBuffers *int `yaml:"pool_buffers"`
	} `yaml:"batch"`
	Mailbox     rawMailbox `yaml:"mailbox"`
	Supervision struct {
		MaxRestarts *int      `yaml:"max_restarts"`
		Within      *Duration `yaml:"within"`
		Backoff     *Duration `yaml:"backoff"`
	} `yaml:"supervision"`
	Routes    []rawRoute    `yaml:"routes"`
	Protocols []rawProtocol `yaml:"protocols"`
}

type rawMailbox struct {
	Capacity *int      `yaml:"capacity"`
	Policy   *string   `yaml:"policy"`
	Target   *Duration `yaml:"target"`
	Interval *Duration `yaml:"interval"`
}

type rawRoute struct {
	Prefix netip.Prefix `yaml:"prefix"`
	To     string       `yaml:"to"`
	Action string       `yaml:"action"`
}

type rawHost struct {
	Name      string         `yaml:"name"`
	Listen    netip.AddrPort `yaml:"listen"`
	Spawn     bool           `yaml:"spawn"`
	Transport string         `yaml:"transport"`
}

type rawProtocol struct {
	Name     string     `yaml:"name"`
	Type     string     `yaml:"type"`
	Host     string     `yaml:"host"`
	Mailbox  rawMailbox `yaml:"mailbox"`
	Settings Settings   `yaml:"settings"`
}

// Parse parses and validates a config. file names it in errors. On any
// problem it returns nil and Errors holding all of them.
func Parse(file string, data []byte) (*Config, error) {
	doc, errs := parseDocument(file, data)
	if errs != nil {
		return nil, errs
	}
	if doc.root == nil {
		return nil, Errors{{Pos: Position{File: file, Line: 1, Col: 1}, Msg: "config is empty"}}
	}
	d := newDecoder(doc)
	var raw rawConfig
	d.decode(doc.root, "", reflectValue(&raw), 0)
	if d.aliasFailed {
		// Decoding stopped expanding: what it left out would only make
		// validation report values as missing.
		return nil, d.errs.sorted()
	}

	c := build(doc, &raw)
	p := &positions{doc: doc, failed: d.failed}
	errs = append(d.errs, c.validate(p)...)
	x := &expansion{doc: doc}
	for _, pr := range c.Protocols {
		if ok, why := x.walk(pr.Settings.node, 0); !ok {
			errs = append(errs, &Error{Pos: pr.Settings.pos, Path: pr.Settings.path, Msg: why})
			break
		}
	}
	errs = append(errs, c.readSecrets(p)...)
	if len(errs) > 0 {
		return nil, errs.sorted()
	}
	return c, nil
}

// build applies defaults to what the file left out.
func build(doc *document, raw *rawConfig) *Config {
	c := &Config{
		File: doc.file,
		Node: Node{Name: or(raw.Node.Name, hostName())},
		Log:  Log{Level: or(raw.Log.Level, DefaultLogLevel)},
		TUN: TUN{
			Name:          or(raw.TUN.Name, DefaultTUNName),
			MTU:           or(raw.TUN.MTU, DefaultMTU),
			Addresses:     raw.TUN.Addresses,
			InstallRoutes: or(raw.TUN.InstallRoutes, true),
		},
		Batch: Batch{
			MaxPackets:  or(raw.Batch.MaxPackets, DefaultMaxPackets),
			PoolBuffers: or(raw.Batch.PoolBuffers, DefaultPoolBuffers),
		},
		Mailbox: Mailbox{
			Capacity: or(raw.Mailbox.Capacity, DefaultMailboxCapacity),
			Policy:   or(raw.Mailbox.Policy, DefaultMailboxPolicy),
			Target:   or(raw.Mailbox.Target, DefaultCoDelTarget),
			Interval: or(raw.Mailbox.Interval, DefaultCoDelInterval),
		},
		Supervision: Supervision{
			MaxRestarts: or(raw.Supervision.MaxRestarts, DefaultMaxRestarts),
			Within:      or(raw.Supervision.Within, DefaultWithin),
			Backoff:     or(raw.Supervision.Backoff, DefaultBackoff),
		},
	}
	c.Admin.Listen = or(raw.Admin.Listen, netip.MustParseAddrPort(DefaultAdminListen))
	c.Admin.TokenFile = or(raw.Admin.TokenFile, "")
	c.Remote = Remote{
		Listen:     or(raw.Remote.Listen, netip.MustParseAddrPort(DefaultRemoteListen)),
		Window:     or(raw.Remote.Window, DefaultRemoteWindow),
		SecretFile: configRelative(or(raw.Remote.SecretFile, ""), doc.file),
		TLS: TLS{
			CA:   configRelative(raw.Remote.TLS.CA, doc.file),
			Cert: configRelative(raw.Remote.TLS.Cert, doc.file),
			Key:  configRelative(raw.Remote.TLS.Key, doc.file),
		},
		Pos: Position{File: doc.file},
	}
	if n, ok := lookup(doc, doc.root, "remote"); ok {
		c.Remote.Pos = nodePos(doc.file, n)
	}
	for i, h := range raw.Hosts {
		n, _ := lookup(doc, doc.root, indexPath("hosts", i))
		host := Host{Name: h.Name, Listen: h.Listen, Spawn: h.Spawn, Transport: h.Transport, Pos: nodePos(doc.file, n)}
		if host.Transport == "" {
			host.Transport = TransportGRPC
			if host.SameMachine() && runtime.GOOS == "linux" { // shared memory is built for Linux
				host.Transport = TransportSHM
			}
		}
		c.Hosts = append(c.Hosts, host)
	}
	for i, r := range raw.Routes {
		path := indexPath("routes", i)
		n, _ := lookup(doc, doc.root, path)
		c.Routes = append(c.Routes, Route{
			Prefix: r.Prefix.Masked(),
			To:     r.To,
			Action: r.Action,
			Pos:    nodePos(doc.file, n),
		})
	}
	for i, r := range raw.Protocols {
		path := indexPath("protocols", i)
		n, _ := lookup(doc, doc.root, path)
		tn, _ := lookup(doc, doc.root, path+".type")
		hn, _ := lookup(doc, doc.root, path+".host")
		p := Protocol{
			Name:    r.Name,
			Type:    r.Type,
			TypePos: nodePos(doc.file, tn),
			Host:    r.Host,
			HostPos: nodePos(doc.file, hn),
			Mailbox: Mailbox{
				Capacity: or(r.Mailbox.Capacity, c.Mailbox.Capacity),
				Policy:   or(r.Mailbox.Policy, c.Mailbox.Policy),
				Target:   or(r.Mailbox.Target, c.Mailbox.Target),
				Interval: or(r.Mailbox.Interval, c.Mailbox.Interval),
			},
			Settings: r.Settings,
			Pos:      nodePos(doc.file, n),
		}
		if p.Settings.path == "" { // absent or null: an empty block
			p.Settings = Settings{doc: doc, path: path + ".settings", pos: p.Pos}
		}
		c.Protocols = append(c.Protocols, p)
	}
	return c
}

// Defaults for keys a config leaves out. The embedded default.yaml spells
// out the same values.
const (
	DefaultNodeName        = "switchyard" // when the host name is not a valid node name
	DefaultLogLevel        = "info"
	DefaultAdminListen     = "127.0.0.1:9190"
	DefaultRemoteListen    = "127.0.0.1:0" // port 0: any free port
	DefaultRemoteWindow    = 32            // batches in flight per remote protocol actor
	DefaultTUNName         = "sy0"
	DefaultMTU             = 1420 // bytes: 1500 less the 80 bytes of WireGuard over IPv6
	DefaultMaxPackets      = MaxBatchPackets
	DefaultPoolBuffers     = 4096 // buffers: 32 full batches
	DefaultMailboxCapacity = 256  // batches
	DefaultMailboxPolicy   = PolicyDropNewest
	DefaultCoDelTarget     = Duration(5e6)   // 5ms: RFC 8289 §4.3
	DefaultCoDelInterval   = Duration(100e6) // 100ms: RFC 8289 §4.4
	DefaultMaxRestarts     = 10
	DefaultWithin          = Duration(10e9)  // 10s
	DefaultBackoff         = Duration(100e6) // 100ms
)

// hostName is the default node name.
func hostName() string {
	h, err := os.Hostname()
	if err != nil || !validNodeName(h) {
		return DefaultNodeName
	}
	return h
}

func or[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// positions finds where a config path is in the parsed file.
type positions struct {
	doc    *document
	failed map[string]bool
}

// at is the position of the value at path, or of its nearest enclosing
// value when it is absent.
func (p *positions) at(path string, fallback Position) Position {
	if p == nil || p.doc == nil || p.doc.root == nil {
		return fallback
	}
	n, _ := lookup(p.doc, p.doc.root, path)
	return nodePos(p.doc.file, n)
}

// skip reports whether decoding already reported an error at path.
func (p *positions) skip(path string) bool {
	return p != nil && p.failed[path]
}

// root returns the document's root node, nil for a config built in code.
func (p *positions) root() ast.Node {
	if p == nil || p.doc == nil {
		return nil
	}
	return p.doc.root
}
