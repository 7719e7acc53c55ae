package ipsec

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"switchyard/config"
	"switchyard/protocols/ipsec/ike"
)

func TestParse(t *testing.T) {
	dir := t.TempDir()
	psk := writeSecret(t, filepath.Join(dir, "psk"), "secret\n")
	hexPSK := writeSecret(t, filepath.Join(dir, "hex"), "0x0102ff\n")
	open := filepath.Join(dir, "open")
	if err := os.WriteFile(open, []byte("secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := "local_addrs: 10.0.0.1\nremote_addrs: 10.0.0.2\n"
	tests := []struct {
		name string
		yaml string
		errs []string // substrings; none: must parse
	}{
		{"minimal", base + "psk_file: " + psk + "\n", nil},
		{"hex psk", base + "psk_file: " + hexPSK + "\n", nil},
		{"psk readable by others", base + "psk_file: " + open + "\n",
			[]string{"test.yaml:3:11: protocols[0].settings.psk_file: " + open + " is accessible to group or others (mode 0644); chmod 600 it"}},
		{"no psk", base, []string{"psk_file: is required with auth: psk"}},
		{"no addresses", "psk_file: " + psk + "\n", []string{"local_addrs: is required", "remote_addrs: is required"}},
		{"families", "local_addrs: 10.0.0.1\nremote_addrs: fd00::2\npsk_file: " + psk + "\n", []string{"remote_addrs: must be the address family"}},
		{"bad proposal", base + "psk_file: " + psk + "\nproposals: [aes256-sha256-modp2048]\n", []string{"proposals[0]: unsupported algorithm \"aes256\""}},
		{"no dh", base + "psk_file: " + psk + "\nproposals: [aes256gcm16-prfsha256]\n", []string{"needs an AEAD"}},
		{"pfs", base + "psk_file: " + psk + "\nesp_proposals: [aes256gcm16-x25519]\n", []string{"(PFS) are not supported"}},
		{"ts", base + "psk_file: " + psk + "\nlocal_ts: [10.1.0.0/24, nonsense]\n", []string{"local_ts[1]: must be a prefix"}},
		{"pubkey without files", base + "auth: pubkey\n", []string{"cert_file: is required with auth: pubkey"}},
		{"cert with psk", base + "psk_file: " + psk + "\ncert_file: x.pem\n", []string{"cert_file: is for auth: pubkey"}},
		{"vips", base + "psk_file: " + psk + "\nvips: [0.0.0.0]\n", nil},
		{"vips v6", base + "psk_file: " + psk + "\nvips: [\"::\"]\n", []string{"vips[0]: must be an IPv4 address"}},
		{"pool on initiator", base + "psk_file: " + psk + "\npool: 10.3.0.0/24\n", []string{"pool: is for mode: responder"}},
		{"responder", base + "psk_file: " + psk + "\nmode: responder\n", nil},
		{"mode", base + "psk_file: " + psk + "\nmode: server\n", []string{"mode: must be initiator or responder"}},
		{"short rekey", base + "psk_file: " + psk + "\nrekey_time: 1s\n", []string{"rekey_time: must be at least 2s"}},
		{"ports", base + "psk_file: " + psk + "\nlocal_port: 4500\n", []string{"natt_port: must differ from local_port"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := config.NewSettings("test.yaml", "protocols[0].settings", []byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			_, err = parse(s)
			if len(tc.errs) == 0 {
				if err != nil {
					t.Fatalf("got %v, want no error", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got no error, want %q", tc.errs)
			}
			for _, want := range tc.errs {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("got %q, want it to contain %q", err, want)
				}
			}
		})
	}
}

func TestParseDefaults(t *testing.T) {
	psk := writeSecret(t, filepath.Join(t.TempDir(), "psk"), "0x0102ff\n")
	set := mustParse(t, "local_addrs: 10.0.0.1\nremote_addrs: 10.0.0.2\nlocal_id: alice@example.org\nremote_id: \"@gw\"\npsk_file: "+psk+"\n")
	if string(set.PSK) != "\x01\x02\xff" {
		t.Errorf("psk %q", set.PSK)
	}
	if set.LocalID.Type != ike.IDEmail || set.RemoteID.Type != ike.IDFQDN || string(set.RemoteID.Data) != "gw" {
		t.Errorf("ids %+v %+v", set.LocalID, set.RemoteID)
	}
	if got := len(set.Proposals); got != 2 {
		t.Errorf("%d default proposals, want 2", got)
	}
	if set.LocalTS[0].String() != "10.0.0.1/32" || set.RemoteTS[0].String() != "10.0.0.2/32" {
		t.Errorf("default selectors %v %v", set.LocalTS, set.RemoteTS)
	}
	if set.LocalPort != 500 || set.NATTPort != 4500 || set.RemoteNATT != 4500 {
		t.Errorf("ports %d %d %d", set.LocalPort, set.NATTPort, set.RemoteNATT)
	}
	if ParseIdentity("10.0.0.1").Type != ike.IDIPv4 || ParseIdentity("@#0a0b").Type != ike.IDKeyID {
		t.Error("identity types")
	}
}

func TestJittered(t *testing.T) {
	for _, seed := range []uint64{0, 1, 0xdeadbeef, ^uint64(0)} {
		got := jittered(time.Hour, seed)
		if got > time.Hour || got < 54*time.Minute {
			t.Errorf("jittered(1h, %#x) = %v, want within [54m, 1h]", seed, got)
		}
	}
	if jittered(time.Hour, 1) == jittered(time.Hour, 2) {
		t.Error("two SAs got the same jitter")
	}
}
