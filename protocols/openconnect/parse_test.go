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
