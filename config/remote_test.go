package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// tlsFiles writes a CA, a certificate and a key (mode 0600) to dir and
// returns the remote.tls block naming them by relative path.
func tlsFiles(t *testing.T, dir string) string {
	t.Helper()
	writeToken(t, dir, "ca.pem", "-----BEGIN CERTIFICATE-----\n", 0o644)
	writeToken(t, dir, "node.pem", "-----BEGIN CERTIFICATE-----\n", 0o644)
	writeToken(t, dir, "node.key", "-----BEGIN PRIVATE KEY-----\n", 0o600)
	return "  tls:\n    ca: ca.pem\n    cert: node.pem\n    key: node.key\n"
}

func TestRemoteAndHosts(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "gw.yaml")
	src := minimal + `remote:
  listen: 0.0.0.0:7000
  window: 1024
` + tlsFiles(t, dir) + `hosts:
  - name: vpn-host
    listen: 10.0.0.5:7100
    spawn: true
  - name: local
    listen: 127.0.0.2:7100
protocols:
  - name: peer-b
    type: udp
    host: vpn-host
  - name: here
    type: udp
`
	c, err := Parse(cfgFile, []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"remote", c.Remote, Remote{
			Listen: netip.MustParseAddrPort("0.0.0.0:7000"),
			Window: 1024,
			TLS: TLS{
				CA:   filepath.Join(dir, "ca.pem"),
				Cert: filepath.Join(dir, "node.pem"),
				Key:  filepath.Join(dir, "node.key"),
			},
			Pos: Position{cfgFile, 4, 3},
		}},
		{"remote loopback", c.Remote.IsLoopback(), false},
		{"tls enabled", c.Remote.TLS.Enabled(), true},
		{"hosts", c.Hosts, []Host{
			{Name: "vpn-host", Listen: netip.MustParseAddrPort("10.0.0.5:7100"), Spawn: true, Transport: TransportSHM, Pos: Position{cfgFile, 11, 5}},
			{Name: "local", Listen: netip.MustParseAddrPort("127.0.0.2:7100"), Transport: TransportSHM, Pos: Position{cfgFile, 14, 5}},
		}},
		{"hosts[1] loopback", c.Hosts[1].IsLoopback(), true},
		{"protocols[0].host", c.Protocols[0].Host, "vpn-host"},
		{"protocols[0].host pos", c.Protocols[0].HostPos, Position{cfgFile, 19, 11}},
		{"protocols[1].host", c.Protocols[1].Host, ""},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %+v, want %+v", c.name, c.got, c.want)
		}
	}
	h, ok := c.Host("vpn-host")
	if got, want := []any{h.Name, ok}, []any{"vpn-host", true}; !reflect.DeepEqual(got, want) {
		t.Errorf("Host(vpn-host) = %v, want %v", got, want)
	}
	if _, ok := c.Host("nope"); ok {
		t.Error("Host(nope) found a host")
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate of a parsed config: %v", err)
	}

	// TLS paths that are absolute are kept as they are.
	abs := strings.NewReplacer("ca.pem", filepath.Join(dir, "ca.pem")).Replace(src)
	if c, err := Parse(filepath.Join(t.TempDir(), "elsewhere.yaml"), []byte(abs)); err == nil {
		t.Errorf("Parse found cert and key relative to another directory: %+v", c.Remote.TLS)
	} else if got := err.Error(); strings.Contains(got, "remote.tls.ca") {
		t.Errorf("absolute ca path refused: %v", got)
	}
}

// TestRemoteErrors checks the exact text, position and path of every
// remote: and hosts: problem.
func TestRemoteErrors(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "gw.yaml")
	tlsBlock := tlsFiles(t, dir)
	writeToken(t, dir, "open.key", "key", 0o644)
	writeToken(t, dir, "short.secret", "abcde", 0o600)
	writeToken(t, dir, "group.key", "key", 0o640)
	writeToken(t, dir, "empty.pem", "", 0o644)
	if err := os.Mkdir(filepath.Join(dir, "adir"), 0o700); err != nil {
		t.Fatal(err)
	}
	at := func(file string) string { return filepath.Join(dir, file) }
	// Every case starts with minimal (2 lines): line 3 is the first of src.
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{
			name: "unknown host",
			src:  "hosts:\n  - {name: a, listen: 127.0.0.1:7100, spawn: true}\n  - {name: b, listen: 127.0.0.1:7101, spawn: true}\nprotocols:\n  - {name: p0, type: udp}\n  - {name: p1, type: udp, host: a}\n  - name: p2\n    type: udp\n    host: x\n",
			want: []string{`gw.yaml:11:11: protocols[2].host: unknown host "x" (hosts: [a b])`},
		},
		{
			name: "unknown host without hosts",
			src:  "protocols:\n  - {name: p, type: udp, host: vpn}\n",
			want: []string{`gw.yaml:4:32: protocols[0].host: unknown host "vpn" (hosts: [])`},
		},
		{
			name: "misspelt host key",
			src:  "hosts:\n  - name: a\n    listen: 127.0.0.1:7100\n    spwan: true\n",
			want: []string{
				"gw.yaml:4:5: hosts[0].spawn: a host the daemon does not spawn needs remote.secret_file (start the host with --secret-file of the same file) or remote.tls: otherwise any local user can connect to its port and open instances on it",
				`gw.yaml:6:5: hosts[0].spwan: unknown key (did you mean "spawn"?)`,
			},
		},
		{
			name: "unknown remote key",
			src:  "remote:\n  windw: 8\n  tls: {crt: b}\n",
			want: []string{
				`gw.yaml:4:3: remote.windw: unknown key (did you mean "window"?)`,
				`gw.yaml:5:9: remote.tls.crt: unknown key (did you mean "cert"?)`,
			},
		},
		{
			name: "host name and listen required",
			src:  "hosts:\n  - spawn: true\n",
			want: []string{
				`gw.yaml:4:5: hosts[0].name: required`,
				`gw.yaml:4:5: hosts[0].listen: required: the ip:port the host listens on`,
			},
		},
		{
			name: "bad host name",
			src:  "hosts:\n  - {name: VPN_Host, listen: 127.0.0.1:7100, spawn: true}\n",
			want: []string{`gw.yaml:4:12: hosts[0].name: must match [a-z0-9][a-z0-9._-]* and be at most 32 bytes, got "VPN_Host"`},
		},
		{
			name: "duplicate host names and listen addresses",
			src: `hosts:
  - name: a
    listen: 127.0.0.1:7100
    spawn: true
  - name: a
    listen: 127.0.0.1:7101
    spawn: true
  - name: c
    listen: 127.0.0.1:7100
    spawn: true
  - name: d
    listen: 127.0.0.1:7101
    spawn: true
`,
			want: []string{
				`gw.yaml:7:11: hosts[1].name: duplicate host name "a" (first at line 4)`,
				`gw.yaml:11:13: hosts[2].listen: duplicate listen address 127.0.0.1:7100 (first at line 5)`,
				`gw.yaml:14:13: hosts[3].listen: duplicate listen address 127.0.0.1:7101 (first at line 8)`,
			},
		},
		{
			name: "host listen not ip:port",
			src:  "hosts:\n  - name: a\n    listen: vpn.example:7100\n  - name: b\n    listen: 127.0.0.1\n",
			want: []string{
				`gw.yaml:5:13: hosts[0].listen: must be ip:port, got "vpn.example:7100": host names are not resolved here, give an IP address`,
				`gw.yaml:7:13: hosts[1].listen: must be ip:port, got "127.0.0.1": the port is missing, e.g. 127.0.0.1:7000`,
			},
		},
		{
			name: "host listen port 0",
			src:  "hosts:\n  - {name: a, listen: 127.0.0.1:0, spawn: true}\n",
			want: []string{`gw.yaml:4:23: hosts[0].listen: port must be 1-65535, got 0: the daemon dials this address, so it must know the port`},
		},
		{
			name: "host listen is remote.listen",
			src:  "remote:\n  listen: 127.0.0.1:7000\nhosts:\n  - {name: a, listen: 127.0.0.1:7000, spawn: true}\n",
			want: []string{`gw.yaml:6:23: hosts[0].listen: 127.0.0.1:7000 is remote.listen, the daemon's own listener`},
		},
		{
			name: "remote listen not ip:port",
			src:  "remote:\n  listen: localhost:7000\n",
			want: []string{`gw.yaml:4:11: remote.listen: must be ip:port, got "localhost:7000": host names are not resolved here, give an IP address`},
		},
		{
			name: "window out of range",
			src:  "remote:\n  window: 0\n",
			want: []string{`gw.yaml:4:11: remote.window: must be between 1 and 1024 batches, got 0`},
		},
		{
			name: "window too large",
			src:  "remote: {window: 1025}\n",
			want: []string{`gw.yaml:3:18: remote.window: must be between 1 and 1024 batches, got 1025`},
		},
		{
			name: "tls partly set",
			src:  "remote:\n  tls:\n    cert: node.pem\n",
			want: []string{
				`gw.yaml:5:5: remote.tls.ca: required: mutual TLS needs remote.tls.ca, remote.tls.cert and remote.tls.key`,
				`gw.yaml:5:5: remote.tls.key: required: mutual TLS needs remote.tls.ca, remote.tls.cert and remote.tls.key`,
			},
		},
		{
			name: "host not loopback without tls",
			src:  "hosts:\n  - name: vpn-host\n    listen: 10.0.0.5:7100\n",
			want: []string{`gw.yaml:5:13: hosts[0].listen: 10.0.0.5:7100 is not a loopback address: mutual TLS required (set remote.tls.ca, remote.tls.cert and remote.tls.key)`},
		},
		{
			name: "remote any address without tls",
			src:  "remote:\n  listen: 0.0.0.0:0\nhosts:\n  - {name: a, listen: \"0.0.0.0:7100\"}\n",
			want: []string{
				`gw.yaml:4:11: remote.listen: 0.0.0.0:0 is not a loopback address: mutual TLS required (set remote.tls.ca, remote.tls.cert and remote.tls.key)`,
				`gw.yaml:6:23: hosts[0].listen: 0.0.0.0:7100 is not a loopback address: mutual TLS required (set remote.tls.ca, remote.tls.cert and remote.tls.key)`,
			},
		},
		{
			// protoactor's remote writes "host:port" without brackets:
			// run failed with "too many colons in address".
			name: "ipv6 remote addresses",
			src:  "remote:\n  listen: \"[::1]:0\"\nhosts:\n  - {name: a, listen: \"[::ffff:127.0.0.1]:7100\", spawn: true}\n  - {name: b, listen: \"[fd00::1]:7100\"}\n",
			want: []string{
				`gw.yaml:4:11: remote.listen: [::1]:0 is an IPv6 address: protoactor remote addresses are host:port without brackets, so it fails with "too many colons"; use an IPv4 address such as 127.0.0.1`,
				`gw.yaml:6:23: hosts[0].listen: [::ffff:127.0.0.1]:7100 is an IPv4-mapped IPv6 address; write it as 127.0.0.1:7100`,
				`gw.yaml:7:23: hosts[1].listen: [fd00::1]:7100 is an IPv6 address: protoactor remote addresses are host:port without brackets, so it fails with "too many colons"; use an IPv4 address such as 127.0.0.1`,
			},
		},
		{
			name: "tcp listeners of this machine on one port",
			src: `admin:
  listen: 127.0.0.1:7000
remote:
  listen: 0.0.0.0:7000
` + tlsBlock + `hosts:
  - {name: a, listen: 127.0.0.1:7100, spawn: true}
  - {name: b, listen: 127.0.0.2:7100}
  - {name: c, listen: 0.0.0.0:7100, spawn: true}
  - {name: d, listen: 10.0.0.9:7000}
`,
			want: []string{
				`gw.yaml:6:11: remote.listen: 0.0.0.0:7000 takes the port of admin.listen 127.0.0.1:7000: both listen on this machine`,
				`gw.yaml:14:23: hosts[2].listen: 0.0.0.0:7100 takes the port of hosts[0].listen 127.0.0.1:7100: both listen on this machine`,
			},
		},
		{
			name: "tls files missing or open",
			src:  "remote:\n  tls:\n    ca: nope.pem\n    cert: adir\n    key: open.key\n",
			want: []string{
				`gw.yaml:5:9: remote.tls.ca: ` + at("nope.pem") + `: no such file or directory`,
				`gw.yaml:6:11: remote.tls.cert: ` + at("adir") + ` is not a regular file but a directory`,
				`gw.yaml:7:10: remote.tls.key: ` + at("open.key") + ` is accessible to group or others (mode 0644); chmod 600 it`,
			},
		},
		{
			name: "secret file open to others",
			src:  "remote:\n  secret_file: open.key\n",
			want: []string{`gw.yaml:4:16: remote.secret_file: ` + at("open.key") + ` is accessible to group or others (mode 0644); chmod 600 it`},
		},
		{
			name: "secret file too short",
			src:  "remote:\n  secret_file: short.secret\n",
			want: []string{`gw.yaml:4:16: remote.secret_file: ` + at("short.secret") + `: the token has 5 characters, want at least 16 (e.g. openssl rand -hex 32)`},
		},
		{
			name: "group-readable key and empty ca",
			src:  "remote:\n  tls: {ca: empty.pem, cert: node.pem, key: group.key}\n",
			want: []string{
				`gw.yaml:4:13: remote.tls.ca: ` + at("empty.pem") + ` is empty`,
				`gw.yaml:4:45: remote.tls.key: ` + at("group.key") + ` is accessible to group or others (mode 0640); chmod 600 it`,
			},
		},
		{
			name: "tls given, the host name still wrong",
			src:  "remote:\n  listen: 10.0.0.1:7000\n" + tlsBlock + "hosts:\n  - {name: a, listen: 10.0.0.5:7100}\nprotocols:\n  - {name: p, type: udp, host: b}\n",
			want: []string{`gw.yaml:12:32: protocols[0].host: unknown host "b" (hosts: [a])`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(cfgFile, []byte(minimal+tt.src))
			if err == nil {
				t.Fatalf("Parse succeeded (%+v), want errors:\n%s", c.Remote, strings.Join(tt.want, "\n"))
			}
			got := strings.Split(err.Error(), "\n")
			for i := range tt.want {
				tt.want[i] = strings.Replace(tt.want[i], "gw.yaml", cfgFile, 1)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// TestHostSecret checks that a host the daemon does not spawn, reached on
// a loopback port any local user can connect to, needs a secret or TLS.
func TestHostSecret(t *testing.T) {
	tls := TLS{CA: "/etc/switchyard/ca.pem", Cert: "/etc/switchyard/node.pem", Key: "/etc/switchyard/node.key"}
	const refused = "<default>: hosts[0].spawn: a host the daemon does not spawn needs remote.secret_file " +
		"(start the host with --secret-file of the same file) or remote.tls: otherwise any local user can connect to its port and open instances on it"
	tests := []struct {
		name       string
		spawn      bool
		secretFile string
		tls        TLS
		want       string
	}{
		{"spawned", true, "", TLS{}, ""},
		{"by hand, nothing", false, "", TLS{}, refused},
		{"by hand, secret", false, "/etc/switchyard/remote.secret", TLS{}, ""},
		{"by hand, tls", false, "", tls, ""},
	}
	for _, tt := range tests {
		c := Default()
		c.Remote.TLS = tt.tls
		c.Remote.SecretFile = tt.secretFile
		c.Hosts = []Host{{Name: "h", Listen: netip.MustParseAddrPort("127.0.0.1:7100"), Spawn: tt.spawn}}
		c.Protocols[0].Host = "h"
		if got := errString(c.Validate()); got != tt.want {
			t.Errorf("%s:\ngot  %q\nwant %q", tt.name, got, tt.want)
		}
	}
}

// TestRemoteValidate checks the loopback rule for configs built in code,
// where no file is read.
func TestRemoteValidate(t *testing.T) {
	tls := TLS{CA: "/etc/switchyard/ca.pem", Cert: "/etc/switchyard/node.pem", Key: "/etc/switchyard/node.key"}
	tests := []struct {
		remote, host string
		tls          TLS
		want         string
	}{
		{"127.0.0.1:0", "127.0.0.1:7100", TLS{}, ""},
		{"127.0.0.1:0", "127.0.0.2:7100", TLS{}, ""},
		{"[::1]:0", "[::ffff:127.0.0.2]:7100", TLS{},
			"<default>: hosts[0].listen: [::ffff:127.0.0.2]:7100 is an IPv4-mapped IPv6 address; write it as 127.0.0.2:7100\n" +
				`<default>:8:3: remote.listen: [::1]:0 is an IPv6 address: protoactor remote addresses are host:port without brackets, so it fails with "too many colons"; use an IPv4 address such as 127.0.0.1`},
		{"127.0.0.1:0", "192.0.2.1:7100", TLS{},
			"<default>: hosts[0].listen: 192.0.2.1:7100 is not a loopback address: mutual TLS required (set remote.tls.ca, remote.tls.cert and remote.tls.key)"},
		{"0.0.0.0:7000", "127.0.0.1:7100", TLS{},
			"<default>:8:3: remote.listen: 0.0.0.0:7000 is not a loopback address: mutual TLS required (set remote.tls.ca, remote.tls.cert and remote.tls.key)"},
		{"0.0.0.0:7000", "192.0.2.1:7100", tls, ""},
		{"127.0.0.1:0", "192.0.2.1:7100", TLS{CA: tls.CA},
			"<default>: hosts[0].listen: 192.0.2.1:7100 is not a loopback address: mutual TLS required (set remote.tls.ca, remote.tls.cert and remote.tls.key)\n" +
				"<default>:8:3: remote.tls.cert: required: mutual TLS needs remote.tls.ca, remote.tls.cert and remote.tls.key\n" +
				"<default>:8:3: remote.tls.key: required: mutual TLS needs remote.tls.ca, remote.tls.cert and remote.tls.key"},
	}
	for _, tt := range tests {
		c := Default()
		c.Remote.Listen = netip.MustParseAddrPort(tt.remote)
		c.Remote.TLS = tt.tls
		c.Hosts = []Host{{Name: "h", Listen: netip.MustParseAddrPort(tt.host), Spawn: true}}
		c.Protocols[0].Host = "h"
		if got := errString(c.Validate()); got != tt.want {
			t.Errorf("remote %s, host %s, tls %+v:\ngot  %q\nwant %q", tt.remote, tt.host, tt.tls, got, tt.want)
		}
	}

	c := Default()
	c.Protocols[0].Host = "ghost"
	c.Remote.Window = 0
	want := "<default>:8:3: remote.window: must be between 1 and 1024 batches, got 0\n" +
		`<default>:32:5: protocols[0].host: unknown host "ghost" (hosts: [])`
	if got := errString(c.Validate()); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestHostTransport(t *testing.T) {
	for _, tc := range []struct {
		name, host string
		want       string // the transport, or an error's text
		bad        bool
	}{
		{"spawned: shm by default", `{name: h, listen: "127.0.0.1:7100", spawn: true}`, "shm", false},
		{"loopback, not spawned: shm by default", `{name: h, listen: "127.0.0.1:7100", spawn: true}`, "shm", false},
		{"grpc asked for", `{name: h, listen: "127.0.0.1:7100", spawn: true, transport: grpc}`, "grpc", false},
		{"another machine: grpc by default", `{name: h, listen: "10.0.0.5:7100"}`, "grpc", false},
		{"shm on another machine", `{name: h, listen: "10.0.0.5:7100", transport: shm}`, "hosts[0].transport: shm needs the host on this machine", true},
		{"unknown", `{name: h, listen: "127.0.0.1:7100", transport: quic, spawn: true}`, `hosts[0].transport: must be shm or grpc, got "quic"`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			yaml := "remote:\n" + tlsFiles(t, dir) + "hosts:\n  - " + tc.host + "\n"
			cfg, err := Parse(filepath.Join(dir, "t.yaml"), []byte(yaml))
			if tc.bad {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("Parse = %v, want an error containing %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Hosts[0].Transport; got != tc.want {
				t.Errorf("transport = %q, want %q", got, tc.want)
			}
		})
	}
}
