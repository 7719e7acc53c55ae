package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestParseSNMPUDP(t *testing.T) {
	const snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\n" +
		"Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\n" +
		"Udp: 100 7 3 90 2 5 0 0 0\n" +
		"UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\n" +
		"UdpLite: 9 9 9 9 9 9 9 9 9\n"
	got, err := parseSNMPUDP([]byte(snmp))
	if err != nil {
		t.Fatal(err)
	}
	want := udpCounters{InErrors: 3, RcvbufErrors: 2, SndbufErrors: 5, NoPorts: 7}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if _, err := parseSNMPUDP([]byte("Ip: a\nIp: 1\n")); err == nil {
		t.Error("no Udp lines: want an error")
	}
}

func TestParseMetrics(t *testing.T) {
	const text = `# HELP go_goroutines Number of goroutines.
# TYPE go_goroutines gauge
go_goroutines 27
go_memstats_heap_inuse_bytes 1.5e+07
switchyard_packets_total{actor="router"} 12
process_open_fds 19
`
	got := parseMetrics(strings.NewReader(text))
	for name, want := range map[string]float64{"go_goroutines": 27, "go_memstats_heap_inuse_bytes": 1.5e7, "process_open_fds": 19} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v", name, got[name], want)
		}
	}
	if len(got) != 3 {
		t.Errorf("got %d samples %v, want the 3 without labels", len(got), got)
	}
}

func TestRenderSoak(t *testing.T) {
	rep := &soakReport{
		Settings: map[string]string{"duration": "10m0s"},
		Samples: []soakSample{
			{T: 0, RSS: map[string]int64{"a": 30 << 20}, Goroutines: map[string]float64{"a": 27}, FDs: map[string]int{"a": 19}},
			{T: 600, RSS: map[string]int64{"a": 40 << 20}, Goroutines: map[string]float64{"a": 28}, FDs: map[string]int{"a": 20}},
		},
		Events: []soakEvent{{T: 60, What: "kill", OK: true}, {T: 120, What: "transfer", OK: false, Note: "sha256 differs"}},
		Checks: []soakCheck{{Name: "a→b", OK: true, Got: "uncounted 0"}, {Name: "transfers intact", OK: false, Got: "1 transfers"}},
		AtoB:   map[string]uint64{"handed_to_host": 10, "received_by_b": 9, "host_lost": 1},
		Kills:  1, Opens: 2, Transfers: 1,
	}
	var w bytes.Buffer
	renderSoak(&w, rep)
	for _, want := range []string{
		"duration        10m0s",
		"1 kills (2 opens of the instance)",
		"handed_to_host         10",
		"a     30.0 → 40.0 (max 40.0)   27 → 28",
		"ok    a→b: uncounted 0",
		"FAIL  transfers intact: 1 transfers",
		"120.0s transfer: sha256 differs",
	} {
		if !strings.Contains(w.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, w.String())
		}
	}
}
