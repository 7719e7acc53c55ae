package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const testToken = "0123456789abcdef0123456789abcdef"

// writeToken writes content to dir/name with mode and returns the path.
func writeToken(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // WriteFile's mode passes the umask
		t.Fatal(err)
	}
	return path
}

func TestAdminToken(t *testing.T) {
	dir := t.TempDir()
	writeToken(t, dir, "token", testToken+"\n", 0o600)
	abs := writeToken(t, dir, "abs-token", " "+testToken+"x\n", 0o400)
	cfgFile := filepath.Join(dir, "gw.yaml")

	tests := []struct {
		name      string
		src       string
		loopback  bool
		tokenFile string
		token     string
	}{
		{"default: loopback, no token", minimal, true, "", ""},
		{"ipv6 loopback", minimal + "admin:\n  listen: \"[::1]:9190\"\n", true, "", ""},
		{"loopback with a token", minimal + "admin:\n  listen: 127.0.0.2:9190\n  token_file: token\n", true, "token", testToken},
		{"any address with a token (relative path)", minimal + "admin:\n  listen: 0.0.0.0:9190\n  token_file: token\n", false, "token", testToken},
		{"absolute path", minimal + "admin:\n  listen: 10.0.0.1:9190\n  token_file: " + abs + "\n", false, abs, testToken + "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(cfgFile, []byte(tt.src))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			got := []any{c.Admin.IsLoopback(), c.Admin.TokenFile, c.Admin.Token}
			want := []any{tt.loopback, tt.tokenFile, tt.token}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("loopback, token_file, token = %v, want %v", got, want)
			}
			if err := c.Validate(); err != nil {
				t.Errorf("Validate of a parsed config: %v", err)
			}
		})
	}
}

func TestAdminTokenErrors(t *testing.T) {
	dir := t.TempDir()
	writeToken(t, dir, "world", testToken, 0o644)
	writeToken(t, dir, "group", testToken, 0o640)
	writeToken(t, dir, "empty", "\n", 0o600)
	writeToken(t, dir, "short", "abc123\n", 0o600)
	writeToken(t, dir, "two-words", testToken+" "+testToken+"\n", 0o600)
	writeToken(t, dir, "huge", strings.Repeat("a", MaxTokenFileBytes+1), 0o600)
	if err := os.Mkdir(filepath.Join(dir, "adir"), 0o700); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "gw.yaml")
	at := func(file string) string { return filepath.Join(dir, file) }

	tests := []struct {
		name string
		src  string
		want []string
	}{
		{
			name: "non-loopback listen without a token",
			src:  minimal + "admin:\n  listen: 0.0.0.0:9190\n",
			want: []string{cfgFile + `:4:11: admin.listen: 0.0.0.0 is not a loopback address: anyone who reaches it could read the stats and profiles, so it needs admin.token_file (a bearer token); or listen on 127.0.0.1`},
		},
		{
			name: "ipv6 non-loopback listen without a token",
			src:  minimal + "admin:\n  listen: \"[fd00::1]:9190\"\n",
			want: []string{cfgFile + `:4:11: admin.listen: fd00::1 is not a loopback address: anyone who reaches it could read the stats and profiles, so it needs admin.token_file (a bearer token); or listen on 127.0.0.1`},
		},
		{
			name: "world-readable token file",
			src:  minimal + "admin:\n  listen: 10.0.0.1:9190\n  token_file: world\n",
			want: []string{cfgFile + `:5:15: admin.token_file: ` + at("world") + ` is accessible to group or others (mode 0644); chmod 600 it`},
		},
		{
			name: "group-readable token file",
			src:  minimal + "admin:\n  token_file: group\n",
			want: []string{cfgFile + `:4:15: admin.token_file: ` + at("group") + ` is accessible to group or others (mode 0640); chmod 600 it`},
		},
		{
			name: "missing token file",
			src:  minimal + "admin:\n  listen: 10.0.0.1:9190\n  token_file: nope\n",
			want: []string{cfgFile + `:5:15: admin.token_file: ` + at("nope") + `: no such file or directory`},
		},
		{
			name: "empty token file",
			src:  minimal + "admin:\n  token_file: empty\n",
			want: []string{cfgFile + `:4:15: admin.token_file: ` + at("empty") + ` is empty; put a token in it, e.g. openssl rand -hex 32`},
		},
		{
			name: "short token",
			src:  minimal + "admin:\n  token_file: short\n",
			want: []string{cfgFile + `:4:15: admin.token_file: ` + at("short") + `: the token has 6 characters, want at least 16 (e.g. openssl rand -hex 32)`},
		},
		{
			name: "two words",
			src:  minimal + "admin:\n  token_file: two-words\n",
			want: []string{cfgFile + `:4:15: admin.token_file: ` + at("two-words") + `: the token must be one word of printable ASCII (no spaces or line breaks)`},
		},
		{
			name: "huge file",
			src:  minimal + "admin:\n  token_file: huge\n",
			want: []string{cfgFile + `:4:15: admin.token_file: ` + at("huge") + `: larger than 4096 bytes, not a token file`},
		},
		{
			name: "a directory",
			src:  minimal + "admin:\n  token_file: adir\n",
			want: []string{cfgFile + `:4:15: admin.token_file: ` + at("adir") + ` is not a regular file but a directory`},
		},
		{
			name: "unknown admin key",
			src:  minimal + "admin:\n  token: abc\n",
			want: []string{cfgFile + `:4:3: admin.token: unknown key (known keys: listen, token_file)`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(cfgFile, []byte(tt.src))
			if err == nil {
				t.Fatalf("Parse succeeded (token %q), want errors:\n%s", c.Admin.Token, strings.Join(tt.want, "\n"))
			}
			got := strings.Split(err.Error(), "\n")
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// TestAdminValidate checks the rule for configs built in code, where no
// file is read.
func TestAdminValidate(t *testing.T) {
	tests := []struct {
		listen, tokenFile string
		ok                bool
	}{
		{"127.0.0.1:9190", "", true},
		{"[::1]:9190", "", true},
		{"[::ffff:127.0.0.1]:9190", "", true},
		{"0.0.0.0:9190", "", false},
		{"[::]:9190", "", false},
		{"192.0.2.1:9190", "", false},
		{"192.0.2.1:9190", "/etc/switchyard/admin.token", true},
	}
	for _, tt := range tests {
		c := Default()
		c.Admin.Listen = netip.MustParseAddrPort(tt.listen)
		c.Admin.TokenFile = tt.tokenFile
		err := c.Validate()
		if got := err == nil; got != tt.ok {
			t.Errorf("listen %s, token_file %q: Validate() = %v, want ok = %v", tt.listen, tt.tokenFile, err, tt.ok)
		}
	}
}
