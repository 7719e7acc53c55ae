package config

import "testing"

// TestAddressMessages: an address that does not parse says why, where
// netip's reason ("too many colons", "unexpected character") left the
// operator guessing (issue 12, weaker points).
func TestAddressMessages(t *testing.T) {
	tests := []struct {
		value, want string
	}{
		{"fd00::1:7000", `admin.listen: must be ip:port, got "fd00::1:7000": an IPv6 address with a port needs brackets, [fd00::1]:7000`},
		{"[fd00::1]", `admin.listen: must be ip:port, got "[fd00::1]"`},
		{"fd00::1", `admin.listen: must be ip:port, got "fd00::1": the port is missing, e.g. [fd00::1]:7000`},
		{"127.0.0.1:70000", `admin.listen: must be ip:port, got "127.0.0.1:70000": port 70000 is out of range 0-65535`},
		{"127.0.0.1:http", `admin.listen: must be ip:port, got "127.0.0.1:http": port "http" is not a number`},
		{"gw-a.example.net:9190", `admin.listen: must be ip:port, got "gw-a.example.net:9190": host names are not resolved here, give an IP address`},
		{"1.2.3.4:80:90", `admin.listen: must be ip:port, got "1.2.3.4:80:90"`},
	}
	for _, tt := range tests {
		_, err := Parse("gw.yaml", []byte(minimal+"admin:\n  listen: \""+tt.value+"\"\n"))
		if got, want := errString(err), "gw.yaml:4:11: "+tt.want; got != want {
			t.Errorf("listen %q:\ngot  %s\nwant %s", tt.value, got, want)
		}
	}
	_, err := Parse("gw.yaml", []byte(minimal+"routes:\n  - {prefix: 10.0.0.1, action: drop}\n  - {prefix: \"fd00::1\", action: drop}\n"))
	want := `gw.yaml:4:14: routes[0].prefix: invalid prefix "10.0.0.1": a prefix needs its length, e.g. 10.0.0.1/32` + "\n" +
		`gw.yaml:5:14: routes[1].prefix: invalid prefix "fd00::1": a prefix needs its length, e.g. fd00::1/128`
	if got := errString(err); got != want {
		t.Errorf("prefixes:\ngot  %s\nwant %s", got, want)
	}
}
