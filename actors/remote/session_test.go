package remote

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
	"go.uber.org/zap"

	"switchyard/actors/remote/wire"
	"switchyard/protocols"
	"switchyard/stats"
)

func TestSessionRoundTrip(t *testing.T) {
	s := protocols.Session{
		Addrs:  []netip.Prefix{netip.MustParsePrefix("192.168.99.2/24"), netip.MustParsePrefix("fd99::2/64")},
		Routes: []netip.Prefix{netip.MustParsePrefix("10.77.0.0/16")},
	}
	for _, tc := range []struct {
		name string
		s    protocols.Session
	}{{"session", s}, {"zero", protocols.Session{}}} {
		t.Run(tc.name, func(t *testing.T) {
			env, err := encodeSession("oc", tc.s)
			if err != nil {
				t.Fatal(err)
			}
			if env.Kind != wire.Kind_SESSION {
				t.Fatalf("kind: got %v, want SESSION", env.Kind)
			}
			name, got, err := decodeSession(env)
			if err != nil {
				t.Fatal(err)
			}
			if name != "oc" || !slices.Equal(got.Addrs, tc.s.Addrs) || !slices.Equal(got.Routes, tc.s.Routes) {
				t.Fatalf("got %q %+v, want oc %+v", name, got, tc.s)
			}
		})
	}
}

// TestSessionBad: garbage and reports past the bounds are refused, never
// decoded into something the daemon would apply.
func TestSessionBad(t *testing.T) {
	many := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("10.%d.%d.0/24", i/256, i%256)
		}
		return out
	}
	enc := func(r SessionReport) []byte {
		b, err := msgpack.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cases := []struct {
		name    string
		payload []byte
	}{
		{"garbage", []byte{0xc1, 0xff, 0x00}},
		{"empty", nil},
		{"no name", enc(SessionReport{Addrs: []string{"10.0.0.1/24"}})},
		{"bad address", enc(SessionReport{Name: "oc", Addrs: []string{"10.0.0.300/24"}})},
		{"bad route", enc(SessionReport{Name: "oc", Routes: []string{"not a prefix"}})},
		{"too many addresses", enc(SessionReport{Name: "oc", Addrs: many(MaxSessionAddrs + 1)})},
		{"too many routes", enc(SessionReport{Name: "oc", Routes: many(MaxSessionRoutes + 1)})},
		{"too large", append(enc(SessionReport{Name: "oc"}), make([]byte, MaxSessionBytes)...)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := decodeSession(&wire.Envelope{Kind: wire.Kind_SESSION, Payload: tc.payload})
			if err == nil || !strings.Contains(err.Error(), "bad session report") {
				t.Fatalf("got %v, want a bad session report", err)
			}
		})
	}
	if _, err := encodeSession("oc", protocols.Session{Routes: make([]netip.Prefix, MaxSessionRoutes+1)}); err == nil {
		t.Fatal("encode: a session past MaxSessionRoutes was not refused")
	}
}

// TestHostLinkSessions: the host link hands good reports of its opened
// instances on, counts garbage on Bad, ignores reports for instances it
// does not run (or has not opened), and reports the zero Session for each
// instance with one when the host goes down.
func TestHostLinkSessions(t *testing.T) {
	type call struct {
		name string
		s    protocols.Session
	}
	var calls []call
	bad := (&stats.Registry{}).Row("remote", "remote")
	l := &hostLink{
		spec: HostSpec{Name: "h1", Log: zap.NewNop(), Bad: bad,
			Session: func(name string, s protocols.Session) { calls = append(calls, call{name, s}) }},
		state: hostUp,
		insts: map[string]*attached{"oc": {opened: true}, "pending": {}},
	}
	s := protocols.Session{Addrs: []netip.Prefix{netip.MustParsePrefix("192.168.99.2/24")}}
	for _, name := range []string{"oc", "pending", "unknown"} {
		env, err := encodeSession(name, s)
		if err != nil {
			t.Fatal(err)
		}
		l.session(env)
	}
	l.session(&wire.Envelope{Kind: wire.Kind_SESSION, Payload: []byte("garbage")})
	if len(calls) != 1 || calls[0].name != "oc" || !slices.Equal(calls[0].s.Addrs, s.Addrs) {
		t.Fatalf("sessions handed on: %+v, want oc's alone", calls)
	}
	if got := bad.Snapshot().Drops[stats.Malformed.String()]; got != 1 {
		t.Errorf("garbage counted %d times, want 1", got)
	}
	l.endSessions() // the host went down
	if len(calls) != 2 || calls[1].name != "oc" || !calls[1].s.IsZero() {
		t.Fatalf("after the host went down: %+v, want oc's zero session", calls)
	}
	l.endSessions()
	if len(calls) != 2 {
		t.Errorf("a second down reported again: %+v", calls)
	}
}
