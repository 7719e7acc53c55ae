package node

import (
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"switchyard/actors/mailbox"
	"switchyard/packet/packettest"
)

// TestCoDelMailboxes: a config's codel policy and its target and interval
// reach the mailboxes at start, and a reload that changes only the target
// updates them in place, reported as a mailbox change; traffic flows and
// its queueing delay is recorded.
func TestCoDelMailboxes(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(), deadLetterThrottle)
	port := freePort(t)
	cfg := func(mb string) string {
		return reloadYAML("info", mb, reloadProto{"peer", port, "", "10.90.0.0/24"})
	}
	dev := packettest.New(16)
	n, err := New(mustParse(t, "a.yaml", cfg("{capacity: 64, policy: codel, target: 2ms, interval: 40ms}")), Options{Device: dev})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	defer n.Stop()

	check := func(when string, target, interval time.Duration) {
		t.Helper()
		mb := n.running["peer"].mailbox
		if _, p := mb.Capacity(); p != mailbox.CoDel {
			t.Errorf("%s: peer's policy %v, want codel", when, p)
		}
		if gt, gi := mb.CoDel(); gt != target || gi != interval {
			t.Errorf("%s: peer's codel target %v, interval %v; want %v, %v", when, gt, gi, target, interval)
		}
		if m := actorByName(n.Stats(), "router").Mailbox; m == nil || m.Policy != "codel" {
			t.Errorf("%s: router mailbox %+v, want codel", when, m)
		}
	}
	check("at start", 2*time.Millisecond, 40*time.Millisecond)
	loopThrough(t, dev, [4]byte{10, 90, 0, 2}, 20, "codel")
	if m := actorByName(n.Stats(), "router").Mailbox; m == nil {
		t.Fatal("router has no mailbox")
	} else {
		var waited uint64
		for _, c := range m.QueueDelay {
			waited += c
		}
		if waited == 0 {
			t.Errorf("router queue delay histogram %v: no batch recorded", m.QueueDelay)
		}
	}

	res, err := n.Reload(mustParse(t, "b.yaml", cfg("{capacity: 64, policy: codel, target: 7ms, interval: 40ms}")))
	if err != nil || !res.Applied {
		t.Fatalf("Reload = %+v, %v; want applied", res, err)
	}
	var details []string
	for _, c := range res.Changes {
		if c.Kind == ChangeMailboxResized {
			details = append(details, c.Name+": "+c.Detail)
		}
	}
	if got := strings.Join(details, "; "); !strings.Contains(got, "64 codel (target 2ms, interval 40ms) → 64 codel (target 7ms, interval 40ms)") {
		t.Errorf("mailbox changes = %q, want the target's change", got)
	}
	check("after the reload", 7*time.Millisecond, 40*time.Millisecond)
	loopThrough(t, dev, [4]byte{10, 90, 0, 2}, 10, "codel-reloaded")
}
