package router

import (
	"net/netip"
	"strings"
	"testing"
)

func testRoutes() []Route {
	return []Route{
		{Prefix: mustPrefix("0.0.0.0/0"), Action: Forward, Target: 0},
		{Prefix: mustPrefix("10.0.0.0/8"), Action: Forward, Target: 1},
		{Prefix: mustPrefix("10.1.0.0/16"), Action: Forward, Target: 2},
		{Prefix: mustPrefix("10.1.2.3/32"), Action: Forward, Target: 3},
		{Prefix: mustPrefix("192.168.0.0/16"), Action: Drop},
		{Prefix: mustPrefix("192.168.7.0/24"), Action: Reject},
		{Prefix: mustPrefix("::/0"), Action: Forward, Target: 10},
		{Prefix: mustPrefix("2001:db8::/32"), Action: Forward, Target: 11},
		{Prefix: mustPrefix("2001:db8:1::/48"), Action: Forward, Target: 12},
		{Prefix: mustPrefix("2001:db8:1::1/128"), Action: Forward, Target: 13},
		{Prefix: mustPrefix("fd00::/8"), Action: Reject},
		{Prefix: mustPrefix("fd00:dead::/32"), Action: Drop},
	}
}

func TestLookup(t *testing.T) {
	tab := mustTable(t, testRoutes()...)
	if got, want := tab.Len(), len(testRoutes()); got != want {
		t.Errorf("Len() = %d, want %d", got, want)
	}
	tests := []struct {
		dst    string
		want   string // matching prefix
		action Action
		target int
	}{
		{"10.1.2.3", "10.1.2.3/32", Forward, 3},
		{"10.1.2.4", "10.1.0.0/16", Forward, 2},
		{"10.2.0.1", "10.0.0.0/8", Forward, 1},
		{"11.0.0.1", "0.0.0.0/0", Forward, 0},
		{"0.0.0.0", "0.0.0.0/0", Forward, 0},
		{"255.255.255.255", "0.0.0.0/0", Forward, 0},
		{"192.168.1.1", "192.168.0.0/16", Drop, 0},
		{"192.168.7.200", "192.168.7.0/24", Reject, 0},
		{"2001:db8:1::1", "2001:db8:1::1/128", Forward, 13},
		{"2001:db8:1::2", "2001:db8:1::/48", Forward, 12},
		{"2001:db8:2::1", "2001:db8::/32", Forward, 11},
		{"2001:db9::1", "::/0", Forward, 10},
		{"fd00::1", "fd00::/8", Reject, 0},
		{"fd00:dead::1", "fd00:dead::/32", Drop, 0},
		{"fe80::1%eth0", "::/0", Forward, 10}, // zone ignored
		// IPv4-mapped IPv6 addresses are IPv6: they never match IPv4 routes.
		{"::ffff:10.1.2.3", "::/0", Forward, 10},
	}
	for _, tt := range tests {
		got, ok := tab.Lookup(mustAddr(tt.dst))
		if !ok {
			t.Errorf("Lookup(%s): no match, want %s", tt.dst, tt.want)
			continue
		}
		want := Route{Prefix: mustPrefix(tt.want), Action: tt.action, Target: tt.target}
		if got != want {
			t.Errorf("Lookup(%s) = %+v, want %+v", tt.dst, got, want)
		}
	}
}

func TestLookupNoMatch(t *testing.T) {
	tab := mustTable(t,
		Route{Prefix: mustPrefix("10.0.0.0/8"), Target: 1},
		Route{Prefix: mustPrefix("2001:db8::/32"), Target: 2},
	)
	for _, dst := range []netip.Addr{
		mustAddr("11.0.0.1"),
		mustAddr("2001:db9::1"),
		mustAddr("::ffff:10.0.0.1"), // mapped: no IPv6 route covers it
		{},                          // invalid address
	} {
		if got, ok := tab.Lookup(dst); ok {
			t.Errorf("Lookup(%v) = %+v, want no match", dst, got)
		}
	}
	empty := mustTable(t)
	if got, ok := empty.Lookup(mustAddr("10.0.0.1")); ok {
		t.Errorf("empty table: Lookup = %+v, want no match", got)
	}
}

func TestLookupMappedPrefix(t *testing.T) {
	// A v4-mapped prefix is an IPv6 prefix: it catches mapped addresses and
	// leaves plain IPv4 alone.
	tab := mustTable(t, Route{Prefix: mustPrefix("::ffff:0:0/96"), Action: Drop})
	if _, ok := tab.Lookup(mustAddr("::ffff:10.0.0.1")); !ok {
		t.Errorf("::ffff:10.0.0.1 not matched by ::ffff:0:0/96")
	}
	if r, ok := tab.Lookup(mustAddr("10.0.0.1")); ok {
		t.Errorf("10.0.0.1 matched %v, want no match", r.Prefix)
	}
}

func TestNewTableMasks(t *testing.T) {
	tab := mustTable(t, Route{Prefix: netip.PrefixFrom(mustAddr("10.1.2.3"), 8), Target: 4})
	got, ok := tab.Lookup(mustAddr("10.200.0.1"))
	if want := (Route{Prefix: mustPrefix("10.0.0.0/8"), Target: 4}); !ok || got != want {
		t.Errorf("Lookup = %+v, %v; want %+v", got, ok, want)
	}
	if got, want := tab.Routes()[0].Prefix, mustPrefix("10.0.0.0/8"); got != want {
		t.Errorf("Routes()[0].Prefix = %v, want %v", got, want)
	}
}

func TestNewTableErrors(t *testing.T) {
	tests := []struct {
		name   string
		routes []Route
		want   string
	}{
		{"duplicate", []Route{
			{Prefix: mustPrefix("10.0.0.0/8")},
			{Prefix: mustPrefix("10.0.0.0/8"), Action: Drop},
		}, "duplicate prefix 10.0.0.0/8"},
		{"duplicate after masking", []Route{
			{Prefix: mustPrefix("2001:db8::/32")},
			{Prefix: netip.PrefixFrom(mustAddr("2001:db8::1"), 32)},
		}, "duplicate prefix 2001:db8::/32"},
		{"invalid prefix", []Route{{}}, "invalid prefix"},
		{"bits out of range", []Route{{Prefix: netip.PrefixFrom(mustAddr("10.0.0.0"), 33)}}, "invalid prefix"},
		{"unknown action", []Route{{Prefix: mustPrefix("10.0.0.0/8"), Action: 7}}, "unknown action"},
		{"negative target", []Route{{Prefix: mustPrefix("10.0.0.0/8"), Target: -1}}, "target must be"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab, err := NewTable(tt.routes)
			if err == nil {
				t.Fatalf("NewTable = %v, nil; want error containing %q", tab, tt.want)
			}
			if got := err.Error(); !strings.Contains(got, tt.want) {
				t.Errorf("error = %q, want it to contain %q", got, tt.want)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	tab := mustTable(t, testRoutes()...)
	noDefault := mustTable(t, Route{Prefix: mustPrefix("10.0.0.0/8"), Target: 1})

	good4 := ip4("172.16.0.1", "10.1.2.3", 17, udp(10))
	shortLen := append([]byte(nil), good4...)
	shortLen[3]-- // total length one less than the packet
	v5 := append([]byte(nil), good4...)
	v5[0] = 0x55
	badIHL := append([]byte(nil), good4...)
	badIHL[0] = 0x44
	good6 := ip6("2001:db8::99", "2001:db8:1::1", 17, udp(10))
	long6 := append(append([]byte(nil), good6...), 0) // one byte past payload length

	tests := []struct {
		name string
		tab  *Table
		pkt  []byte
		want Verdict
	}{
		{"v4 forward /32", tab, good4, Verdict{Forward, 3, None}},
		{"v4 forward /8", tab, ip4("172.16.0.1", "10.9.9.9", 6, nil), Verdict{Forward, 1, None}},
		{"v4 default", tab, ip4("172.16.0.1", "8.8.8.8", 6, nil), Verdict{Forward, 0, None}},
		{"v4 drop route", tab, ip4("172.16.0.1", "192.168.1.1", 6, nil), Verdict{Drop, -1, RouteDrop}},
		{"v4 reject route", tab, ip4("172.16.0.1", "192.168.7.1", 6, nil), Verdict{Reject, -1, Rejected}},
		{"v4 no route", noDefault, ip4("172.16.0.1", "8.8.8.8", 6, nil), Verdict{Drop, -1, NoRoute}},
		{"v6 forward /128", tab, good6, Verdict{Forward, 13, None}},
		{"v6 default", tab, ip6("2001:db8::99", "2600::1", 6, nil), Verdict{Forward, 10, None}},
		{"v6 reject", tab, ip6("2001:db8::99", "fd00::1", 6, nil), Verdict{Reject, -1, Rejected}},
		{"v6 drop", tab, ip6("2001:db8::99", "fd00:dead::1", 6, nil), Verdict{Drop, -1, RouteDrop}},
		{"v6 no route", noDefault, good6, Verdict{Drop, -1, NoRoute}},
		{"empty", tab, nil, Verdict{Drop, -1, Malformed}},
		{"truncated v4", tab, good4[:19], Verdict{Drop, -1, Malformed}},
		{"truncated v6", tab, good6[:39], Verdict{Drop, -1, Malformed}},
		{"version 5", tab, v5, Verdict{Drop, -1, Malformed}},
		{"v4 length mismatch", tab, shortLen, Verdict{Drop, -1, Malformed}},
		{"v4 bad IHL", tab, badIHL, Verdict{Drop, -1, Malformed}},
		{"v6 length mismatch", tab, long6, Verdict{Drop, -1, Malformed}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.tab.Classify(tt.pkt); got != tt.want {
				t.Errorf("Classify = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestClassifyAllocs(t *testing.T) {
	tab := mustTable(t, testRoutes()...)
	p4 := ip4("172.16.0.1", "10.1.2.3", 17, udp(10))
	p6 := ip6("2001:db8::99", "2001:db8:1::1", 17, udp(10))
	got := testing.AllocsPerRun(100, func() {
		tab.Classify(p4)
		tab.Classify(p6)
	})
	if got != 0 {
		t.Errorf("Classify allocates %v times per run, want 0", got)
	}
}

func TestStrings(t *testing.T) {
	tests := []struct{ got, want string }{
		{Forward.String(), "forward"},
		{Drop.String(), "drop"},
		{Reject.String(), "reject"},
		{Action(9).String(), "action(9)"},
		{None.String(), "none"},
		{Malformed.String(), "malformed"},
		{NoRoute.String(), "no_route"},
		{RouteDrop.String(), "route_drop"},
		{Rejected.String(), "rejected"},
		{NumDropReasons.String(), "reason(5)"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}
