package config

import (
	"strings"
	"testing"
)

// TestCheckRefusesWhatRunRefuses is finding 7 of issue 12: every value
// `switchyard run` refuses or misapplies, `switchyard check` refuses too,
// with its position. Each row says what run did with the value.
func TestCheckRefusesWhatRunRefuses(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{
			// -1 was the "inherit" sentinel of the check: run made every
			// mailbox capacity 1.
			name: "top-level capacity -1",
			src:  "mailbox:\n  capacity: -1\n",
			want: "gw.yaml:4:13: mailbox.capacity: must be between 1 and 65536 batches, got -1",
		},
		{
			// "\0" was the other sentinel: run failed without a position.
			name: "policy NUL",
			src:  "mailbox:\n  policy: \"\\0\"\n",
			want: `gw.yaml:4:11: mailbox.policy: must be drop_newest, drop_oldest or codel, got "\x00"`,
		},
		{
			name: "a protocol's capacity equal to an invalid top-level one",
			src:  "mailbox: {capacity: -1}\nprotocols:\n  - {name: p, type: udp, mailbox: {capacity: -1}}\n",
			want: "gw.yaml:3:21: mailbox.capacity: must be between 1 and 65536 batches, got -1\n" +
				"gw.yaml:5:46: protocols[0].mailbox.capacity: must be between 1 and 65536 batches, got -1",
		},
		{
			// The router matches IPv4 packets only against IPv4 prefixes,
			// and the kernel route was an IPv6 one: nothing was routed.
			name: "ipv4-mapped route prefix",
			src:  "routes:\n  - prefix: \"::ffff:10.50.0.0/112\"\n    action: drop\n",
			want: "gw.yaml:4:13: routes[0].prefix: ::ffff:10.50.0.0/112 is an IPv4-mapped IPv6 prefix, which no IPv4 packet matches; write 10.50.0.0/16",
		},
		{
			name: "ipv4-mapped tun address",
			src:  "tun:\n  addresses: [\"::ffff:10.9.0.1/120\"]\n",
			want: "gw.yaml:4:15: tun.addresses[0]: ::ffff:10.9.0.1/120 is an IPv4-mapped IPv6 address, which the kernel would add as IPv6; write 10.9.0.1/24",
		},
		{
			// A protocol failing at start restarted in a busy loop: 105 %
			// CPU and 23 MB of logs in 6 s.
			name: "backoff 0s with an unbounded budget",
			src:  "supervision:\n  max_restarts: 1000000\n  backoff: 0s\n",
			want: "gw.yaml:5:12: supervision.backoff: backoff 0s with max_restarts 1000000 within 10s lets a failing actor restart 100000 times a second; " +
				"a restart budget must bound the rate to 10 a second: make backoff at least 100ms, or max_restarts at most 100",
		},
		{
			// The kernel takes % as a pattern: '%d' created "0", and the
			// daemon did not find "%d".
			name: "tun.name %d",
			src:  "tun:\n  name: '%d'\n",
			want: `gw.yaml:4:9: tun.name: must be 1-15 characters of [A-Za-z0-9_=+.-], got "%d"`,
		},
		{
			name: "tun.name of 16 characters",
			src:  "tun:\n  name: sixteen-chars-xy\n",
			want: `gw.yaml:4:9: tun.name: must be 1-15 characters of [A-Za-z0-9_=+.-], got "sixteen-chars-xy"`,
		},
		{
			name: "tun.name with a slash",
			src:  "tun:\n  name: a/b\n",
			want: `gw.yaml:4:9: tun.name: must be 1-15 characters of [A-Za-z0-9_=+.-], got "a/b"`,
		},
		{
			name: "tun.name with white space",
			src:  "tun:\n  name: \"sy 0\"\n",
			want: `gw.yaml:4:9: tun.name: must be 1-15 characters of [A-Za-z0-9_=+.-], got "sy 0"`,
		},
		{
			name: "tun.name ..",
			src:  "tun:\n  name: ..\n",
			want: `gw.yaml:4:9: tun.name: must not be "." or "..", got ".."`,
		},
		{
			name: "tun.name empty",
			src:  "tun:\n  name: \"\"\n",
			want: `gw.yaml:4:9: tun.name: must be 1-15 characters of [A-Za-z0-9_=+.-], got ""`,
		},
		{
			// protoactor's remote joins host and port without brackets:
			// "listen tcp: address ::1:0: too many colons in address".
			name: "ipv6 remote.listen",
			src:  "remote:\n  listen: \"[::1]:0\"\n",
			want: `gw.yaml:4:11: remote.listen: [::1]:0 is an IPv6 address: protoactor remote addresses are host:port without brackets, so it fails with "too many colons"; use an IPv4 address such as 127.0.0.1`,
		},
		{
			// The remote transport checks IsLoopback without unmapping, so
			// it refused what the check let through without TLS.
			name: "ipv4-mapped remote.listen",
			src:  "remote:\n  listen: \"[::ffff:127.0.0.1]:0\"\n",
			want: `gw.yaml:4:11: remote.listen: [::ffff:127.0.0.1]:0 is an IPv4-mapped IPv6 address; write it as 127.0.0.1:0`,
		},
		{
			// The admin server could not bind after the node had started.
			name: "admin.listen and remote.listen on one port",
			src:  "admin:\n  listen: 127.0.0.1:9190\nremote:\n  listen: 127.0.0.1:9190\n",
			want: "gw.yaml:6:11: remote.listen: 127.0.0.1:9190 takes the port of admin.listen 127.0.0.1:9190: both listen on this machine",
		},
		{
			// The kernel takes IPv6 off a device with an MTU below 1280,
			// and the route failed with "no such device".
			name: "ipv6 route into a tun of mtu 1000",
			src:  "tun:\n  mtu: 1000\nroutes:\n  - {prefix: \"fd00::/64\", action: drop}\n",
			want: "gw.yaml:4:8: tun.mtu: must be at least 1280 with an ipv6 route installed into the tun (routes[0], fd00::/64), got 1000; or set tun.install_routes: false",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("gw.yaml", []byte(minimal+tt.src))
			if err == nil {
				t.Fatalf("Parse succeeded, want:\n%s", tt.want)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}

	// What is valid stays valid.
	for _, src := range []string{
		"supervision: {max_restarts: 100, within: 10s, backoff: 0s}\n",
		"supervision: {max_restarts: 1000000, backoff: 100ms}\n",
		"tun: {name: wg_0.a-b+c=d}\n",
		"tun: {mtu: 1000, install_routes: false}\nroutes:\n  - {prefix: \"fd00::/64\", action: drop}\n",
		"routes:\n  - {prefix: \"::ffff:0:0/96\", action: drop}\n",
		"admin: {listen: \"[::1]:9190\"}\nremote: {listen: 127.0.0.1:9190}\n",
		"mailbox: {capacity: 64}\nprotocols:\n  - {name: p, type: udp, mailbox: {capacity: 64}}\n",
	} {
		if _, err := Parse("gw.yaml", []byte(minimal+src)); err != nil {
			t.Errorf("Parse(%q): %v", strings.TrimSpace(src), err)
		}
	}
}
