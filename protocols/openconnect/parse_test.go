package openconnect

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"switchyard/config"
	"switchyard/protocols"
)

func configSettings(yaml string) (config.Settings, error) {
	return config.NewSettings("/etc/switchyard/test.yaml", "protocols[0].settings", []byte(yaml))
}

func TestRegistered(t *testing.T) {
	if _, ok := protocols.Lookup("openconnect"); !ok {
		t.Fatal(`protocols.Lookup("openconnect") = false`)
	}
}

func TestParseClient(t *testing.T) {
	dir := t.TempDir()
	pki := newPKI(t, dir, net.IPv4(10, 0, 0, 1), "alice")
	pw := writeSecret(t, filepath.Join(dir, "pw"), "s3cret word\r\nsecond line ignored\n")
	open := filepath.Join(dir, "open.pw")
	if err := os.WriteFile(open, []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := writeSecret(t, filepath.Join(dir, "empty.pw"), "\n")
	openKey := filepath.Join(dir, "open.key")
	keyPEM, _ := os.ReadFile(pki.clientKey)
	if err := os.WriteFile(openKey, keyPEM, 0o640); err != nil {
		t.Fatal(err)
	}
	pin := FormatPin(PinOf(pki.serverCert))
	login := "username: alice\npassword_file: " + pw + "\n"

	t.Run("full", func(t *testing.T) {
		set := mustParse(t, "mode: client\nserver: https://vpn.example.net\n"+login+
			"server_pin: "+pin+"\ndtls: false\nmtu: 1300\naccept_routes: true\ngroup: staff\n").Client
		if set.Host != "vpn.example.net:443" || set.URL.Path != "/" {
			t.Errorf("host %q path %q, want vpn.example.net:443 and /", set.Host, set.URL.Path)
		}
		if set.Password != "s3cret word" {
			t.Errorf("password %q, want the first line without its line break", set.Password)
		}
		if !set.HasPin || set.Pin != PinOf(pki.serverCert) || set.DTLS || set.MTU != 1300 || !set.AcceptRoutes || set.Group != "staff" {
			t.Errorf("got %+v", set)
		}
	})
	t.Run("defaults and certificate login", func(t *testing.T) {
		set := mustParse(t, "server: https://10.0.0.1:4443/vpn\ncert_file: "+pki.clientCert+"\nkey_file: "+pki.clientKey+
			"\nserver_ca_file: "+pki.caFile+"\n").Client
		if set.Cert == nil || set.RootCAs == nil || !set.DTLS || set.MTU != defaultMTU || set.AcceptRoutes {
			t.Errorf("got %+v", set)
		}
		if set.Host != "10.0.0.1:4443" {
			t.Errorf("host %q", set.Host)
		}
	})

	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"unknown key", "server: https://a\n" + login + "colour: red\n", []string{"colour"}},
		{"bad mode", "mode: both\n", []string{"protocols[0].settings.mode: must be client or server, got \"both\""}},
		{"no server", login, []string{"protocols[0].settings.server: is required"}},
		{"http server", "server: http://a\n" + login, []string{"server: must be an https URL"}},
		{"bad port", "server: https://a:99999\n" + login, []string{"server: port must be 1-65535"}},
		{"no login", "server: https://a\n", []string{"username: a login is required"}},
		{"user without password", "server: https://a\nusername: bob\n", []string{"password_file: is required with username"}},
		{"password readable by others", "server: https://a\nusername: bob\npassword_file: " + open + "\n",
			[]string{"password_file: " + open + " is accessible to group or others (mode 0644); chmod 600 it"}},
		{"missing password file", "server: https://a\nusername: bob\npassword_file: /nonexistent/pw\n",
			[]string{"password_file: /nonexistent/pw: no such file or directory"}},
		{"empty password", "server: https://a\nusername: bob\npassword_file: " + empty + "\n", []string{"is empty"}},
		{"key readable by group", "server: https://a\ncert_file: " + pki.clientCert + "\nkey_file: " + openKey + "\n",
			[]string{"key_file: " + openKey + " is accessible to group or others (mode 0640)"}},
		{"cert without key", "server: https://a\ncert_file: " + pki.clientCert + "\n", []string{"key_file: is required with cert_file"}},
		{"key of another cert", "server: https://a\ncert_file: " + pki.certFile + "\nkey_file: " + pki.clientKey + "\n",
			[]string{"cert_file: ", "private key does not match public key"}},
		{"pin and ca", "server: https://a\n" + login + "server_pin: " + pin + "\nserver_ca_file: " + pki.caFile + "\n",
			[]string{"server_pin: give server_ca_file or server_pin, not both"}},
		{"bad pin", "server: https://a\n" + login + "server_pin: sha1:abc\n", []string{"server_pin: must be pin-sha256:<base64>"}},
		{"short pin", "server: https://a\n" + login + "server_pin: pin-sha256:YWJj\n", []string{"32 bytes in base64"}},
		{"ca file without certs", "server: https://a\n" + login + "server_ca_file: " + pw + "\n", []string{"holds no PEM certificate"}},
		{"mtu too small", "server: https://a\n" + login + "mtu: 100\n", []string{"mtu: must be 576-9000 bytes, got 100"}},
		{"server setting in client mode", "server: https://a\n" + login + "pool: 10.0.0.0/24\n",
			[]string{"pool: is a server setting (mode: server)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := configSettings(tt.yaml)
			if err != nil {
				t.Fatal(err)
			}
			_, err = parse(s)
			if err == nil {
				t.Fatalf("got no error, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got  %v\nwant an error containing %q", err, w)
				}
			}
			if !strings.Contains(err.Error(), "/etc/switchyard/test.yaml:") {
				t.Errorf("error %q lacks the file:line:col", err)
			}
		})
	}
}

func TestPinRoundTrip(t *testing.T) {
	pki := newPKI(t, t.TempDir(), net.IPv4(10, 0, 0, 1), "alice")
	pin := PinOf(pki.serverCert)
	got, err := ParsePin(FormatPin(pin))
	if err != nil || got != pin {
		t.Errorf("ParsePin(FormatPin(pin)): got %x %v, want %x", got, err, pin)
	}
}

func TestParseServer(t *testing.T) {
	dir := t.TempDir()
	pki := newPKI(t, dir, net.IPv4(10, 0, 0, 1), "alice")
	users := filepath.Join(dir, "users")
	writeUsers(t, users, map[string]string{"alice": "pw"})
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	badLine := write("bad-line", "alice:*\n")
	badHash := write("bad-hash", "alice:*:plaintext\n")
	dup := write("dup", "a:*:$5$salt$abc\na:*:$5$salt$abc\n")
	locked := write("locked", "a:*:!$5$salt$abc\n")
	base := "mode: server\nlisten: 10.0.0.1:443\ncert_file: " + pki.certFile + "\nkey_file: " + pki.keyFile + "\n"

	set := mustParse(t, base+"users_file: "+users+"\nclient_ca_file: "+pki.caFile+
		"\npool: 192.168.99.7/24\nroutes: [10.1.2.3/16, \"fd00::/64\"]\ndns: [10.0.0.53]\ndpd: 10s\nkeepalive: 5s\ndtls: false\nmtu: 1300\n").Server
	if set.Listen.String() != "10.0.0.1:443" || set.Pool.String() != "192.168.99.0/24" || len(set.Users) != 1 ||
		set.ClientCAs == nil || len(set.Routes) != 2 || set.Routes[0].String() != "10.1.0.0/16" || len(set.DNS) != 1 ||
		set.DPD.Seconds() != 10 || set.Keepalive.Seconds() != 5 || set.DTLS || set.MTU != 1300 {
		t.Errorf("got %+v", set)
	}
	if def := mustParse(t, base+"users_file: "+users+"\npool: 192.168.99.0/24\n").Server; !def.DTLS ||
		def.DPD != defaultServerDPD || def.Keepalive != defaultServerKeepalive || def.MTU != defaultMTU {
		t.Errorf("defaults: got %+v", def)
	}

	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"no listen", "mode: server\n", []string{"listen: is required", "cert_file: is required", "users_file: a login is required", "pool: is required"}},
		{"bad listen", "mode: server\nlisten: 10.0.0.1\n", []string{"listen: must be ip:port"}},
		{"bad pool", base + "users_file: " + users + "\npool: fd00::/64\n", []string{"pool: must be an IPv4 prefix /8 to /30"}},
		{"tiny pool", base + "users_file: " + users + "\npool: 10.0.0.0/31\n", []string{"pool: must be an IPv4 prefix /8 to /30"}},
		{"bad route", base + "users_file: " + users + "\npool: 10.0.0.0/24\nroutes: [nowhere]\n", []string{"routes[0]: must be a prefix"}},
		{"bad dns", base + "users_file: " + users + "\npool: 10.0.0.0/24\ndns: [x]\n", []string{"dns[0]: must be an IP address"}},
		{"dpd with ms", base + "users_file: " + users + "\npool: 10.0.0.0/24\ndpd: 1500ms\n", []string{"dpd: must be whole seconds"}},
		{"users line", base + "users_file: " + badLine + "\npool: 10.0.0.0/24\n", []string{badLine + ":1: want user:group:hash"}},
		{"users hash", base + "users_file: " + badHash + "\npool: 10.0.0.0/24\n", []string{badHash + ":1: user alice: not a $5$ or $6$ crypt hash"}},
		{"users dup", base + "users_file: " + dup + "\npool: 10.0.0.0/24\n", []string{dup + ":2: user a appears twice"}},
		{"all locked", base + "users_file: " + locked + "\npool: 10.0.0.0/24\n", []string{"has no (unlocked) user"}},
		{"client setting", base + "users_file: " + users + "\npool: 10.0.0.0/24\nserver_pin: x\n", []string{"server_pin: is a client setting (mode: client)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := configSettings(tt.yaml)
			if err != nil {
				t.Fatal(err)
			}
			_, err = parse(s)
			if err == nil {
				t.Fatalf("got no error, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got  %v\nwant an error containing %q", err, w)
				}
			}
		})
	}
}

func TestInfoGauges(t *testing.T) {
	c := ClientInfo{State: "connected", Channel: "dtls", Reconnects: 2}.Gauges()
	if len(c) != 4 || c[0].Value != 1 || c[1].Value != 1 || c[2].Value != 2 {
		t.Errorf("client gauges %+v", c)
	}
	s := ServerInfo{Peers: []PeerInfo{{User: "a", RxPackets: 5}}, AuthFailures: 3}.Gauges()
	found := map[string]float64{}
	for _, g := range s {
		found[g.Name] = g.Value
	}
	if found["openconnect_peer_rx_packets"] != 5 || found["openconnect_auth_failures"] != 3 {
		t.Errorf("server gauges %+v", s)
	}
}
