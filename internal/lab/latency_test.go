package lab

import (
	"reflect"
	"testing"
	"time"
)

func TestParseRTTs(t *testing.T) {
	out := `PING 10.90.0.2 (10.90.0.2) 56 data bytes
64 bytes from 10.90.0.2: icmp_seq=1 time=0.231 ms
64 bytes from 10.90.0.2: icmp_seq=3 ttl=64 time=1.500 ms
From 10.90.0.2 icmp_seq=2 Packet filtered

--- 10.90.0.2 ping statistics ---
4 packets transmitted, 2 received, +1 errors, 50% packet loss, time 30ms
rtt min/avg/max/mdev = 0.231/0.865/1.500/0.634 ms
`
	got, err := parseRTTs(out)
	if err != nil {
		t.Fatal(err)
	}
	want := RTTSample{Sent: 4, RTTs: []float64{231, 1500}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseRTTs = %+v, want %+v", got, want)
	}
	if got.Lost() != 2 {
		t.Errorf("Lost = %d, want 2", got.Lost())
	}
	if _, err := parseRTTs("ping: socket: Operation not permitted\n"); err == nil {
		t.Error("output without a summary parsed")
	}
}

func TestLoadedPings(t *testing.T) {
	tests := []struct {
		run  time.Duration
		want int
	}{
		{10 * time.Second, LatencyPings},          // 8.5 s fit 850: capped
		{2 * time.Second, 50},                     // (2 − 1 − 0.5) s / 10 ms
		{1600 * time.Millisecond, minLoadedPings}, // exactly 10
		{1590 * time.Millisecond, 0},              // 9 fit: none
		{500 * time.Millisecond, 0},               // shorter than the warm-up
	}
	for _, tt := range tests {
		if got := loadedPings(tt.run); got != tt.want {
			t.Errorf("loadedPings(%v) = %d, want %d", tt.run, got, tt.want)
		}
	}
}

func TestGroups(t *testing.T) {
	c := func(key, ref string) Case { return Case{Key: key, Ref: ref} }
	keys := func(groups [][]Case) [][]string {
		var out [][]string
		for _, g := range groups {
			var ks []string
			for _, x := range g {
				ks = append(ks, x.Key)
			}
			out = append(out, ks)
		}
		return out
	}
	tests := []struct {
		name  string
		cases []Case
		want  [][]string
	}{
		{"the default cases", Cases(), [][]string{
			{"veth"}, {"wireguard-go", "wireguard-b128"}, {"bare", "udp-b128", "udp-codel-b128", "udp-pool1k-b128", "udp-b1"},
			{"udp-oop-b128"}, {"udp-oop1-b128"}, {"udp-grpc-b128"}, {"udp-grpc1-b128"},
			{"udp-oop-b1"}, {"udp-grpc-b1"}, {"wireguard-oop-b128"},
			{"openvpn", "openvpn-sy-client", "openvpn-sy-pair"},
			{"ipsec-strongswan", "ipsec-sy-strongswan", "ipsec-b128"}, {"udp-flood"},
			{"openconnect-ref", "openconnect-client", "openconnect-server", "openconnect-pair"},
		}},
		{"reference not selected: alone", []Case{c("udp", "bare"), c("veth", "")}, [][]string{{"udp"}, {"veth"}}},
		{"reference after its case: still leads", []Case{c("udp", "bare"), c("bare", "")}, [][]string{{"bare", "udp"}}},
		{"nothing", nil, nil},
	}
	for _, tt := range tests {
		if got := keys(Groups(tt.cases)); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: Groups = %v, want %v", tt.name, got, tt.want)
		}
	}
}
