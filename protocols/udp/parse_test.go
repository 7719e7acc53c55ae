package udp

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"switchyard/config"
	"switchyard/protocols"
)

func TestRegistered(t *testing.T) {
	if _, ok := protocols.Lookup("udp"); !ok {
		t.Fatal(`protocols.Lookup("udp") = false`)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		want    Settings
		wantErr []string // substrings of the error, all required
	}{
		{
			name: "ipv4",
			yaml: "listen: 10.91.0.1:7000\npeer: 10.91.0.2:7001\n",
			want: Settings{Listen: netip.MustParseAddrPort("10.91.0.1:7000"), Peer: netip.MustParseAddrPort("10.91.0.2:7001")},
		},
		{
			name: "ipv6",
			yaml: "listen: '[fd00::1]:7000'\npeer: '[fd00::2]:7000'\n",
			want: Settings{Listen: netip.MustParseAddrPort("[fd00::1]:7000"), Peer: netip.MustParseAddrPort("[fd00::2]:7000")},
		},
		{
			name: "unspecified listen",
			yaml: "listen: 0.0.0.0:7000\npeer: 192.0.2.1:7000\n",
			want: Settings{Listen: netip.MustParseAddrPort("0.0.0.0:7000"), Peer: netip.MustParseAddrPort("192.0.2.1:7000")},
		},
		{
			name: "ipv4-mapped is unmapped",
			yaml: "listen: '[::ffff:10.0.0.1]:7000'\npeer: 10.0.0.2:7000\n",
			want: Settings{Listen: netip.MustParseAddrPort("10.0.0.1:7000"), Peer: netip.MustParseAddrPort("10.0.0.2:7000")},
		},
		{
			name:    "missing both",
			yaml:    "{}\n",
			wantErr: []string{"protocols[0].settings.listen: is required", "protocols[0].settings.peer: is required"},
		},
		{
			name:    "missing peer",
			yaml:    "listen: 10.0.0.1:7000\n",
			wantErr: []string{"protocols[0].settings.peer: is required"},
		},
		{
			name:    "no port",
			yaml:    "listen: 10.0.0.1\npeer: 10.0.0.2:7000\n",
			wantErr: []string{`protocols[0].settings.listen: must be ip:port, got "10.0.0.1"`},
		},
		{
			name:    "host name",
			yaml:    "listen: 10.0.0.1:7000\npeer: peer.example:7000\n",
			wantErr: []string{`protocols[0].settings.peer: must be ip:port, got "peer.example:7000"`},
		},
		{
			name:    "port 0",
			yaml:    "listen: 10.0.0.1:0\npeer: 10.0.0.2:7000\n",
			wantErr: []string{"protocols[0].settings.listen: port must be 1-65535, got 0"},
		},
		{
			name:    "port too big",
			yaml:    "listen: 10.0.0.1:7000\npeer: 10.0.0.2:70000\n",
			wantErr: []string{"protocols[0].settings.peer: port must be 1-65535, got 70000"},
		},
		{
			name:    "family mismatch",
			yaml:    "listen: 10.0.0.1:7000\npeer: '[fd00::2]:7000'\n",
			wantErr: []string{"protocols[0].settings.peer: must be the same address family as listen (IPv4)"},
		},
		{
			name:    "unspecified peer",
			yaml:    "listen: 10.0.0.1:7000\npeer: 0.0.0.0:7000\n",
			wantErr: []string{`protocols[0].settings.peer: must be a unicast address, got "0.0.0.0:7000"`},
		},
		{
			name:    "multicast peer",
			yaml:    "listen: 10.0.0.1:7000\npeer: 239.1.1.1:7000\n",
			wantErr: []string{"protocols[0].settings.peer: must be a unicast address"},
		},
		{
			name:    "multicast listen",
			yaml:    "listen: '[ff02::1]:7000'\npeer: '[fd00::2]:7000'\n",
			wantErr: []string{"protocols[0].settings.listen: must be a unicast or unspecified address"},
		},
		{
			name:    "zone",
			yaml:    "listen: '[fe80::1%eth0]:7000'\npeer: '[fe80::2]:7000'\n",
			wantErr: []string{"protocols[0].settings.listen: IPv6 zones are not supported"},
		},
		{
			name: "allowed_sources",
			yaml: "listen: 10.0.0.1:7000\npeer: 10.0.0.2:7000\nallowed_sources: [10.90.0.7/24, 'fd90::/64', 192.0.2.1]\n",
			want: Settings{Listen: netip.MustParseAddrPort("10.0.0.1:7000"), Peer: netip.MustParseAddrPort("10.0.0.2:7000"),
				AllowedSources: []netip.Prefix{netip.MustParsePrefix("10.90.0.0/24"), netip.MustParsePrefix("fd90::/64"),
					netip.MustParsePrefix("192.0.2.1/32")}},
		},
		{
			name: "allowed_sources null is absent",
			yaml: "listen: 10.0.0.1:7000\npeer: 10.0.0.2:7000\nallowed_sources: null\n",
			want: Settings{Listen: netip.MustParseAddrPort("10.0.0.1:7000"), Peer: netip.MustParseAddrPort("10.0.0.2:7000")},
		},
		{
			name:    "allowed_sources empty",
			yaml:    "listen: 10.0.0.1:7000\npeer: 10.0.0.2:7000\nallowed_sources: []\n",
			wantErr: []string{"test.yaml:3:18: protocols[0].settings.allowed_sources: must list at least one prefix"},
		},
		{
			name:    "allowed_sources not a prefix",
			yaml:    "listen: 10.0.0.1:7000\npeer: 10.0.0.2:7000\nallowed_sources:\n  - 10.90.0.0/24\n  - 10.90.0.0/33\n",
			wantErr: []string{`test.yaml:5:5: protocols[0].settings.allowed_sources[1]: must be a prefix such as 10.90.0.0/24 or fd90::/64, or an address, got "10.90.0.0/33"`},
		},
		{
			name:    "allowed_sources zone",
			yaml:    "listen: 10.0.0.1:7000\npeer: 10.0.0.2:7000\nallowed_sources: ['fe80::1%eth0']\n",
			wantErr: []string{"test.yaml:3:19: protocols[0].settings.allowed_sources[0]: must be a prefix"},
		},
		{
			name:    "allowed_sources mapped",
			yaml:    "listen: 10.0.0.1:7000\npeer: 10.0.0.2:7000\nallowed_sources: ['::ffff:10.50.0.0/112']\n",
			wantErr: []string{"test.yaml:3:19: protocols[0].settings.allowed_sources[0]: write IPv4 prefixes in IPv4 form"},
		},
		{
			name:    "allowed_sources duplicate after masking",
			yaml:    "listen: 10.0.0.1:7000\npeer: 10.0.0.2:7000\nallowed_sources: [10.90.0.0/24, 10.90.0.9/24]\n",
			wantErr: []string{"test.yaml:3:33: protocols[0].settings.allowed_sources[1]: duplicate prefix 10.90.0.0/24"},
		},
		{
			name:    "allowed_sources not a list",
			yaml:    "listen: 10.0.0.1:7000\npeer: 10.0.0.2:7000\nallowed_sources: 10.90.0.0/24\n",
			wantErr: []string{"test.yaml:3:18: protocols[0].settings.allowed_sources:"},
		},
		{
			name:    "unknown key",
			yaml:    "listen: 10.0.0.1:7000\npeer: 10.0.0.2:7000\nmtu: 1400\n",
			wantErr: []string{"protocols[0].settings.mtu: unknown key"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := config.NewSettings("test.yaml", "protocols[0].settings", []byte(tt.yaml))
			if err != nil {
				t.Fatalf("NewSettings: %v", err)
			}
			got, err := parse(s)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("parse() error = %v", err)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Fatalf("parse() = %+v, want %+v", got, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("parse() = %+v, want error containing %q", got, tt.wantErr)
			}
			if got != nil {
				t.Errorf("parse() returned %+v with an error", got)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("parse() error = %q, want it to contain %q", err, want)
				}
			}
			if !strings.Contains(err.Error(), "test.yaml:") {
				t.Errorf("parse() error = %q, want a file:line:col position", err)
			}
		})
	}
}
