package main

import "testing"

func TestCapsMarker(t *testing.T) {
	before := procCaps{Prm: 0x1fffeffffff, Eff: 0x1fffeffffff, Bnd: 0x1fffeffffff, Amb: 0x400, Inh: 0x1400}
	pid, got, ok := parseCapsMarker(capsMarker(4242, before))
	if !ok || pid != 4242 || got != before {
		t.Errorf("round trip: %d %+v %v, want 4242 %+v true", pid, got, ok, before)
	}
	for _, bad := range []string{"", "4242", "x:0:0:0:0:0", "1:0:0:zz:0:0", "1:0:0:0:0:0:0"} {
		if _, _, ok := parseCapsMarker(bad); ok {
			t.Errorf("parseCapsMarker(%q): ok, want refused", bad)
		}
	}
}
