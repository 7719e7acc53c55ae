package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"switchyard/config"
)

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", string(config.DefaultYAML()))
	bad := write("bad.yaml", `tun:
  mtu: abc
mailbox:
  policy: drop_middle
routes:
  - prefix: 10.0.0.0/33
    to: nowhere
protocols:
  - name: p
    type: udp
    settings: {listen: "10.0.0.1:0", peer: "10.0.0.2:7000"}
`)
	badSettings := write("settings.yaml", `routes: [{prefix: 10.0.0.0/8, to: p}]
protocols:
  - name: p
    type: udp
    settings: {listen: "10.0.0.1:0", peer: "10.0.0.2:7000"}
`)
	// Issue 12, finding 7: run could not bind the second protocol.
	const testPrivateKey, testPublicKey = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=", "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
	samePort := write("ports.yaml", `protocols:
  - name: a
    type: udp
    settings: {listen: "10.0.0.1:7000", peer: "10.0.0.2:7000"}
  - name: b
    type: wireguard
    settings:
      private_key: `+testPrivateKey+`
      listen_port: 7000
      peers: [{public_key: `+testPublicKey+`, allowed_ips: [10.9.0.0/24]}]
`)
	tests := []struct {
		name     string
		file     string
		wantCode int
		wantOut  string
		wantErrs []string // each must appear in stderr, with its position
	}{
		{"default config", good, 0, "ok\n", nil},
		{"every error reported", bad, 1, "", []string{
			"bad.yaml:2:8: tun.mtu:",
			"bad.yaml:4:11: mailbox.policy:",
			"bad.yaml:6:13: routes[0].prefix:",
			"bad.yaml:7:9: routes[0].to:",
		}},
		{"protocol settings", badSettings, 1, "", []string{"settings.yaml:5:24: protocols[0].settings.listen:"}},
		{"missing file", filepath.Join(dir, "nope.yaml"), 1, "", []string{"nope.yaml"}},
		{"two protocols on one port", samePort, 1, "", []string{`ports.yaml:9:20: protocols[1].settings.listen_port: udp port 7000 is already bound by protocol "a" (protocols[0].settings.listen, line 4); a protocol binds its port on every address of this machine`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if got := check(tt.file, &stdout, &stderr); got != tt.wantCode {
				t.Fatalf("exit code = %d, want %d; stderr:\n%s", got, tt.wantCode, stderr.String())
			}
			if got := stdout.String(); tt.wantOut == "" && got != "" {
				t.Errorf("stdout = %q, want nothing", got)
			} else if tt.wantOut != "" && (!strings.HasPrefix(got, tt.wantOut) || !strings.Contains(got, "worst-case memory: ")) {
				t.Errorf("stdout = %q, want %q and the worst-case memory", got, tt.wantOut)
			}
			for _, want := range tt.wantErrs {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
				}
			}
		})
	}
}
