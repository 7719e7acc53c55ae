package lab

import (
	"strings"
	"testing"

	"switchyard/config"
	"switchyard/node"
	_ "switchyard/protocols/protocoltest"
	_ "switchyard/protocols/udp"
)

// TestConfigYAML checks that every config the lab writes is one the daemon
// accepts, and that it says what the lab means.
func TestConfigYAML(t *testing.T) {
	l := &Lab{}
	l.A, l.B = newSides("abcdef")
	three := 3
	for _, tc := range []struct {
		name string
		side *Side
		cfg  Config
		want []string // substrings of the YAML
	}{
		{"default a", l.A, l.DefaultConfig(l.A), []string{"listen: 10.91.0.1:7000", "peer: 10.91.0.2:7000", "action: reject", `"fd66::/64"`}},
		{"default b", l.B, l.DefaultConfig(l.B), []string{"listen: 10.91.0.2:7000", "peer: 10.91.0.1:7000", `addresses: [10.90.0.2/24, "fd90::2/64"]`}},
		{"slow", l.A, Config{PoolBuffers: 1024, Protocols: []Protocol{{
			Name: "peer", Type: "slow", Mailbox: Mailbox{Capacity: 64, Policy: "drop_oldest"},
			Settings: []string{"delay: 2ms"}, Routes: TunnelPrefixes,
		}}}, []string{"pool_buffers: 1024", "mailbox: {capacity: 64, policy: drop_oldest}", "delay: 2ms"}},
		{"codel", l.B, func() Config {
			c := l.DefaultConfig(l.B)
			c.Mailbox = Mailbox{Policy: "codel", Target: "2ms", Interval: "50ms"}
			return c
		}(), []string{"mailbox: {policy: codel, target: 2ms, interval: 50ms}"}},
		{"panicky and udp", l.A, Config{
			Supervision: Supervision{MaxRestarts: &three, Within: "10s", Backoff: "100ms"},
			Protocols: []Protocol{
				{Name: "peer", Type: "panicky", Routes: TunnelPrefixes[:1]},
				{Name: "peer6", Type: "udp", Port: 7001, Routes: TunnelPrefixes[1:]},
			},
		}, []string{"max_restarts: 3", "listen: 10.91.0.1:7001"}},
		{"out of process", l.B, OutOfProcess(l.DefaultConfig(l.B)), []string{
			"remote:\n  listen: 127.0.0.1:7200\n", "hosts:\n  - name: vpn-host\n    listen: 127.0.0.1:7100\n    spawn: true\n",
			"    type: udp\n    host: vpn-host\n"}},
		{"out of process, window and batch 1", l.A, func() Config {
			c := OutOfProcess(l.DefaultConfig(l.A))
			c.RemoteWindow, c.Batch = 8, 1
			return c
		}(), []string{"  window: 8\n", "max_packets: 1\n", "host: vpn-host"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			y := l.YAML(tc.side, tc.cfg)
			c, err := config.Parse(tc.name+".yaml", []byte(y))
			if err != nil {
				t.Fatalf("config.Parse: %v\n%s", err, y)
			}
			if err := node.Check(c); err != nil {
				t.Fatalf("node.Check: %v\n%s", err, y)
			}
			for _, w := range tc.want {
				if !strings.Contains(y, w) {
					t.Errorf("config lacks %q:\n%s", w, y)
				}
			}
		})
	}
}

func TestTail(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"short\n", 100, "short"},
		{"line one\nline two\nline three", 12, "line three"},
	} {
		if got := tail([]byte(tc.in), tc.n); got != tc.want {
			t.Errorf("tail(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}
