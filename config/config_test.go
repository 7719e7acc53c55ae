package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// minimal is a valid config that sets only what has no default.
const minimal = "node:\n  name: gw-test\n"

func TestDefault(t *testing.T) {
	c := Default()
	if got, want := c.File, "<default>"; got != want {
		t.Errorf("File = %q, want %q", got, want)
	}
	if !reflect.DeepEqual(DefaultYAML(), defaultYAML) {
		t.Error("DefaultYAML differs from the embedded file")
	}
	got, err := Parse("gw.yaml", DefaultYAML())
	if err != nil {
		t.Fatalf("Parse(default.yaml): %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"node.name", got.Node.Name, "gw-a"},
		{"log.level", got.Log.Level, "info"},
		{"admin.listen", got.Admin.Listen, netip.MustParseAddrPort("127.0.0.1:9190")},
		{"remote.listen", got.Remote.Listen, netip.MustParseAddrPort("127.0.0.1:0")},
		{"remote.window", got.Remote.Window, 32},
		{"remote.tls", got.Remote.TLS, TLS{}},
		{"remote.pos", got.Remote.Pos, Position{"gw.yaml", 8, 3}},
		{"hosts", len(got.Hosts), 0},
		{"tun.name", got.TUN.Name, "sy0"},
		{"tun.mtu", got.TUN.MTU, 1420},
		{"tun.addresses", got.TUN.Addresses, []netip.Prefix{netip.MustParsePrefix("10.90.0.1/24"), netip.MustParsePrefix("fd90::1/64")}},
		{"tun.install_routes", got.TUN.InstallRoutes, true},
		{"batch", got.Batch, Batch{MaxPackets: 128, PoolBuffers: 4096}},
		{"mailbox", got.Mailbox, Mailbox{Capacity: 256, Policy: PolicyDropNewest, Target: DefaultCoDelTarget, Interval: DefaultCoDelInterval}},
		{"supervision", got.Supervision, Supervision{MaxRestarts: 10, Within: Duration(10 * time.Second), Backoff: Duration(100 * time.Millisecond)}},
		{"routes", len(got.Routes), 3},
		{"routes[0].prefix", got.Routes[0].Prefix, netip.MustParsePrefix("10.90.0.0/24")},
		{"routes[0].to", got.Routes[0].To, "peer-b"},
		{"routes[0].pos", got.Routes[0].Pos, Position{"gw.yaml", 25, 5}},
		{"routes[2].action", got.Routes[2].Action, ActionReject},
		{"protocols", len(got.Protocols), 1},
		{"protocols[0].name", got.Protocols[0].Name, "peer-b"},
		{"protocols[0].type", got.Protocols[0].Type, "udp"},
		{"protocols[0].type pos", got.Protocols[0].TypePos, Position{"gw.yaml", 33, 11}},
		{"protocols[0].host", got.Protocols[0].Host, ""},
		{"protocols[0].pos", got.Protocols[0].Pos, Position{"gw.yaml", 32, 5}},
		{"protocols[0].mailbox", got.Protocols[0].Mailbox, Mailbox{Capacity: 512, Policy: PolicyDropOldest, Target: DefaultCoDelTarget, Interval: DefaultCoDelInterval}},
		{"protocols[0].settings path", got.Protocols[0].Settings.Path(), "protocols[0].settings"},
		{"protocols[0].settings pos", got.Protocols[0].Settings.Pos(), Position{"gw.yaml", 36, 7}},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	var s struct {
		Listen netip.AddrPort `yaml:"listen"`
		Peer   netip.AddrPort `yaml:"peer"`
	}
	if err := got.Protocols[0].Settings.Decode(&s); err != nil {
		t.Fatalf("Settings.Decode: %v", err)
	}
	if got, want := s.Peer, netip.MustParseAddrPort("10.91.0.2:7000"); got != want {
		t.Errorf("settings.peer = %v, want %v", got, want)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("Validate of a parsed config: %v", err)
	}
}

func TestDefaults(t *testing.T) {
	got, err := Parse("gw.yaml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		File:        "gw.yaml",
		Node:        Node{Name: "gw-test"},
		Log:         Log{Level: "info"},
		Admin:       Admin{Listen: netip.MustParseAddrPort("127.0.0.1:9190")},
		Remote:      Remote{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Window: 32, Pos: Position{File: "gw.yaml"}},
		TUN:         TUN{Name: "sy0", MTU: 1420, InstallRoutes: true},
		Batch:       Batch{MaxPackets: 128, PoolBuffers: 4096},
		Mailbox:     Mailbox{Capacity: 256, Policy: "drop_newest", Target: DefaultCoDelTarget, Interval: DefaultCoDelInterval},
		Supervision: Supervision{MaxRestarts: 10, Within: Duration(10 * time.Second), Backoff: Duration(100 * time.Millisecond)},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}

	// The node name defaults to the host name.
	got, err = Parse("gw.yaml", []byte("log: {level: debug}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Node.Name == "" || !validNodeName(got.Node.Name) {
		t.Errorf("default node name %q", got.Node.Name)
	}
}

func TestParseValues(t *testing.T) {
	src := `tun:
  addresses: [10.1.0.1/16]
  mtu: 576
  install_routes: false
mailbox: {capacity: 64}
hosts:
  - {name: h1, listen: 127.0.0.1:7100, spawn: true}
routes:
  - prefix: 10.90.0.1/24   # host bits are masked
    to: a
  - prefix: 0.0.0.0/0
    action: drop
protocols:
  - name: a
    type: udp
    host: h1
    mailbox:
      policy: drop_oldest
  - name: b.2_x-y
    type: wireguard
`
	c, err := Parse("gw.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"tun.mtu", c.TUN.MTU, 576},
		{"tun.install_routes", c.TUN.InstallRoutes, false},
		{"tun.addresses", c.TUN.Addresses, []netip.Prefix{netip.MustParsePrefix("10.1.0.1/16")}},
		{"routes[0].prefix", c.Routes[0].Prefix, netip.MustParsePrefix("10.90.0.0/24")},
		{"routes[1]", c.Routes[1], Route{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Action: "drop", Pos: Position{"gw.yaml", 11, 5}}},
		{"protocols[0].host", c.Protocols[0].Host, "h1"},
		{"protocols[0].host pos", c.Protocols[0].HostPos, Position{"gw.yaml", 16, 11}},
		{"protocols[0].mailbox", c.Protocols[0].Mailbox, Mailbox{Capacity: 64, Policy: PolicyDropOldest, Target: DefaultCoDelTarget, Interval: DefaultCoDelInterval}},
		{"protocols[1].mailbox", c.Protocols[1].Mailbox, Mailbox{Capacity: 64, Policy: PolicyDropNewest, Target: DefaultCoDelTarget, Interval: DefaultCoDelInterval}},
		{"protocols[1].settings path", c.Protocols[1].Settings.Path(), "protocols[1].settings"},
		{"protocols[1].settings pos", c.Protocols[1].Settings.Pos(), Position{"gw.yaml", 19, 5}},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	// An absent settings block decodes to nothing.
	var s struct {
		Listen string `yaml:"listen"`
	}
	if err := c.Protocols[1].Settings.Decode(&s); err != nil || s.Listen != "" {
		t.Errorf("Decode of absent settings = %v, %+v", err, s)
	}
}

// TestParseErrors checks the exact error text, position and path of each
// kind of problem. Each case is a config with exactly the listed errors.
func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{
			name: "unknown top-level key",
			src:  minimal + "cluster:\n  - a\n",
			want: []string{`gw.yaml:3:1: cluster: unknown key (known keys: node, log, admin, remote, hosts, tun, batch, mailbox, supervision, routes, protocols)`},
		},
		{
			name: "unknown nested key",
			src:  "log:\n  levle: info\n",
			want: []string{`gw.yaml:2:3: log.levle: unknown key (did you mean "level"?)`},
		},
		{
			name: "unknown key without a close match",
			src:  "batch:\n  zzz: 1\n",
			want: []string{`gw.yaml:2:3: batch.zzz: unknown key (known keys: max_packets, pool_buffers)`},
		},
		{
			name: "bad prefix",
			src:  "routes:\n  - prefix: 10.0.0.0/8\n    action: drop\n  - prefix: 10.0.0.0/33\n    action: drop\n",
			want: []string{`gw.yaml:4:13: routes[1].prefix: invalid prefix "10.0.0.0/33": prefix length out of range`},
		},
		{
			name: "route to an undefined protocol",
			src:  "routes:\n  - prefix: 10.0.0.0/8\n    to: nowhere\n",
			want: []string{`gw.yaml:3:9: routes[0].to: no protocol named "nowhere"`},
		},
		{
			name: "route to a misspelt protocol",
			src:  "routes:\n  - prefix: 10.0.0.0/8\n    to: peer-x\nprotocols:\n  - {name: peer-b, type: udp}\n",
			want: []string{`gw.yaml:3:9: routes[0].to: no protocol named "peer-x" (did you mean "peer-b"?)`},
		},
		{
			name: "duplicate protocol name",
			src:  "protocols:\n  - name: a\n    type: udp\n  - name: a\n    type: udp\n",
			want: []string{`gw.yaml:4:11: protocols[1].name: duplicate protocol name "a" (first at line 2)`},
		},
		{
			name: "bare number duration",
			src:  "supervision:\n  within: 10\n",
			want: []string{`gw.yaml:2:11: supervision.within: must have a unit, e.g. 10s`},
		},
		{
			name: "garbage duration",
			src:  "supervision:\n  backoff: soon\n",
			want: []string{`gw.yaml:2:12: supervision.backoff: invalid duration "soon", want e.g. 10s, 100ms or 1m30s`},
		},
		{
			name: "negative duration",
			src:  "supervision:\n  backoff: -1s\n",
			want: []string{`gw.yaml:2:12: supervision.backoff: must not be negative, got -1s`},
		},
		{
			name: "zero window",
			src:  "supervision:\n  within: 0s\n",
			want: []string{`gw.yaml:2:11: supervision.within: must be greater than 0, got 0s`},
		},
		{
			name: "bad policy",
			src:  "mailbox:\n  policy: drop_middle\n",
			want: []string{`gw.yaml:2:11: mailbox.policy: must be drop_newest, drop_oldest or codel, got "drop_middle"`},
		},
		{
			name: "codel target above interval",
			src:  "mailbox:\n  policy: codel\n  target: 200ms\n",
			want: []string{`gw.yaml:3:11: mailbox.target: must be at most the interval (100ms), got 200ms`},
		},
		{
			name: "codel zero target",
			src:  "mailbox:\n  policy: codel\n  target: 0s\n",
			want: []string{`gw.yaml:3:11: mailbox.target: must be above 0, got 0s`},
		},
		{
			name: "codel interval too long",
			src:  "mailbox:\n  interval: 1m\n",
			want: []string{`gw.yaml:2:13: mailbox.interval: must be above 0 and at most 10s, got 1m0s`},
		},
		{
			name: "protocol codel target above inherited interval",
			src:  "mailbox: {interval: 10ms}\nprotocols:\n  - name: a\n    type: udp\n    mailbox: {policy: codel, target: 20ms}\n",
			want: []string{`gw.yaml:5:38: protocols[0].mailbox.target: must be at most the interval (10ms), got 20ms`},
		},
		{
			name: "bad protocol mailbox",
			src:  "protocols:\n  - name: a\n    type: udp\n    mailbox: {capacity: 0, policy: lifo}\n",
			want: []string{
				`gw.yaml:4:25: protocols[0].mailbox.capacity: must be between 1 and 65536 batches, got 0`,
				`gw.yaml:4:36: protocols[0].mailbox.policy: must be drop_newest, drop_oldest or codel, got "lifo"`,
			},
		},
		{
			name: "wrong type",
			src:  "tun:\n  mtu: \"abc\"\n",
			want: []string{`gw.yaml:2:8: tun.mtu: expected an integer, got string "abc"`},
		},
		{
			name: "wrong type bool",
			src:  "tun:\n  install_routes: yes please\n",
			want: []string{`gw.yaml:2:19: tun.install_routes: expected true or false, got string "yes please"`},
		},
		{
			name: "section is not a mapping",
			src:  "tun: sy0\n",
			want: []string{`gw.yaml:1:6: tun: expected a mapping, got string "sy0"`},
		},
		{
			name: "route with to and action",
			src:  "routes:\n  - prefix: 10.0.0.0/8\n    to: a\n    action: drop\nprotocols:\n  - {name: a, type: udp}\n",
			want: []string{`gw.yaml:4:13: routes[0].action: cannot be combined with to: a route either forwards to a protocol or drops`},
		},
		{
			name: "route with neither to nor action",
			src:  "routes:\n  - prefix: 10.0.0.0/8\n",
			want: []string{`gw.yaml:2:5: routes[0]: needs to (a protocol name) or action (drop or reject)`},
		},
		{
			name: "route without prefix",
			src:  "routes:\n  - action: drop\n",
			want: []string{`gw.yaml:2:5: routes[0].prefix: required`},
		},
		{
			name: "duplicate route prefix after masking",
			src:  "routes:\n  - prefix: 10.0.0.0/8\n    action: drop\n  - prefix: 10.1.2.3/8\n    action: reject\n",
			want: []string{`gw.yaml:4:13: routes[1].prefix: duplicate prefix 10.0.0.0/8 (first at line 2)`},
		},
		{
			name: "bad admin listen",
			src:  "admin:\n  listen: localhost:9190\n",
			want: []string{`gw.yaml:2:11: admin.listen: must be ip:port, got "localhost:9190": host names are not resolved here, give an IP address`},
		},
		{
			name: "bad log level",
			src:  "log: {level: verbose}\n",
			want: []string{`gw.yaml:1:14: log.level: must be debug, info, warn or error, got "verbose"`},
		},
		{
			name: "tun name and mtu",
			src:  "tun:\n  name: a/b\n  mtu: 100\n",
			want: []string{
				`gw.yaml:2:9: tun.name: must be 1-15 characters of [A-Za-z0-9_=+.-], got "a/b"`,
				`gw.yaml:3:8: tun.mtu: must be between 576 and 65535, got 100`,
			},
		},
		{
			name: "ipv6 needs mtu 1280",
			src:  "tun:\n  mtu: 1000\n  addresses: [\"fd00::1/64\"]\n",
			want: []string{`gw.yaml:2:8: tun.mtu: must be at least 1280 with an ipv6 address in tun.addresses, got 1000`},
		},
		{
			name: "batch limits",
			src:  "batch: {max_packets: 0, pool_buffers: 2000000}\n",
			want: []string{
				`gw.yaml:1:22: batch.max_packets: must be between 1 and 128, got 0`,
				`gw.yaml:1:39: batch.pool_buffers: must be between 128 and 1048576, got 2000000`,
			},
		},
		{
			name: "protocol name and type",
			src:  "protocols:\n  - name: Peer B\n  - type: udp\n",
			want: []string{
				`gw.yaml:2:5: protocols[0].type: required`, // absent: at the entry
				`gw.yaml:2:11: protocols[0].name: must match [a-z0-9][a-z0-9._-]* and be at most 32 bytes, got "Peer B"`,
				`gw.yaml:3:5: protocols[1].name: required`,
			},
		},
		{
			name: "duplicate key",
			src:  "log:\n  level: info\n  level: warn\n",
			want: []string{`gw.yaml:3:3: log.level: duplicate key (first at line 2)`},
		},
		{
			name: "empty file",
			src:  "# nothing here\n",
			want: []string{`gw.yaml:1:1: config is empty`},
		},
		{
			name: "not a mapping",
			src:  "- a\n- b\n",
			want: []string{`gw.yaml:1:1: expected a mapping, got a list`},
		},
		{
			name: "two documents",
			src:  minimal + "---\n" + minimal,
			want: []string{`gw.yaml:4:1: a config holds one yaml document, found a second one`},
		},
		{
			name: "syntax error",
			src:  "log: [\n",
			want: []string{`gw.yaml:1:6: invalid yaml: sequence end token ']' not found`},
		},
		{
			name: "many errors at once",
			src: `log:
  levle: info
tun:
  mtu: "abc"
mailbox:
  policy: drop_middle
supervision:
  within: 10
routes:
  - prefix: 10.0.0.0/33
    to: a
  - prefix: 10.1.0.0/16
    to: ghost
protocols:
  - name: a
    type: udp
  - name: a
    type: udp
`,
			want: []string{
				`gw.yaml:2:3: log.levle: unknown key (did you mean "level"?)`,
				`gw.yaml:4:8: tun.mtu: expected an integer, got string "abc"`,
				`gw.yaml:6:11: mailbox.policy: must be drop_newest, drop_oldest or codel, got "drop_middle"`,
				`gw.yaml:8:11: supervision.within: must have a unit, e.g. 10s`,
				`gw.yaml:10:13: routes[0].prefix: invalid prefix "10.0.0.0/33": prefix length out of range`,
				`gw.yaml:13:9: routes[1].to: no protocol named "ghost"`,
				`gw.yaml:17:11: protocols[1].name: duplicate protocol name "a" (first at line 15)`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("gw.yaml", []byte(tt.src))
			if err == nil {
				t.Fatalf("Parse succeeded, want errors:\n%s", strings.Join(tt.want, "\n"))
			}
			if c != nil {
				t.Error("Parse returned a config with an error")
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error is %T, want Errors", err)
			}
			got := strings.Split(err.Error(), "\n")
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if len(errs) != len(tt.want) {
				t.Errorf("len(Errors) = %d, want %d", len(errs), len(tt.want))
			}
		})
	}
}

func TestAnchorsAndMerge(t *testing.T) {
	src := `protocols:
  - name: a
    type: udp
    mailbox: &mb {capacity: 8, policy: drop_oldest}
    settings: &common
      listen: 10.0.0.1:1
      tags: [x, y]
  - name: b
    type: udp
    mailbox: *mb
    settings:
      <<: *common
      listen: 10.0.0.2:1
`
	c, err := Parse("gw.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Protocols[1].Mailbox, (Mailbox{Capacity: 8, Policy: PolicyDropOldest, Target: DefaultCoDelTarget, Interval: DefaultCoDelInterval}); got != want {
		t.Errorf("aliased mailbox = %+v, want %+v", got, want)
	}
	var s struct {
		Listen netip.AddrPort `yaml:"listen"`
		Tags   []string       `yaml:"tags"`
	}
	if err := c.Protocols[1].Settings.Decode(&s); err != nil {
		t.Fatal(err)
	}
	if got, want := s.Listen.String(), "10.0.0.2:1"; got != want {
		t.Errorf("listen = %s, want %s (own keys override merged ones)", got, want)
	}
	if got, want := s.Tags, []string{"x", "y"}; !reflect.DeepEqual(got, want) {
		t.Errorf("tags = %v, want %v", got, want)
	}

	// An alias inside the value it refers to would expand forever.
	st, err := NewSettings("s.yaml", "settings", []byte("a: &x {b: *x}\n"))
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if got, want := errString(st.Decode(&v)), `s.yaml:1:11: settings.a.b.b: alias *x refers to a value that contains it`; got != want {
		t.Errorf("self alias: got %q, want %q", got, want)
	}
	_, err = Parse("gw.yaml", []byte("tun:\n  name: *nope\n"))
	if got, want := errString(err), `gw.yaml:2:9: tun.name: alias *nope has no anchor &nope before it`; got != want {
		t.Errorf("unknown alias: got %q, want %q", got, want)
	}
}

// udpSettings is a protocol's settings as a protocol would declare them.
type udpSettings struct {
	Listen    netip.AddrPort `yaml:"listen"`
	Peer      netip.AddrPort `yaml:"peer"`
	Keepalive Duration       `yaml:"keepalive"`
	Workers   uint8          `yaml:"workers"`
	Allowed   []netip.Prefix `yaml:"allowed"`
	Verbose   *bool          `yaml:"verbose"`
	Peers     []struct {
		Endpoint string            `yaml:"endpoint"`
		Key      string            `yaml:"key"`
		Labels   map[string]string `yaml:"labels"`
	} `yaml:"peers"`
	Extra any `yaml:"extra"`
}

func TestSettingsDecode(t *testing.T) {
	src := `protocols:
  - name: a
    type: udp
    settings:
      listen: 10.0.0.1:7000
      peer: 10.0.0.2:7000
      keepalive: 25s
      workers: 4
      allowed: [10.0.0.0/8]
      verbose: true
      peers:
        - endpoint: 1.2.3.4:51820
          key: abc
          labels: {site: x}
      extra: {a: [1, two, 3.5, true, null]}
`
	c, err := Parse("gw.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	var s udpSettings
	s.Workers = 1 // a default, overridden
	if err := c.Protocols[0].Settings.Decode(&s); err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"listen", s.Listen, netip.MustParseAddrPort("10.0.0.1:7000")},
		{"keepalive", s.Keepalive, Duration(25 * time.Second)},
		{"workers", s.Workers, uint8(4)},
		{"allowed", s.Allowed, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
		{"verbose", s.Verbose != nil && *s.Verbose, true},
		{"peers[0].endpoint", s.Peers[0].Endpoint, "1.2.3.4:51820"},
		{"peers[0].labels", s.Peers[0].Labels, map[string]string{"site": "x"}},
		{"extra", s.Extra, map[string]any{"a": []any{uint64(1), "two", 3.5, true, nil}}},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.name, c.got, c.want)
		}
	}

	// Errorf points at the value, or at the nearest enclosing value.
	st := c.Protocols[0].Settings
	errorfTests := []struct{ field, want string }{
		{"listen", `gw.yaml:5:15: protocols[0].settings.listen: bad`},
		{"peers[0].endpoint", `gw.yaml:12:21: protocols[0].settings.peers[0].endpoint: bad`},
		{"peers[0].labels.site", `gw.yaml:14:26: protocols[0].settings.peers[0].labels.site: bad`},
		{"peers[0].missing", `gw.yaml:12:11: protocols[0].settings.peers[0].missing: bad`},
		{"missing", `gw.yaml:5:7: protocols[0].settings.missing: bad`},
		{"", `gw.yaml:5:7: protocols[0].settings: bad`},
	}
	for _, tt := range errorfTests {
		if got := st.Errorf(tt.field, "bad").Error(); got != tt.want {
			t.Errorf("Errorf(%q) = %q, want %q", tt.field, got, tt.want)
		}
	}
}

func TestSettingsDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{
			name: "unknown key",
			src:  "listen: 10.0.0.1:7000\nlsten: 10.0.0.1:7000\n",
			want: []string{`gw.yaml:6:7: protocols[0].settings.lsten: unknown key (did you mean "listen"?)`},
		},
		{
			name: "type errors everywhere",
			src: `listen: 10.0.0.1
workers: 300
keepalive: 25
allowed: 10.0.0.0/8
verbose: 1
peers:
  - endpoint: [a]
    kee: x
`,
			want: []string{
				`gw.yaml:5:15: protocols[0].settings.listen: must be ip:port, got "10.0.0.1": the port is missing, e.g. 10.0.0.1:7000`,
				`gw.yaml:6:16: protocols[0].settings.workers: must be between 0 and 255, got 300`,
				`gw.yaml:7:18: protocols[0].settings.keepalive: must have a unit, e.g. 10s`,
				`gw.yaml:8:16: protocols[0].settings.allowed: expected a list, got string "10.0.0.0/8"`,
				`gw.yaml:9:16: protocols[0].settings.verbose: expected true or false, got integer 1`,
				`gw.yaml:11:21: protocols[0].settings.peers[0].endpoint: expected a string, got a list`,
				`gw.yaml:12:11: protocols[0].settings.peers[0].kee: unknown key (did you mean "key"?)`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := "protocols:\n  - name: a\n    type: udp\n    settings:\n" + indent(tt.src, "      ")
			c, err := Parse("gw.yaml", []byte(src))
			if err != nil {
				t.Fatal(err)
			}
			var s udpSettings
			err = c.Protocols[0].Settings.Decode(&s)
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("Decode error %T %v, want Errors", err, err)
			}
			if got := strings.Split(err.Error(), "\n"); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestNewSettings(t *testing.T) {
	s, err := NewSettings("t.yaml", "protocols[3].settings", []byte("listen: 1.2.3.4:5\npeer: nope\n"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Listen netip.AddrPort `yaml:"listen"`
		Peer   netip.AddrPort `yaml:"peer"`
	}
	err = s.Decode(&v)
	if got, want := errString(err), `t.yaml:2:7: protocols[3].settings.peer: must be ip:port, got "nope"`; got != want {
		t.Errorf("Decode: got %q, want %q", got, want)
	}
	if got, want := s.Errorf("listen", "port %d is taken", 5).Error(), `t.yaml:1:9: protocols[3].settings.listen: port 5 is taken`; got != want {
		t.Errorf("Errorf: got %q, want %q", got, want)
	}
	if got, want := s.Pos(), (Position{"t.yaml", 1, 1}); got != want {
		t.Errorf("Pos = %v, want %v", got, want)
	}

	empty, err := NewSettings("t.yaml", "settings", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := empty.Decode(&v); err != nil {
		t.Errorf("Decode of empty settings: %v", err)
	}
	if got, want := empty.Errorf("listen", "required").Error(), `t.yaml:1:1: settings.listen: required`; got != want {
		t.Errorf("Errorf on empty: got %q, want %q", got, want)
	}

	if _, err := NewSettings("t.yaml", "settings", []byte("a: [")); err == nil {
		t.Error("NewSettings accepted bad yaml")
	}
	if err := s.Decode(v); err == nil {
		t.Error("Decode into a non-pointer succeeded")
	}
}

func TestDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    Duration
		wantErr string
	}{
		{"10s", Duration(10 * time.Second), ""},
		{"1m30s", Duration(90 * time.Second), ""},
		{"0", 0, ""},
		{"10", 0, "must have a unit, e.g. 10s"},
		{"1.5", 0, "must have a unit, e.g. 10s"},
		{"-1s", 0, "must not be negative, got -1s"},
		{"abc", 0, `invalid duration "abc", want e.g. 10s, 100ms or 1m30s`},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if got != tt.want || errString(err) != tt.wantErr {
			t.Errorf("ParseDuration(%q) = %v, %q; want %v, %q", tt.in, got, errString(err), tt.want, tt.wantErr)
		}
	}
	var d Duration
	if err := d.UnmarshalText([]byte("2s")); err != nil || d != Duration(2*time.Second) {
		t.Errorf("UnmarshalText = %v, %v", d, err)
	}
	if b, _ := d.MarshalText(); string(b) != "2s" {
		t.Errorf("MarshalText = %s", b)
	}
}

func TestValidate(t *testing.T) {
	c := Default()
	c.Routes = append(c.Routes, Route{Prefix: netip.MustParsePrefix("10.0.0.0/8"), To: "ghost"})
	c.Batch.MaxPackets = 500
	err := c.Validate()
	want := "<default>: batch.max_packets: must be between 1 and 128, got 500\n" +
		`<default>: routes[3].to: no protocol named "ghost"`
	if got := errString(err); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "gw.yaml")
	if err := os.WriteFile(path, DefaultYAML(), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.File != path {
		t.Errorf("File = %q, want %q", c.File, path)
	}
	missing := filepath.Join(dir, "nope.yaml")
	_, err = Load(missing)
	if !errors.Is(err, os.ErrNotExist) || err.Error() != "read config: "+missing+": no such file or directory" {
		t.Errorf("Load(missing) = %v", err)
	}
}

func TestErrorLimit(t *testing.T) {
	var b strings.Builder
	b.WriteString("routes:\n")
	for range MaxErrors + 50 {
		b.WriteString("  - prefix: bad\n    action: drop\n")
	}
	_, err := Parse("gw.yaml", []byte(b.String()))
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error %T", err)
	}
	if got, want := len(errs), MaxErrors+1; got != want {
		t.Fatalf("len(errs) = %d, want %d", got, want)
	}
	if got, want := errs[MaxErrors].Msg, "50 more errors not shown"; got != want {
		t.Errorf("last error = %q, want %q", got, want)
	}
}

func TestConfigErrorf(t *testing.T) {
	c := Default()
	p := c.Protocols[0]
	got := c.Errorf(p.TypePos, "protocols[0].type", "unknown protocol type %q", p.Type).Error()
	if want := `<default>:33:11: protocols[0].type: unknown protocol type "udp"`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(defaultYAML)
	f.Add([]byte(minimal))
	f.Add([]byte("a: &a [*a, *a]\nb: &b [*a, *a]\n"))
	f.Add([]byte("protocols:\n  - name: a\n    type: udp\n    settings: {<<: [{x: 1}], y: [1, {z: 2}]}\n"))
	f.Add([]byte("routes:\n  - {prefix: 10.0.0.0/33, to: x, action: drop}\n"))
	f.Add([]byte("tun: !!map {name: ? x}\n"))
	f.Add([]byte("protocols:\n  - name: a\n    type: udp\n    settings: {s: \"a\\tb: #c\", l: [[], {}, [1, 2.5, -.inf]], m: {\"k k\": ~, 7: true}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("f.yaml", data)
		if (c == nil) == (err == nil) {
			t.Fatalf("Parse = %v, %v: want exactly one", c, err)
		}
		if err != nil {
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error %T %v, want Errors", err, err)
			}
			for _, e := range errs {
				if e.Pos.File != "f.yaml" || e.Pos.Line < 1 || e.Pos.Col < 1 {
					t.Fatalf("error without a position: %q", e.Error())
				}
			}
			return
		}
		for _, p := range c.Protocols {
			var v any
			err := p.Settings.Decode(&v)
			_ = p.Settings.Errorf("a[0].b", "x")
			if err != nil {
				continue
			}
			// A block that decodes renders to text that decodes the same.
			text := p.Settings.YAML()
			back, err := NewSettings("host.yaml", p.Settings.Path(), text)
			if err != nil {
				t.Fatalf("NewSettings(YAML()): %v\n%s", err, text)
			}
			var w any
			if err := back.Decode(&w); err != nil {
				t.Fatalf("Decode of YAML(): %v\n%s", err, text)
			}
			if got, want := fmt.Sprintf("%#v", w), fmt.Sprintf("%#v", v); got != want && text != nil {
				t.Fatalf("YAML() round trip differs:\ngot  %s\nwant %s\ntext:\n%s", got, want, text)
			}
		}
	})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func indent(s, prefix string) string {
	lines := strings.SplitAfter(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = prefix + l
		}
	}
	return strings.Join(lines, "")
}

func TestParseCoDelMailbox(t *testing.T) {
	src := `mailbox: {policy: codel, target: 2ms}
protocols:
  - name: a
    type: udp
    mailbox: {interval: 50ms}
  - name: b
    type: udp
    mailbox: {policy: drop_oldest}
`
	c, err := Parse("gw.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	ms := func(n int) Duration { return Duration(time.Duration(n) * time.Millisecond) }
	tests := []struct {
		name       string
		got        Mailbox
		want       Mailbox
		wantPolicy DropPolicy
	}{
		{"top level", c.Mailbox, Mailbox{Capacity: 256, Policy: PolicyCoDel, Target: ms(2), Interval: ms(100)}, DropCoDel},
		{"a: own interval", c.Protocols[0].Mailbox, Mailbox{Capacity: 256, Policy: PolicyCoDel, Target: ms(2), Interval: ms(50)}, DropCoDel},
		{"b: own policy", c.Protocols[1].Mailbox, Mailbox{Capacity: 256, Policy: PolicyDropOldest, Target: ms(2), Interval: ms(100)}, DropOldest},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: mailbox = %+v, want %+v", tt.name, tt.got, tt.want)
		}
		if got := tt.got.Drop(); got != tt.wantPolicy || got.String() != tt.want.Policy {
			t.Errorf("%s: Drop() = %v, want %v", tt.name, got, tt.wantPolicy)
		}
	}
}
