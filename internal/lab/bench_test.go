package lab

import (
	"math"
	"os"
	"reflect"
	"strings"
	"testing"

	"switchyard/stats"
)

func TestSummarize(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []float64
		want Summary
	}{
		{"empty", nil, Summary{}},
		{"one", []float64{2.5}, Summary{Median: 2.5, Min: 2.5, Max: 2.5, N: 1}},
		{"odd, unsorted", []float64{3, 1, 2}, Summary{Median: 2, Min: 1, Max: 3, N: 3}},
		{"even: mean of the middle two", []float64{4, 1, 3, 2}, Summary{Median: 2.5, Min: 1, Max: 4, N: 4}},
		{"outlier does not move the median", []float64{1.9, 2.0, 0.1, 2.1, 9}, Summary{Median: 2.0, Min: 0.1, Max: 9, N: 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := append([]float64(nil), tc.in...)
			if got := Summarize(tc.in); got != tc.want {
				t.Errorf("Summarize(%v) = %+v, want %+v", tc.in, got, tc.want)
			}
			for i := range in {
				if in[i] != tc.in[i] {
					t.Fatalf("Summarize sorted its input: %v", tc.in)
				}
			}
		})
	}
	if got, want := (Summary{Median: 1.234, Min: 1.1, Max: 1.31, N: 3}).String(), "1.23 (1.10–1.31)"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
	if got := (Summary{}).String(); got != "n/a" {
		t.Errorf("empty String = %q, want n/a", got)
	}
}

func TestParseProcStatCPU(t *testing.T) {
	// A command name with a space and a ')' must not shift the fields.
	// utime 1234 and stime 766 ticks: 20 s.
	line := "4242 (we ird) name) S 1 4242 4242 0 -1 4194560 1000 0 0 0 1234 766 0 0 20 0 12 0 100 2000000 500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	got, err := parseProcStatCPU([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if want := 20.0; got != want {
		t.Errorf("cpu = %v s, want %v", got, want)
	}
	if _, err := parseProcStatCPU([]byte("4242 (x) S 1 2")); err == nil {
		t.Error("a short line parsed without error")
	}
	// This process's own line parses and is plausible.
	own, err := ProcCPU(os.Getpid())
	if err != nil || own < 0 {
		t.Errorf("ProcCPU(self) = %v, %v", own, err)
	}
}

func TestCPUPerGbit(t *testing.T) {
	for _, tc := range []struct {
		cpu   float64
		bytes int64
		want  float64
	}{
		{cpu: 5, bytes: 1.25e9, want: 0.5},   // 10 Gbit carried with 5 s of CPU
		{cpu: 1, bytes: 125e6, want: 1},      // 1 Gbit, 1 s
		{cpu: 3, bytes: 0, want: 0},          // nothing carried: no figure
		{cpu: 0, bytes: 1.25e9, want: 0},     // idle
		{cpu: 8.8, bytes: 1.1e9, want: 1.00}, // 8.8 Gbit, 8.8 s
	} {
		if got := CPUPerGbit(tc.cpu, tc.bytes); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("CPUPerGbit(%v s, %d bytes) = %v, want %v", tc.cpu, tc.bytes, got, tc.want)
		}
	}
}

func TestParseIperf3(t *testing.T) {
	read := func(name string) []byte {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// Captured from iperf 3.12: `iperf3 -c … -t 1 -J` over loopback.
	tcp, err := ParseIperf3(read("iperf3-tcp.json"))
	if err != nil {
		t.Fatal(err)
	}
	if tcp.Bytes != 1522925568 || math.Abs(tcp.Gbps-12.148053707710562) > 1e-9 || tcp.Seconds != 1.00291 {
		t.Errorf("tcp receiver = %+v, want 1522925568 bytes, 12.148 Gbit/s over 1.00291 s", tcp)
	}
	if tcp.SentBytes != 1526988800 || tcp.Retransmits != 0 {
		t.Errorf("tcp sender = %d bytes, %d retransmits", tcp.SentBytes, tcp.Retransmits)
	}
	// `iperf3 -c … -u -b 200M -l 1400 -t 1 -J`: the receiver's view.
	udp, err := ParseIperf3(read("iperf3-udp.json"))
	if err != nil {
		t.Fatal(err)
	}
	if udp.Bytes != 24962000 || udp.Packets != 17847 || udp.LostPackets != 17 || math.Abs(udp.Gbps-0.1996211420717231) > 1e-12 {
		t.Errorf("udp receiver = %+v", udp)
	}
	if math.Abs(udp.SentGbps-0.19985342418500948) > 1e-12 {
		t.Errorf("udp offered = %v Gbit/s, want 0.19985", udp.SentGbps)
	}
	// Older iperf3 has only end.sum for UDP.
	old, err := ParseIperf3([]byte(`{"end":{"sum":{"seconds":2,"bytes":250000000,"bits_per_second":1e9,"packets":10,"lost_packets":1}}}`))
	if err != nil || old.Gbps != 1 || old.Bytes != 250000000 || old.LostPackets != 1 {
		t.Errorf("end.sum only: %+v, %v", old, err)
	}
	for _, bad := range []string{
		`{"start":{},"end":{},"error":"unable to connect to server: Connection refused"}`,
		`{"end":{}}`,
		`not json`,
	} {
		if _, err := ParseIperf3([]byte(bad)); err == nil {
			t.Errorf("ParseIperf3(%q): no error", bad)
		}
	}
	_, err = ParseIperf3([]byte(`{"end":{},"error":"unable to connect to server: Connection refused"}`))
	if err == nil || !strings.Contains(err.Error(), "unable to connect") {
		t.Errorf("refused: %v; the client's retry looks for \"unable to connect\"", err)
	}
}

func TestDiffActor(t *testing.T) {
	before := ActorDrops{Daemon: "switchyard a", Actor: "router", InPackets: 100, OutPackets: 90,
		Drops: map[string]uint64{"mailbox_full": 10}}
	after := ActorDrops{Daemon: "switchyard a", Actor: "router", InPackets: 1100, OutPackets: 590,
		Drops: map[string]uint64{"mailbox_full": 510, "no_route": 0}, HighWater: 256, Capacity: 256}
	got := diffActor(before, after)
	if got.InPackets != 1000 || got.OutPackets != 500 || got.HighWater != 256 || got.Capacity != 256 {
		t.Errorf("diff = %+v", got)
	}
	if len(got.Drops) != 1 || got.Drops["mailbox_full"] != 500 || got.Dropped() != 500 {
		t.Errorf("drops = %v, want only mailbox_full 500", got.Drops)
	}
	if got.InPackets != got.OutPackets+got.Dropped() {
		t.Errorf("in %d != out %d + dropped %d", got.InPackets, got.OutPackets, got.Dropped())
	}
	if got.QueueDelay != nil || got.WaitP99 != 0 {
		t.Errorf("no histogram: queue delay %v, p99 %d", got.QueueDelay, got.WaitP99)
	}

	// The queueing delay of the batches delivered in between: 90 at most
	// 1.024 µs, 10 at most 8.4 ms.
	h := func(b0, b13 uint64) []uint64 {
		v := make([]uint64, stats.NumDelayBuckets)
		v[0], v[13] = b0, b13
		return v
	}
	before.QueueDelay, after.QueueDelay = h(5, 0), h(95, 10)
	got = diffActor(before, after)
	if !reflect.DeepEqual(got.QueueDelay, h(90, 10)) || got.WaitP50 != 1024 || got.WaitP99 != 1024<<13 {
		t.Errorf("queue delay %v, p50 %d, p99 %d; want %v, 1024, %d", got.QueueDelay, got.WaitP50, got.WaitP99, h(90, 10), 1024<<13)
	}
}

func TestCases(t *testing.T) {
	seen := map[string]Case{}
	for _, c := range append(Cases(), NotBuilt()...) {
		if _, dup := seen[c.Key]; c.Key == "" || c.Label == "" || dup {
			t.Errorf("case %+v: empty or duplicate key/label", c)
		}
		seen[c.Key] = c
		if (c.Kind == KindUDP || c.Kind == KindWireGuard) && c.Batch == 0 {
			t.Errorf("switchyard case %s has no batch size", c.Key)
		}
	}
	for _, key := range []string{"veth", "wireguard-go", "udp-b128", "udp-b1", "wireguard-b128", "udp-flood",
		"udp-oop-b128", "udp-oop-b1", "wireguard-oop-b128"} {
		if _, ok := seen[key]; !ok {
			t.Errorf("case %s missing", key)
		}
	}
	for _, c := range seen {
		if c.OutOfProcess != (c.InProcess != "") {
			t.Errorf("case %s: out of process %v, in-process reference %q; want a reference exactly when out of process",
				c.Key, c.OutOfProcess, c.InProcess)
			continue
		}
		if ref, ok := seen[c.InProcess]; c.OutOfProcess && (!ok || ref.OutOfProcess || ref.Kind != c.Kind || ref.Batch != c.Batch) {
			t.Errorf("case %s: in-process reference %q = %+v, want an in-process case of the same kind and batch", c.Key, c.InProcess, ref)
		}
	}
	if n := len(NotBuilt()); n != 0 {
		t.Errorf("NotBuilt() has %d cases, want none: every configuration of issue 4 exists", n)
	}
	// References: udp pairs against the bare forwarder, wireguard against
	// wireguard-go (issue 14).
	wantRef := map[CaseKind]CaseKind{KindUDP: KindBare, KindWireGuard: KindWireGuardGo,
		KindOCClient: KindOCRef, KindOCServer: KindOCRef, KindOCPair: KindOCRef,
		KindOpenVPNClient: KindOpenVPNRef, KindOpenVPN: KindOpenVPNRef,
		KindIPsecSwitchyardStrongSwan: KindIPsecStrongSwan, KindIPsecPair: KindIPsecStrongSwan}
	for _, c := range seen {
		if c.Ref == "" {
			continue
		}
		if ref, ok := seen[c.Ref]; !ok || ref.Kind != wantRef[c.Kind] || ref.Ref != "" {
			t.Errorf("case %s: reference %q = %+v, want a %v case that has no reference itself", c.Key, c.Ref, ref, wantRef[c.Kind])
		}
	}
	// Latency rows of issue 21.
	for _, key := range []string{"veth", "bare", "udp-b128", "wireguard-b128", "wireguard-go"} {
		if c := seen[key]; !c.Latency {
			t.Errorf("case %s measures no latency", key)
		}
	}
	for _, key := range []string{"udp-b128", "wireguard-b128"} {
		if seen[key].Ref == "" {
			t.Errorf("case %s is not interleaved with a reference", key)
		}
	}
}

func TestInProcessRatio(t *testing.T) {
	med := map[string]float64{"udp-b128": 8, "udp-oop-b128": 7, "udp-oop-b1": 1}
	for _, tc := range []struct {
		c    Case
		want float64
	}{
		{Case{Key: "udp-oop-b128", InProcess: "udp-b128"}, 0.875},
		{Case{Key: "udp-oop-b1", InProcess: "udp-b128"}, 0.125},
		{Case{Key: "udp-b128"}, 0},                                        // no reference
		{Case{Key: "wireguard-oop-b128", InProcess: "wireguard-b128"}, 0}, // neither measured
		{Case{Key: "udp-oop-b128", InProcess: "missing"}, 0},
	} {
		if got := InProcessRatio(tc.c, med); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("InProcessRatio(%s → %s) = %v, want %v", tc.c.Key, tc.c.InProcess, got, tc.want)
		}
	}
}
