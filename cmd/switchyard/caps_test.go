package main

import (
	"strings"
	"testing"
)

func TestParseProcStatus(t *testing.T) {
	tests := []struct {
		name    string
		status  string
		want    procCaps
		wantErr string
	}{
		{
			name:   "root",
			status: "Name:\tswitchyard\nCapInh:\t0000000000000000\nCapPrm:\t000001fffeffffff\nCapEff:\t000001fffeffffff\nCapBnd:\t000001fffeffffff\nCapAmb:\t0000000000000000\n",
			want:   procCaps{Prm: 0x1fffeffffff, Eff: 0x1fffeffffff, Bnd: 0x1fffeffffff},
		},
		{
			name:   "restricted daemon",
			status: "CapInh:\t0000000000001400\nCapPrm:\t0000000000001400\nCapEff:\t0000000000001400\nCapBnd:\t0000000000001400\nCapAmb:\t0000000000001400\n",
			want:   procCaps{Inh: daemonCaps, Prm: daemonCaps, Eff: daemonCaps, Bnd: daemonCaps, Amb: daemonCaps},
		},
		{name: "missing lines", status: "CapEff:\t0000000000001400\n", wantErr: "found 1 of the 5 Cap* lines"},
		{name: "garbage", status: "CapInh:\tzz\n", wantErr: `CapInh: "zz"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseProcStatus(strings.NewReader(tt.status))
			switch {
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("got %+v, %v; want an error containing %q", got, err, tt.wantErr)
				}
			case err != nil:
				t.Errorf("got %v, want %+v", err, tt.want)
			case got != tt.want:
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestCapSet(t *testing.T) {
	tests := []struct {
		set  capSet
		want string
	}{
		{0, "none"},
		{daemonCaps, "cap_net_bind_service,cap_net_admin"},
		{capsOf(capNetBindService), "cap_net_bind_service"},
		{0x1fffeffffff, "000001fffeffffff"},
	}
	for _, tt := range tests {
		if got := tt.set.String(); got != tt.want {
			t.Errorf("capSet(%#x).String() = %q, want %q", uint64(tt.set), got, tt.want)
		}
	}
	if got := daemonCaps; got != 0x1400 {
		t.Errorf("daemonCaps = %#x, want 0x1400 (CapEff of a daemon that keeps CAP_NET_ADMIN and CAP_NET_BIND_SERVICE)", uint64(got))
	}
	root := procCaps{Prm: 0x1fffeffffff, Eff: 0x1fffeffffff, Bnd: 0x1fffeffffff}
	if root.within(daemonCaps) {
		t.Errorf("root's %v within %v", root, daemonCaps)
	}
	if (procCaps{Prm: daemonCaps, Eff: daemonCaps, Bnd: 0x1fffeffffff}).within(daemonCaps) != true {
		t.Errorf("a restricted daemon with a full bounding set is not within %v", daemonCaps)
	}
}

func TestParseHostCaps(t *testing.T) {
	tests := []struct {
		list    string
		want    capSet
		wantErr bool
	}{
		{"", 0, false},
		{"net_bind_service", capsOf(capNetBindService), false},
		{" net_bind_service, ", capsOf(capNetBindService), false},
		{"net_admin", 0, true},
		{"sys_admin,net_bind_service", 0, true},
	}
	for _, tt := range tests {
		got, err := parseHostCaps(tt.list)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseHostCaps(%q) = %v, %v; want %v, error %v", tt.list, got, err, tt.want, tt.wantErr)
		}
	}
}
