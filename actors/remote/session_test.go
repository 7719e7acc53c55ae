package remote

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"switchyard/actors/remote/wire"
	"switchyard/protocols"
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
