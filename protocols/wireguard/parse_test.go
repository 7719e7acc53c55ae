package wireguard

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"switchyard/config"
	"switchyard/protocols"
	"switchyard/stats"
)

// Fixed test keys (generated with wg genkey / wg pubkey).
const (
	privA = "aGjZNLSb2J5giv7jo+XUHyszn9nyr4oBWFwJtgY0Ekk="
	pubA  = "w9l6eQn4v7hsyDBIDvTNBTNjage4tNP2asSSHO/EkkM="
	privB = "YPkBR7iGuCGZIvXK0jMCJhdUt3Uc3Y6/5kNM3c3Pn1c="
	pubB  = "iKpViponbk2Ia6OP2V38CvT3VskPiRg4yN9PEVE1Y2E="
	psk   = "/A1u14+3nJU3xKVp2ak7pyk0J0W2i2y1xZpXfT3YVr0="
)

func mustKey(s string) Key {
	k, err := ParseKey(s)
	if err != nil {
		panic(err)
	}
	return k
}

func TestRegistered(t *testing.T) {
	if _, ok := protocols.Lookup("wireguard"); !ok {
		t.Fatal(`protocols.Lookup("wireguard") = false`)
	}
}

func TestTestKeys(t *testing.T) {
	for priv, pub := range map[string]string{privA: pubA, privB: pubB} {
		if got := PublicKey(mustKey(priv)).String(); got != pub {
			t.Errorf("PublicKey(%s) = %s, want %s", priv, got, pub)
		}
	}
}

func parseText(t *testing.T, text string) (any, error) {
	t.Helper()
	s, err := config.NewSettings(filepath.Join(t.TempDir(), "test.yaml"), "protocols[2].settings", []byte(text))
	if err != nil {
		t.Fatalf("NewSettings: %v", err)
	}
	return parse(s)
}

func TestParse(t *testing.T) {
	peerB := "peers:\n  - public_key: " + pubB + "\n    allowed_ips: [10.90.0.2/32]\n"
	tests := []struct {
		name    string
		yaml    string
		want    *Settings
		wantErr []string // substrings of the error, all required
	}{
		{
			name: "full",
			yaml: "private_key: " + privA + "\nlisten_port: 51820\npeers:\n" +
				"  - public_key: " + pubB + "\n    endpoint: 10.91.0.2:51820\n" +
				"    allowed_ips: [10.90.0.0/24, \"fd90::/64\", 10.1.2.3/16]\n" +
				"    persistent_keepalive: 25s\n    preshared_key: " + psk + "\n",
			want: &Settings{PrivateKey: mustKey(privA), ListenPort: 51820, Peers: []Peer{{
				PublicKey: mustKey(pubB), PresharedKey: mustKey(psk),
				Endpoint: netip.MustParseAddrPort("10.91.0.2:51820"),
				AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.90.0.0/24"),
					netip.MustParsePrefix("fd90::/64"), netip.MustParsePrefix("10.1.0.0/16")},
				PersistentKeepalive: 25 * time.Second,
			}}},
		},
		{
			name: "minimal responder",
			yaml: "private_key: " + privA + "\n" + peerB,
			want: &Settings{PrivateKey: mustKey(privA), Peers: []Peer{{
				PublicKey: mustKey(pubB), AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.90.0.2/32")}}}},
		},
		{
			name: "ipv6 endpoint",
			yaml: "private_key: " + privA + "\npeers:\n  - public_key: " + pubB +
				"\n    endpoint: '[fd91::2]:51820'\n    allowed_ips: ['::/0']\n",
			want: &Settings{PrivateKey: mustKey(privA), Peers: []Peer{{
				PublicKey: mustKey(pubB), Endpoint: netip.MustParseAddrPort("[fd91::2]:51820"),
				AllowedIPs: []netip.Prefix{netip.MustParsePrefix("::/0")}}}},
		},
		{
			name:    "port 0",
			yaml:    "private_key: " + privA + "\nlisten_port: 0\n" + peerB,
			wantErr: []string{"protocols[2].settings.listen_port: must be 1-65535, got 0"},
		},
		{
			name:    "port too big",
			yaml:    "private_key: " + privA + "\nlisten_port: 70000\n" + peerB,
			wantErr: []string{"protocols[2].settings.listen_port: must be 1-65535, got 70000"},
		},
		{
			name:    "no private key",
			yaml:    peerB,
			wantErr: []string{"protocols[2].settings.private_key: is required (give private_key or private_key_file)"},
		},
		{
			name:    "both private keys",
			yaml:    "private_key: " + privA + "\nprivate_key_file: /nonexistent\n" + peerB,
			wantErr: []string{"protocols[2].settings.private_key_file: give private_key or private_key_file, not both"},
		},
		{
			name:    "bad base64",
			yaml:    "private_key: not-a-key!\n" + peerB,
			wantErr: []string{"protocols[2].settings.private_key: is not valid base64"},
		},
		{
			name:    "short key",
			yaml:    "private_key: AAAA\n" + peerB,
			wantErr: []string{"protocols[2].settings.private_key: decodes to 3 bytes, want 32"},
		},
		{
			name:    "no peers",
			yaml:    "private_key: " + privA + "\n",
			wantErr: []string{"protocols[2].settings.peers: at least one peer is required"},
		},
		{
			name: "duplicate peer",
			yaml: "private_key: " + privA + "\npeers:\n" +
				"  - public_key: " + pubB + "\n    allowed_ips: [10.0.0.1/32]\n" +
				"  - public_key: " + pubB + "\n    allowed_ips: [10.0.0.2/32]\n",
			wantErr: []string{"protocols[2].settings.peers[1].public_key: duplicate: peers[0] has the same key"},
		},
		{
			name:    "own key as peer",
			yaml:    "private_key: " + privA + "\npeers:\n  - public_key: " + pubA + "\n    allowed_ips: [10.0.0.1/32]\n",
			wantErr: []string{"protocols[2].settings.peers[0].public_key: is this instance's own public key"},
		},
		{
			name:    "missing public key",
			yaml:    "private_key: " + privA + "\npeers:\n  - allowed_ips: [10.0.0.1/32]\n",
			wantErr: []string{"protocols[2].settings.peers[0].public_key: is required"},
		},
		{
			name: "bad allowed ips",
			yaml: "private_key: " + privA + "\npeers:\n  - public_key: " + pubB +
				"\n    allowed_ips: [10.0.0.0/33, banana, '::ffff:10.0.0.0/104']\n",
			wantErr: []string{
				`protocols[2].settings.peers[0].allowed_ips[0]: must be a prefix such as 10.90.0.0/24 or fd90::/64, got "10.0.0.0/33"`,
				`protocols[2].settings.peers[0].allowed_ips[1]: must be a prefix`,
				`protocols[2].settings.peers[0].allowed_ips[2]: write IPv4 prefixes in IPv4 form`,
			},
		},
		{
			name: "allowed ip of two peers",
			yaml: "private_key: " + privA + "\npeers:\n" +
				"  - public_key: " + pubB + "\n    allowed_ips: [10.0.0.0/24]\n" +
				"  - public_key: " + pubA[:40] + "AAA=\n    allowed_ips: [10.0.0.7/24]\n",
			wantErr: []string{"protocols[2].settings.peers[1].allowed_ips[0]: 10.0.0.0/24 is already allowed for peers[0]"},
		},
		{
			name:    "no allowed ips",
			yaml:    "private_key: " + privA + "\npeers:\n  - public_key: " + pubB + "\n",
			wantErr: []string{"protocols[2].settings.peers[0].allowed_ips: at least one prefix is required"},
		},
		{
			name: "endpoint not ip:port",
			yaml: "private_key: " + privA + "\npeers:\n  - public_key: " + pubB +
				"\n    endpoint: vpn.example.com:51820\n    allowed_ips: [10.0.0.1/32]\n",
			wantErr: []string{`protocols[2].settings.peers[0].endpoint: must be ip:port (host names are not resolved), got "vpn.example.com:51820"`},
		},
		{
			name: "endpoint port",
			yaml: "private_key: " + privA + "\npeers:\n  - public_key: " + pubB +
				"\n    endpoint: 10.0.0.1:0\n    allowed_ips: [10.0.0.1/32]\n",
			wantErr: []string{"protocols[2].settings.peers[0].endpoint: port must be 1-65535, got 0"},
		},
		{
			name: "keepalive without unit",
			yaml: "private_key: " + privA + "\npeers:\n  - public_key: " + pubB +
				"\n    persistent_keepalive: 25\n    allowed_ips: [10.0.0.1/32]\n",
			wantErr: []string{"protocols[2].settings.peers[0].persistent_keepalive: must have a unit"},
		},
		{
			name: "keepalive fraction",
			yaml: "private_key: " + privA + "\npeers:\n  - public_key: " + pubB +
				"\n    persistent_keepalive: 1500ms\n    allowed_ips: [10.0.0.1/32]\n",
			wantErr: []string{"protocols[2].settings.peers[0].persistent_keepalive: must be whole seconds, got 1.5s"},
		},
		{
			name: "keepalive too long",
			yaml: "private_key: " + privA + "\npeers:\n  - public_key: " + pubB +
				"\n    persistent_keepalive: 24h\n    allowed_ips: [10.0.0.1/32]\n",
			wantErr: []string{"protocols[2].settings.peers[0].persistent_keepalive: must be at most 18h12m15s, got 24h0m0s"},
		},
		{
			name:    "unknown key",
			yaml:    "private_key: " + privA + "\nmtu: 1400\n" + peerB,
			wantErr: []string{"protocols[2].settings.mtu: unknown key"},
		},
		{
			name:    "unknown peer key",
			yaml:    "private_key: " + privA + "\npeers:\n  - public_key: " + pubB + "\n    allowed_ips: [10.0.0.1/32]\n    allowed_ip: 10.0.0.2/32\n",
			wantErr: []string{"protocols[2].settings.peers[0].allowed_ip: unknown key"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseText(t, tt.yaml)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("parse() error = %v", err)
				}
				if !reflect.DeepEqual(got, *tt.want) {
					t.Fatalf("parse() = %+v, want %+v", got, *tt.want)
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

// TestParseErrorPosition: an error points at the line and column of the
// value.
func TestParseErrorPosition(t *testing.T) {
	_, err := parseText(t, "private_key: "+privA+"\nlisten_port: 0\npeers:\n  - public_key: "+pubB+"\n    allowed_ips: [10.0.0.1/32]\n")
	if err == nil || !strings.Contains(err.Error(), "test.yaml:2:14: protocols[2].settings.listen_port") {
		t.Fatalf("error = %v, want it at test.yaml:2:14", err)
	}
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // umask
			t.Fatal(err)
		}
		return p
	}
	good := write("good.key", privA+"\n", 0o600)
	worldReadable := write("open.key", privA+"\n", 0o644)
	groupReadable := write("group.key", privA+"\n", 0o640)
	garbage := write("garbage.key", "hello\n", 0o600)
	pskFile := write("psk", psk+"\n", 0o400)
	pskOpen := write("psk-open", psk+"\n", 0o604)
	peer := func(extra string) string {
		return "peers:\n  - public_key: " + pubB + "\n    allowed_ips: [10.0.0.1/32]\n" + extra
	}

	got, err := parseText(t, "private_key_file: "+good+"\n"+peer("    preshared_key_file: "+pskFile+"\n"))
	if err != nil {
		t.Fatalf("good key files: %v", err)
	}
	set := got.(Settings)
	if set.PrivateKey != mustKey(privA) || set.Peers[0].PresharedKey != mustKey(psk) {
		t.Errorf("keys read from files do not match")
	}

	tests := []struct {
		name, yaml, want string
	}{
		{"world readable", "private_key_file: " + worldReadable + "\n" + peer(""),
			"protocols[2].settings.private_key_file: " + worldReadable + " is readable by others (mode 0644); chmod 600 it"},
		{"group readable", "private_key_file: " + groupReadable + "\n" + peer(""),
			"protocols[2].settings.private_key_file: " + groupReadable + " is readable by others (mode 0640); chmod 600 it"},
		{"psk readable", "private_key: " + privA + "\n" + peer("    preshared_key_file: "+pskOpen+"\n"),
			"protocols[2].settings.peers[0].preshared_key_file: " + pskOpen + " is readable by others (mode 0604); chmod 600 it"},
		{"missing", "private_key_file: " + filepath.Join(dir, "nope") + "\n" + peer(""),
			"protocols[2].settings.private_key_file: " + filepath.Join(dir, "nope") + ": no such file or directory"},
		{"garbage", "private_key_file: " + garbage + "\n" + peer(""),
			"protocols[2].settings.private_key_file: " + garbage + ": key is not valid base64"},
		{"directory", "private_key_file: " + dir + "\n" + peer(""),
			"is not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseText(t, tt.yaml)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("parse() error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// TestKeyFileRelative: a relative key file is found next to the config file.
func TestKeyFileRelative(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "office.key"), []byte(privA), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := config.NewSettings(filepath.Join(dir, "switchyard.yaml"), "protocols[0].settings",
		[]byte("private_key_file: office.key\npeers:\n  - public_key: "+pubB+"\n    allowed_ips: [10.0.0.1/32]\n"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := parse(s)
	if err != nil {
		t.Fatal(err)
	}
	if got.(Settings).PrivateKey != mustKey(privA) {
		t.Error("wrong key")
	}
}

func TestUAPI(t *testing.T) {
	set := Settings{PrivateKey: mustKey(privA), ListenPort: 51820, Peers: []Peer{{
		PublicKey: mustKey(pubB), PresharedKey: mustKey(psk),
		Endpoint:            netip.MustParseAddrPort("[fd91::2]:51820"),
		AllowedIPs:          []netip.Prefix{netip.MustParsePrefix("10.90.0.0/24"), netip.MustParsePrefix("fd90::/64")},
		PersistentKeepalive: 25 * time.Second,
	}}}
	got := newWGActor("x", set, protocols.Env{}).uapi()
	want := "private_key=6868d934b49bd89e608afee3a3e5d41f2b339fd9f2af8a01585c09b606341249\n" +
		"listen_port=51820\nreplace_peers=true\n" +
		"public_key=88aa558a9a276e4d886ba38fd95dfc0af4f756c90f891838c8df4f1151356361\n" +
		"preshared_key=fc0d6ed78fb79c9537c4a569d9a93ba729342745b68b6cb5c59a577d3dd856bd\n" +
		"endpoint=[fd91::2]:51820\npersistent_keepalive_interval=25\nreplace_allowed_ips=true\n" +
		"allowed_ip=10.90.0.0/24\nallowed_ip=fd90::/64\n"
	if got != want {
		t.Errorf("uapi() =\n%s\nwant\n%s", got, want)
	}
	// With Env.Mark the device marks its sockets (the daemon's full tunnel).
	got = newWGActor("x", set, protocols.Env{Mark: 0x5359}).uapi()
	if want := "listen_port=51820\nfwmark=21337\nreplace_peers=true\n"; !strings.Contains(got, want) {
		t.Errorf("uapi() with a mark =\n%s\nwant it to contain\n%s", got, want)
	}
}

func TestInfoGauges(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	hs := now.Add(-42 * time.Second)
	in := Info{PublicKey: "self", Peers: []PeerInfo{{PublicKey: "KEYA=", LastHandshake: &hs}, {PublicKey: "KEYB="}}}
	got := map[string]float64{}
	for _, g := range in.gaugesAt(now) {
		got[g.Name+"{"+g.Labels["peer"]+"}"] = g.Value
	}
	want := map[string]float64{
		"wireguard_peer_handshake_age_seconds{KEYA=}":            42,
		"wireguard_peer_last_handshake_timestamp_seconds{KEYA=}": float64(hs.Unix()),
		"wireguard_peer_last_handshake_timestamp_seconds{KEYB=}": 0,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("gauges = %v, want %v", got, want)
	}
	var _ stats.MetricsInfo = in // what the node's /metrics looks for
}
