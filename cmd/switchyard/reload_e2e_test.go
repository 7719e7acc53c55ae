package main

// The reload namespace test: side a's config is rewritten and reloaded with
// `switchyard reload` while a continuous ping and a TCP transfer cross the
// tunnel, then a broken config is refused.

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"switchyard/internal/lab"
)

// Reload test parameters.
const (
	// reloadPings (200 at 50 ms, 10 s) is the continuous ping on the
	// unchanged route; none may be lost.
	reloadPings        = 200
	reloadPingInterval = "0.05"

	// reloadTransferTime (6 s) is how long the TCP transfer runs (its byte
	// count depends on the machine); the reload happens 2 s into it.
	reloadTransferTime = 6 * time.Second
	reloadTransferMax  = 4 << 30
	reloadAfter        = 2 * time.Second

	// reloadPeerMailbox is peer's mailbox capacity before and after.
	reloadPeerMailbox, reloadPeerMailboxNew = 256, 512

	// The added protocol: its port, its prefix, and a's and b's addresses in it.
	reloadNewPort  = 7001
	reloadSparePrt = 7002
)

var (
	reloadNewPrefix = netip.MustParsePrefix("10.92.0.0/24")
	reloadNewAddrA  = netip.MustParsePrefix("10.92.0.1/24")
	reloadNewAddrB  = netip.MustParseAddr("10.92.0.2")
	reloadSpare     = netip.MustParsePrefix("10.93.0.0/24")
	reloadExtra     = netip.MustParsePrefix("10.96.0.0/24") // a new route of peer2 that is no TUN subnet
	pingSummaryRE   = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`)
)

// withAddress adds an address to the TUN addresses of a lab config.
func withAddress(yaml string, p netip.Prefix) string {
	i := strings.Index(yaml, "  addresses: [")
	j := strings.Index(yaml[i:], "]")
	return yaml[:i+j] + fmt.Sprintf(", %q", p) + yaml[i+j:]
}

func TestReloadLive(t *testing.T) {
	needTool(t, "ping") // the continuous ping across the reload (iputils: -i, -W, its summary)
	l, ctx := newLab(t)
	cfgA := lab.Config{
		Protocols: []lab.Protocol{
			{Name: "peer", Type: "udp", Mailbox: lab.Mailbox{Capacity: reloadPeerMailbox}, Routes: lab.TunnelPrefixes},
			{Name: "spare", Type: "udp", Port: reloadSparePrt, Routes: []netip.Prefix{reloadSpare}},
		},
		Rejects: []netip.Prefix{lab.Reject4, lab.Reject6},
	}
	cfgB := lab.Config{Protocols: []lab.Protocol{
		{Name: "peer", Type: "udp", Routes: lab.TunnelPrefixes},
		{Name: "peer2", Type: "udp", Port: reloadNewPort, Routes: []netip.Prefix{reloadNewPrefix}},
	}}
	da := startDaemon(t, ctx, l, l.A, cfgA)
	db := startDaemon(t, ctx, l, l.B, cfgB)
	// b answers on the new prefix from the start (a /32: no connected route
	// competes with the daemon's).
	if out, err := l.Run(ctx, l.B, "ip", "addr", "add", reloadNewAddrB.String()+"/32", "dev", l.B.TUNDev); err != nil {
		t.Fatalf("add %s on b: %v: %s", reloadNewAddrB, err, out)
	}
	mustPing(t, ctx, l, l.A, l.B.TUN4)
	// Before the reload a has no route there ("Network is unreachable").
	if r, err := l.Ping(ctx, l.A, reloadNewAddrB, 1); err == nil && r.Received != 0 {
		t.Fatalf("ping %s before the reload got a reply; want no route yet:\n%s", reloadNewAddrB, r.Output)
	}

	// The continuous ping and the TCP transfer, both on the unchanged route.
	ping, err := l.Command(ctx, l.A, "ping", "-n", "-c", strconv.Itoa(reloadPings), "-i", reloadPingInterval, "-W", "2", l.B.TUN4.String())
	if err != nil {
		t.Fatal(err)
	}
	var pingOut bytes.Buffer
	ping.Stdout, ping.Stderr = &pingOut, &pingOut
	if err := ping.Start(); err != nil {
		t.Fatal(err)
	}
	pingDone := make(chan error, 1)
	go func() { pingDone <- ping.Wait(); l.Done(ping) }()
	type transfer struct {
		tr  lab.Transfer
		err error
	}
	tcpDone := make(chan transfer, 1)
	go func() {
		tr, err := l.TCPTransfer(ctx, l.A, l.B, e2eTCPPort, reloadTransferMax, reloadTransferTime)
		tcpDone <- transfer{tr, err}
	}()
	time.Sleep(reloadAfter)

	// Rewrite a's config: peer's mailbox grows, spare goes, peer2 comes
	// with its route and a's address on the new prefix.
	cfgA.Protocols = []lab.Protocol{
		{Name: "peer", Type: "udp", Mailbox: lab.Mailbox{Capacity: reloadPeerMailboxNew}, Routes: lab.TunnelPrefixes},
		{Name: "peer2", Type: "udp", Port: reloadNewPort, Routes: []netip.Prefix{reloadNewPrefix, reloadExtra}},
	}
	if err := os.WriteFile(da.Config, []byte(withAddress(l.YAML(l.A, cfgA), reloadNewAddrA)), 0o644); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, ctx, da)
	start := time.Now()
	out, stderr, err := l.Exec(ctx, l.A, l.CLI, "reload", "--admin", l.A.Admin)
	if err != nil {
		t.Fatalf("switchyard reload: %v\nstdout:\n%s\nstderr:\n%s", err, out, stderr)
	}
	t.Logf("switchyard reload took %v:\n%s", time.Since(start).Round(time.Millisecond), out)
	for _, want := range []string{
		"mailbox_resized peer: 256 drop_newest → 512 drop_newest",
		"protocol_added peer2: udp",
		"protocol_removed spare: udp",
		"route_added 10.92.0.0/24: to peer2",
		"route_removed 10.93.0.0/24: was to spare",
		"address_added 10.92.0.1/24",
		"kernel_route_added 10.96.0.0/24",
		"kernel_route_removed 10.93.0.0/24",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("switchyard reload output lacks %q", want)
		}
	}
	// The new address's connected route carries 10.92.0.0/24 into the TUN:
	// the node installs no route of its own over it.
	if strings.Contains(string(out), "kernel_route_added 10.92.0.0/24") {
		t.Errorf("switchyard reload output has kernel_route_added 10.92.0.0/24, the subnet of a TUN address")
	}
	if out, err := l.Run(ctx, l.A, "ip", "route", "show", reloadExtra.String()); err != nil || !strings.Contains(out, "proto 95") {
		t.Errorf("ip route show %s after the reload: %v %q, want the node's route (proto 95)", reloadExtra, err, out)
	}

	tcp := <-tcpDone
	if tcp.err != nil {
		t.Fatalf("TCP transfer across the reload: %v", tcp.err)
	}
	if !tcp.tr.Match() || tcp.tr.Received.Bytes == 0 {
		t.Fatalf("TCP a→b across the reload: received %d bytes sha256 %s, sent %d bytes sha256 %s",
			tcp.tr.Received.Bytes, tcp.tr.Received.SHA256, tcp.tr.Sent.Bytes, tcp.tr.Sent.SHA256)
	}
	t.Logf("TCP a→b across the reload: %d MiB in %.2f s, %.2f Gbit/s, sha256 match",
		tcp.tr.Received.Bytes>>20, tcp.tr.Received.Seconds, tcp.tr.Gbps())
	if err := <-pingDone; err != nil {
		t.Errorf("continuous ping: %v", err)
	}
	m := pingSummaryRE.FindStringSubmatch(pingOut.String())
	if m == nil || m[1] != strconv.Itoa(reloadPings) || m[2] != m[1] {
		t.Fatalf("continuous ping %s across the reload: want %d/%d replies, got:\n%s",
			l.B.TUN4, reloadPings, reloadPings, lastBytes(pingOut.String(), 600))
	}
	t.Logf("continuous ping across the reload: %s", m[0])

	// The new route works both ways through peer2.
	mustPing(t, ctx, l, l.A, reloadNewAddrB)
	after := snapshot(t, ctx, da)
	for _, a := range after.Actors {
		if len(a.Drops) > 0 {
			t.Logf("a's %s drops after the reload: %v", a.Name, a.Drops)
		}
	}
	p := actor(t, after, "peer")
	if p.Restarts != 0 || p.InPackets <= actor(t, before, "peer").InPackets {
		t.Errorf("peer after the reload: restarts %d, in_packets %d (before %d); want 0 restarts and counters that continue",
			p.Restarts, p.InPackets, actor(t, before, "peer").InPackets)
	}
	if p.Mailbox == nil || p.Mailbox.Capacity != reloadPeerMailboxNew {
		t.Errorf("peer mailbox = %+v, want capacity %d", p.Mailbox, reloadPeerMailboxNew)
	}
	if a2, b2 := actor(t, after, "peer2"), actor(t, snapshot(t, ctx, db), "peer2"); a2.OutPackets == 0 || b2.OutPackets == 0 {
		t.Errorf("peer2 out_packets: a %d, b %d; want both > 0 (request and reply through the new protocol)", a2.OutPackets, b2.OutPackets)
	}
	if _, ok := lab.FindActor(after, "spare"); ok {
		t.Error("the removed protocol spare is still in a's stats")
	}
	text, err := da.StatsText(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^\s*peer\s.*\s512 drop_newest\s`).MatchString(text) {
		t.Errorf("switchyard stats does not show peer's new capacity 512:\n%s", text)
	}
	routes, _ := l.Run(ctx, l.A, "ip", "route", "show", "dev", l.A.TUNDev)
	if !strings.Contains(routes, reloadNewPrefix.String()) || strings.Contains(routes, reloadSpare.String()) {
		t.Errorf("kernel routes on a's TUN: want %s and not %s:\n%s", reloadNewPrefix, reloadSpare, routes)
	}

	t.Run("broken config refused", func(t *testing.T) {
		good, err := os.ReadFile(da.Config)
		if err != nil {
			t.Fatal(err)
		}
		bad := strings.Replace(string(good), fmt.Sprintf("prefix: %q", reloadNewPrefix), `prefix: "10.92.0.0/33"`, 1)
		if bad == string(good) {
			t.Fatal("could not break the config")
		}
		line := 1 + strings.Count(bad[:strings.Index(bad, "10.92.0.0/33")], "\n")
		if err := os.WriteFile(da.Config, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		s0 := snapshot(t, ctx, da)
		out, stderr, err := l.Exec(ctx, l.A, l.CLI, "reload", "--admin", l.A.Admin)
		if err == nil {
			t.Fatalf("switchyard reload of a broken config exited 0:\n%s", out)
		}
		want := regexp.MustCompile(regexp.QuoteMeta(da.Config) + `:` + strconv.Itoa(line) + `:\d+: routes\[\d+\]\.prefix: `)
		if !want.Match(stderr) || !strings.Contains(string(stderr), "reload refused") {
			t.Errorf("stderr of the refused reload lacks %q and file:%d:col:\n%s", "reload refused", line, stderr)
		}
		t.Logf("refused reload:\n%s", stderr)
		// Traffic is unaffected: both routes answer and the counters grow.
		mustPing(t, ctx, l, l.A, l.B.TUN4)
		mustPing(t, ctx, l, l.A, reloadNewAddrB)
		s1 := snapshot(t, ctx, da)
		for _, name := range []string{"peer", "peer2"} {
			if a0, a1 := actor(t, s0, name), actor(t, s1, name); a1.OutPackets < a0.OutPackets+e2ePings || a1.Restarts != 0 {
				t.Errorf("%s after the refused reload: out_packets %d → %d, restarts %d; want at least %d more, no restart",
					name, a0.OutPackets, a1.OutPackets, a1.Restarts, e2ePings)
			}
		}
		if p := actor(t, s1, "peer"); p.Mailbox == nil || p.Mailbox.Capacity != reloadPeerMailboxNew {
			t.Errorf("peer mailbox after the refused reload = %+v, want %d", p.Mailbox, reloadPeerMailboxNew)
		}
		if log := da.Log(); !strings.Contains(log, "reload refused") {
			t.Errorf("a's log does not record the refused reload")
		}
	})

	t.Run("SIGHUP", func(t *testing.T) {
		// The good config back, reloaded by signal: nothing changes.
		if err := os.WriteFile(da.Config, []byte(withAddress(l.YAML(l.A, cfgA), reloadNewAddrA)), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(da.Pid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(e2eStateTimeout)
		for !strings.Contains(da.Log(), "reload applied: nothing changed") {
			if time.Now().After(deadline) {
				t.Fatalf("no \"reload applied: nothing changed\" in a's log %v after SIGHUP:\n%s", e2eStateTimeout, da.LogTail())
			}
			time.Sleep(lab.PollInterval)
		}
		if !strings.Contains(da.Log(), `"trigger": "SIGHUP"`) {
			t.Errorf("a's log does not name SIGHUP as the trigger:\n%s", da.LogTail())
		}
		mustPing(t, ctx, l, l.A, l.B.TUN4)
	})

	t.Run("accounting", func(t *testing.T) {
		checkAccounting(t, ctx, da)
		checkAccounting(t, ctx, db)
	})
}

func lastBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
