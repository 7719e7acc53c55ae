package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"switchyard/node"
	"switchyard/stats"
)

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// snap is a snapshot at t0+at with the given actors.
func snap(at time.Duration, actors ...stats.Row) node.Snapshot {
	return node.Snapshot{Node: "gw-a", Time: t0.Add(at), Uptime: at.Seconds() + 60, Actors: actors,
		Pool: node.PoolSnapshot{LimitBuffers: 4096, OutstandingBuffers: 12}}
}

func TestComputeRates(t *testing.T) {
	mb := func(depth, high, capacity int64) *stats.MailboxSnapshot {
		return &stats.MailboxSnapshot{Capacity: capacity, Policy: "drop_newest", DepthBatches: depth, HighWaterBatches: high}
	}
	tests := []struct {
		name       string
		prev, cur  node.Snapshot
		wantSecs   float64
		wantActors []ActorRate
	}{
		{
			name: "steady traffic over 2 s",
			prev: snap(0,
				stats.Row{Name: "router", Kind: "router", State: "running", InPackets: 1000, InBytes: 1_000_000, OutPackets: 990, OutBytes: 990_000,
					Drops: map[string]uint64{"no_route": 10}, Mailbox: mb(0, 3, 256)}),
			cur: snap(2*time.Second,
				stats.Row{Name: "router", Kind: "router", State: "running", InPackets: 3000, InBytes: 3_500_000, OutPackets: 2970, OutBytes: 3_470_000,
					Drops: map[string]uint64{"no_route": 20, "malformed": 10}, Mailbox: mb(5, 9, 256)}),
			wantSecs: 2,
			wantActors: []ActorRate{{
				Name: "router", Kind: "router", State: "running",
				InPPS: 1000, OutPPS: 990, InMbps: 10, OutMbps: 9.92,
				DropsPerSec: 10, Drops: map[string]float64{"no_route": 5, "malformed": 5},
				Depth: 5, HighWater: 9, Capacity: 256,
			}},
		},
		{
			name:     "queueing delay of the batches delivered in between",
			prev:     snap(0, stats.Row{Name: "peer", State: "running", Mailbox: waits(256, 10, 0, 0)}),
			cur:      snap(time.Second, stats.Row{Name: "peer", State: "running", Mailbox: waits(256, 10+60, 39, 1)}),
			wantSecs: 1,
			wantActors: []ActorRate{{
				Name: "peer", State: "running", Capacity: 256,
				WaitP50: 1024, WaitP99: 1024 << 5, Waited: 100,
			}},
		},
		{
			name:     "first sample: no rates",
			prev:     node.Snapshot{},
			cur:      snap(time.Second, stats.Row{Name: "capture", State: "running", InPackets: 500, Restarts: 1}),
			wantSecs: 0,
			wantActors: []ActorRate{{
				Name: "capture", State: "running", Restarts: 1, RestartsRecent: 1,
			}},
		},
		{
			name: "a restart and a new actor",
			prev: snap(0, stats.Row{Name: "peer", State: "running", InPackets: 100, Restarts: 2}),
			cur: snap(500*time.Millisecond,
				stats.Row{Name: "peer", State: "restarting", InPackets: 150, Restarts: 3, Drops: map[string]uint64{"crashed": 1}},
				stats.Row{Name: "peer2", State: "running", InPackets: 10}),
			wantSecs: 0.5,
			wantActors: []ActorRate{
				{Name: "peer", State: "restarting", InPPS: 100, DropsPerSec: 2, Drops: map[string]float64{"crashed": 2}, Restarts: 3, RestartsRecent: 1},
				{Name: "peer2", State: "running", InPPS: 20},
			},
		},
		{
			name:     "the daemon restarted: counters went down, count from zero",
			prev:     snap(0, stats.Row{Name: "capture", State: "running", InPackets: 1_000_000, OutBytes: 5e9}),
			cur:      snap(time.Second, stats.Row{Name: "capture", State: "running", InPackets: 300, OutBytes: 125_000}),
			wantSecs: 1,
			wantActors: []ActorRate{
				{Name: "capture", State: "running", InPPS: 300, OutMbps: 1},
			},
		},
		{
			name:       "clock went backwards: no rates",
			prev:       snap(time.Second, stats.Row{Name: "capture", InPackets: 1}),
			cur:        snap(0, stats.Row{Name: "capture", InPackets: 2}),
			wantSecs:   0,
			wantActors: []ActorRate{{Name: "capture"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := computeRates(tt.prev, tt.cur)
			if got.Seconds != tt.wantSecs {
				t.Errorf("Seconds = %v, want %v", got.Seconds, tt.wantSecs)
			}
			if len(got.Actors) != len(tt.wantActors) {
				t.Fatalf("got %d actors, want %d: %+v", len(got.Actors), len(tt.wantActors), got.Actors)
			}
			for i := range got.Actors {
				g, w := roundRate(got.Actors[i]), roundRate(tt.wantActors[i])
				if !reflect.DeepEqual(g, w) {
					t.Errorf("actor %d:\n got %+v\nwant %+v", i, g, w)
				}
			}
		})
	}
}

// waits is a mailbox whose delay histogram has n0 batches in the first
// bucket (≤ 1.024 µs), n5 in bucket 5 (≤ 32.8 µs) and n21 above every
// bound.
func waits(capacity int64, n0, n5, n21 uint64) *stats.MailboxSnapshot {
	h := make([]uint64, stats.NumDelayBuckets)
	h[0], h[5], h[stats.NumDelayBuckets-1] = n0, n5, n21
	return &stats.MailboxSnapshot{Capacity: capacity, QueueDelay: h}
}

func TestWaitColumn(t *testing.T) {
	tests := []struct {
		a         ActorRate
		haveRates bool
		want      string
	}{
		{ActorRate{}, true, "-"},
		{ActorRate{Capacity: 8}, false, "…"},
		{ActorRate{Capacity: 8}, true, "idle"},
		{ActorRate{Capacity: 8, Waited: 3, WaitP50: 1024, WaitP99: 8_388_608}, true, "1µs/8.4ms"},
		{ActorRate{Capacity: 8, Waited: 3, WaitP50: 524_288, WaitP99: 1_073_741_824}, true, "524µs/1.07s"},
		{ActorRate{Capacity: 8, Waited: 3, WaitP50: 2_000_000, WaitP99: 2_000_000}, true, "2ms/2ms"},
	}
	for _, tt := range tests {
		if got := waitColumn(tt.a, tt.haveRates); got != tt.want {
			t.Errorf("waitColumn(%+v, %v) = %q, want %q", tt.a, tt.haveRates, got, tt.want)
		}
	}
}

func TestWaitsSince(t *testing.T) {
	tests := []struct {
		name            string
		cur, prev, want []uint64
	}{
		{"growth", []uint64{5, 3, 1}, []uint64{2, 3, 0}, []uint64{3, 0, 1}},
		{"no earlier", []uint64{5, 3}, nil, []uint64{5, 3}},
		{"a reset counts from zero", []uint64{1, 0}, []uint64{4, 4}, []uint64{1, 0}},
	}
	for _, tt := range tests {
		if got := waitsSince(tt.cur, tt.prev); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}

// roundRate rounds the float fields to 1e-9 so that table values compare.
func roundRate(a ActorRate) ActorRate {
	r := func(v float64) float64 { return math.Round(v*1e9) / 1e9 }
	a.InPPS, a.OutPPS, a.InMbps, a.OutMbps, a.DropsPerSec = r(a.InPPS), r(a.OutPPS), r(a.InMbps), r(a.OutMbps), r(a.DropsPerSec)
	for k, v := range a.Drops {
		a.Drops[k] = r(v)
	}
	return a
}

func TestFmtRate(t *testing.T) {
	tests := []struct {
		v    float64
		want string
	}{
		{0, "0"}, {0.5, "0.50"}, {3.256, "3.26"}, {10, "10.0"}, {412, "412.0"}, {999.94, "999.9"},
		{1000, "1.0k"}, {12_345, "12.3k"}, {1_210_000, "1.21M"},
	}
	for _, tt := range tests {
		if got := fmtRate(tt.v); got != tt.want {
			t.Errorf("fmtRate(%v) = %q, want %q", tt.v, got, tt.want)
		}
	}
}

func TestFmtMbps(t *testing.T) {
	tests := []struct {
		v    float64
		want string
	}{{0, "0"}, {0.0034, "<0.01"}, {0.5234, "0.52"}, {9.999, "10.00"}, {10, "10.0"}, {941.34, "941.3"}}
	for _, tt := range tests {
		if got := fmtMbps(tt.v); got != tt.want {
			t.Errorf("fmtMbps(%v) = %q, want %q", tt.v, got, tt.want)
		}
	}
}

func TestMailboxBar(t *testing.T) {
	tests := []struct {
		depth, capacity int64
		want            string
	}{
		{0, 256, "[..........] 0/256"},
		{1, 256, "[#.........] 1/256"},
		{128, 256, "[#####.....] 128/256"},
		{256, 256, "[##########] 256/256"},
		{300, 256, "[##########] 300/256"},
		{-1, 256, "[..........] 0/256"},
		{0, 0, "-"},
	}
	for _, tt := range tests {
		if got := mailboxBar(tt.depth, tt.capacity); got != tt.want {
			t.Errorf("mailboxBar(%d, %d) = %q, want %q", tt.depth, tt.capacity, got, tt.want)
		}
	}
}

func TestDropLines(t *testing.T) {
	r := Rates{Actors: []ActorRate{
		{Name: "router", Drops: map[string]float64{"no_route": 1, "malformed": 2.5}},
		{Name: "capture"},
		{Name: "peer", Drops: map[string]float64{"mailbox_full": 12_345}},
	}}
	got := dropLines(r)
	want := []string{"router malformed 2.50/s", "router no_route 1.00/s", "peer mailbox_full 12.3k/s"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("dropLines = %q, want %q", got, want)
	}
}

// TestTopModel drives the model as bubbletea would: snapshots, an error,
// keys.
func TestTopModel(t *testing.T) {
	var m tea.Model = newTopModel("127.0.0.1:9190", time.Second, nil)
	if v := m.View(); !strings.Contains(v, "waiting for the first answer") {
		t.Errorf("view before any data:\n%s", v)
	}
	router := func(in uint64, depth int64) stats.Row {
		return stats.Row{Name: "router", Kind: "router", State: "running", InPackets: in, InBytes: in * 1250,
			Drops: map[string]uint64{"no_route": in / 100}, Mailbox: &stats.MailboxSnapshot{Capacity: 256, DepthBatches: depth, HighWaterBatches: 200}}
	}
	peer := stats.Row{Name: "peer-b", Kind: "udp", State: "down", Restarts: 11}
	m, cmd := m.Update(snapMsg{snap: snap(0, router(1000, 0), peer), at: t0})
	if cmd == nil {
		t.Fatal("no tick scheduled after a snapshot")
	}
	if v := m.View(); !strings.Contains(v, "router") || !strings.Contains(v, "…") {
		t.Errorf("view after one snapshot should list the actors without rates:\n%s", v)
	}
	m, _ = m.Update(snapMsg{snap: snap(time.Second, router(3000, 128), peer), at: t0.Add(time.Second)})
	v := m.View()
	for _, want := range []string{
		"node gw-a", "pool 12/4096",
		"ACTOR", "IN PPS", "IN MBIT/S", "DROPS/S", "MAILBOX",
		"2.0k", // router in pps
		"20.0", // router in Mbit/s: 2000 pkt/s × 1250 B × 8
		"[#####.....] 128/256",
		"WAIT P50/P99", "idle",
		"down", "11",
		"router no_route 20.0/s",
	} {
		if !strings.Contains(v, want) {
			t.Errorf("view lacks %q:\n%s", want, v)
		}
	}

	// The daemon goes away: the error shows, the last data stays, and the
	// next fetch is scheduled.
	m, cmd = m.Update(snapMsg{err: errors.New("is the daemon running? connection refused"), at: t0.Add(2 * time.Second)})
	if cmd == nil {
		t.Fatal("no retry scheduled after an error")
	}
	v = m.View()
	if !strings.Contains(v, "connection refused; retrying every 1s") || !strings.Contains(v, "router") {
		t.Errorf("view after an error:\n%s", v)
	}
	if _, cmd := m.Update(tickMsg{}); cmd == nil {
		t.Error("a tick does not fetch")
	}

	for _, key := range []tea.KeyMsg{
		{Type: tea.KeyRunes, Runes: []rune("q")},
		{Type: tea.KeyCtrlC},
		{Type: tea.KeyEsc},
	} {
		_, cmd := m.Update(key)
		if cmd == nil {
			t.Errorf("key %q: no command, want quit", key.String())
			continue
		}
		if _, ok := cmd().(tea.QuitMsg); !ok {
			t.Errorf("key %q: command does not quit", key.String())
		}
	}
	if _, cmd := m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("x")}); cmd != nil {
		t.Error("key x: a command, want none")
	}
}

// statsServer serves GET /stats with a router whose counters grow by 100
// packets per request; with token set it wants it.
func statsServer(t *testing.T, token string) *httptest.Server {
	var n atomic.Uint64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token != "" && r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		i := n.Add(1)
		s := snap(time.Duration(i)*time.Second, stats.Row{Name: "router", State: "running", InPackets: 100 * i, InBytes: 125_000 * i,
			Drops: map[string]uint64{"no_route": i}})
		_ = json.NewEncoder(w).Encode(s)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestWatchStats(t *testing.T) {
	srv := statsServer(t, "")
	c, err := newAdminClient(strings.TrimPrefix(srv.URL, "http://"), "")
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if code := watchStats(ctx, c, &out, &errOut, 100*time.Millisecond, 2); code != 0 {
		t.Fatalf("exit %d; stderr %s", code, errOut.String())
	}
	got := out.String()
	if n := strings.Count(got, "IN PPS"); n != 2 {
		t.Errorf("%d blocks, want 2:\n%s", n, got)
	}
	// 100 packets and 125 kB per (server) second: 100 pps, 1 Mbit/s.
	for _, want := range []string{"first sample taken", "router", "100.0", "1.00", "drops/s by reason: router no_route 1.00/s"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
}

func TestWatchStatsUnreachable(t *testing.T) {
	c, err := newAdminClient("127.0.0.1:1", "")
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 350*time.Millisecond)
	defer cancel()
	if code := watchStats(ctx, c, &out, &errOut, 100*time.Millisecond, 0); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if n := strings.Count(errOut.String(), "retrying every 100ms"); n < 2 {
		t.Errorf("stderr shows %d retries, want ≥ 2:\n%s", n, errOut.String())
	}
}

func TestAdminClientToken(t *testing.T) {
	const token = "0123456789abcdef0123"
	srv := statsServer(t, token)
	addr := strings.TrimPrefix(srv.URL, "http://")
	dir := t.TempDir()
	good := filepath.Join(dir, "token")
	if err := os.WriteFile(good, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wrong := filepath.Join(dir, "wrong")
	if err := os.WriteFile(wrong, []byte("fedcba9876543210fedcba\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(dir, "open")
	if err := os.WriteFile(open, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name, file string
		wantErr    string // "" for success
	}{
		{"no token", "", "the endpoint wants a token; pass --token-file"},
		{"wrong token", wrong, "the token was refused"},
		{"world-readable file", open, "chmod 600 it"},
		{"the token", good, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := newAdminClient(addr, tt.file)
			if err == nil {
				_, err = c.snapshot()
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("got %v, want success", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("got %v, want an error with %q", err, tt.wantErr)
			}
		})
	}
}
