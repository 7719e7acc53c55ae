package main

import (
	"context"
	"testing"
	"time"

	"switchyard/internal/lab"
)

// TestBareForwarder runs two bare forwarders (switchyard-lab forward) in a
// lab, as the benchmark's bare case does, and checks that they carry ping
// (the latency measurement's own tool) and a TCP transfer intact both
// ways, and that nothing is left behind. It needs root.
func TestBareForwarder(t *testing.T) {
	if err := lab.Preflight(); err != nil {
		t.Skipf("bare forwarder pair: %v", err)
	}
	bin := buildSelf(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// No daemon runs: the lab wants a binary for them all the same.
	l, err := lab.New(ctx, lab.Options{Binary: bin, Tools: bin})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
		if left, err := l.Leftovers(context.Background()); err != nil || len(left) > 0 {
			t.Errorf("namespaces left after Close: %v (%v)", left, err)
		}
	}()
	for _, s := range [][2]*lab.Side{{l.A, l.B}, {l.B, l.A}} {
		f, err := l.StartForwarder(ctx, s[0], s[1])
		if err != nil {
			t.Fatal(err)
		}
		defer f.Stop()
	}
	if err := l.PingUntil(ctx, l.A, l.B.TUN4, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	rtt, err := l.PingRTTs(ctx, l.A, l.B.TUN4, 20, lab.LatencyInterval)
	if err != nil {
		t.Fatal(err)
	}
	if rtt.Sent != 20 || len(rtt.RTTs) < 18 {
		t.Errorf("ping through the forwarders: %d sent, %d replies; want 20 and at least 18", rtt.Sent, len(rtt.RTTs))
	}
	for _, dir := range [][2]*lab.Side{{l.A, l.B}, {l.B, l.A}} {
		tr, err := l.TCPTransfer(ctx, dir[0], dir[1], 5201, 32<<20, 0)
		if err != nil {
			t.Fatal(err)
		}
		if !tr.Match() {
			t.Errorf("%s → %s: sent %d bytes %s, received %d bytes %s", dir[0].Label, dir[1].Label,
				tr.Sent.Bytes, tr.Sent.SHA256, tr.Received.Bytes, tr.Received.SHA256)
		}
	}
}
