package main

import (
	"bytes"
	"encoding/json"
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
