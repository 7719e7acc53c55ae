package main

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"switchyard/node"
	"switchyard/protocols/wireguard"
	"switchyard/stats"
)

// TestStatsPrintsPeers renders the WireGuard protocol's own Info type, sent
// through JSON as `switchyard stats` receives it, so a change of its shape
// fails here.
func TestStatsPrintsPeers(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	hs := now.Add(-7 * time.Second)
	snap := node.Snapshot{Time: now, Actors: []stats.Row{{
		Name: "office", Kind: "wireguard", State: "running",
		Info: wireguard.Info{PublicKey: "OUR+KEY=", ListenPort: 51820, Peers: []wireguard.PeerInfo{
			{PublicKey: "PEER+A=", Endpoint: "10.91.0.2:51820", LastHandshake: &hs, RxBytes: 2048, TxBytes: 3 << 20},
			{PublicKey: "PEER+B="},
		}},
	}}}
	raw, err := json.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	var got node.Snapshot
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	printStats(&out, got)
	for _, want := range []string{
		"office: public key OUR+KEY=, listening on port 51820",
		"peer PEER+A=  endpoint 10.91.0.2:51820  latest handshake 7s ago  rx 2.0 KiB  tx 3.0 MiB",
		"peer PEER+B=  endpoint (none yet)  latest handshake never",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("stats output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestStatsPrintsSessions renders the node's sessions as `switchyard stats`
// receives them.
func TestStatsPrintsSessions(t *testing.T) {
	now := time.Date(2026, 12, 6, 6, 0, 0, 0, time.UTC)
	snap := node.Snapshot{Time: now, Sessions: []node.SessionInfo{{
		Instance: "office", Since: now.Add(-90 * time.Second),
		Addresses:    []netip.Prefix{netip.MustParsePrefix("192.168.99.50/24")},
		Routes:       []netip.Prefix{netip.MustParsePrefix("10.77.0.0/16"), netip.MustParsePrefix("192.168.99.0/24")},
		KernelRoutes: []netip.Prefix{netip.MustParsePrefix("10.77.0.0/16")},
		Refused:      map[string]string{"10.66.0.0/16": "routed by the config's route reject"},
	}}}
	raw, err := json.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	var got node.Snapshot
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	printStats(&out, got)
	for _, want := range []string{
		"office: session since 1m30s ago  addresses [192.168.99.50/24]  routes [10.77.0.0/16 192.168.99.0/24]  kernel routes [10.77.0.0/16]",
		"  refused 10.66.0.0/16: routed by the config's route reject",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("stats output lacks %q:\n%s", want, out.String())
		}
	}
}
