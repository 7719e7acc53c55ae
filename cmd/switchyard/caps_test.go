package main

import (
	"bufio"
	"strings"
	"testing"
)

func TestNetAdminIn(t *testing.T) {
	tests := []struct {
		status string
		want   bool
	}{
		{"Name:\tswitchyard\nCapInh:\t0000000000000000\nCapEff:\t0000000000001400\n", true}, // NET_ADMIN + NET_BIND_SERVICE
		{"CapEff:\t000001ffffffffff\n", true},                                               // root
		{"CapEff:\t0000000000000400\n", false},                                              // NET_BIND_SERVICE only
		{"CapEff:\t0000000000000000\n", false},
		{"CapEff:\tzz\n", false},
		{"Name:\tx\n", false},
	}
	for _, tt := range tests {
		if got := netAdminIn(bufio.NewScanner(strings.NewReader(tt.status))); got != tt.want {
			t.Errorf("netAdminIn(%q) = %v, want %v", tt.status, got, tt.want)
		}
	}
}
