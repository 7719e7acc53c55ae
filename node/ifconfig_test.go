package node

import (
	"net/netip"
	"slices"
	"testing"
)

// TestBSDCommandLines: the ifconfig and route arguments of tun_bsd.go, as
// wg-quick writes them on macOS and FreeBSD (checked here on any system;
// nothing has run them on macOS or FreeBSD).
func TestBSDCommandLines(t *testing.T) {
	tests := []struct {
		name string
		got  []string
		want []string
	}{
		{"add IPv4 address", ifconfigAddressArgs("utun5", netip.MustParsePrefix("10.90.0.1/24"), true),
			[]string{"utun5", "inet", "10.90.0.1/24", "10.90.0.1", "alias"}},
		{"add IPv6 address", ifconfigAddressArgs("utun5", netip.MustParsePrefix("fd90::1/64"), true),
			[]string{"utun5", "inet6", "fd90::1/64", "alias"}},
		{"delete IPv4 address", ifconfigAddressArgs("utun5", netip.MustParsePrefix("10.90.0.1/24"), false),
			[]string{"utun5", "inet", "10.90.0.1", "-alias"}},
		{"delete IPv6 address", ifconfigAddressArgs("tun0", netip.MustParsePrefix("fd90::1/64"), false),
			[]string{"tun0", "inet6", "fd90::1", "-alias"}},
		{"add IPv4 route", routeArgs("utun5", netip.MustParsePrefix("10.66.1.2/16"), true),
			[]string{"-q", "-n", "add", "-inet", "10.66.0.0/16", "-interface", "utun5"}},
		{"delete IPv6 route", routeArgs("tun0", netip.MustParsePrefix("fd66::/64"), false),
			[]string{"-q", "-n", "delete", "-inet6", "fd66::/64", "-interface", "tun0"}},
	}
	for _, tt := range tests {
		if !slices.Equal(tt.got, tt.want) {
			t.Errorf("%s: got %q, want %q", tt.name, tt.got, tt.want)
		}
	}
}
