package main

// Namespace tests of protocols out of process (issue 4): the udp protocol
// runs in a protocol host (`switchyard host`) that the daemon spawns and
// supervises, on the namespace's own loopback (lab.OutOfProcess). They
// reuse the lab and helpers of e2e_test.go, need root, /dev/net/tun and
// `ip netns`, and skip otherwise; TestRemoteCheck needs nothing.
//
// Counters they read (GET /stats of the daemon): `peer` is the proxy the
// router sends to (drops host_down, remote_window), `peer.in` decodes what
// the host sends back, `remote` is the daemon's guard, `host/vpn-host` the
// host process (restarts); `vpn-host/…` are the host's own actors, reported
// to the daemon every second.

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"switchyard/actors/remote"
	"switchyard/internal/lab"
	"switchyard/node"
	"switchyard/packet"
	"switchyard/stats"
)

// Limits of the out-of-process tests, each with its unit and reason.
const (
	// remoteTestTimeout (4 min) bounds one test's context, longer than
	// e2eTestTimeout: with the race detector in four processes (two
	// daemons, two hosts) on 2 cores, 128 MiB of TCP through both hosts
	// took 27–73 s (15–40 Mbit/s), against 3 s without it.
	remoteTestTimeout = 4 * time.Minute

	// remoteUpTimeout (15 s) bounds waiting for a spawned host to run and
	// report its counters: a race-enabled binary starts in a few seconds on
	// a busy 2-core machine, and the host reports every second.
	remoteUpTimeout = 15 * time.Second

	// remoteHostStats (5 s) bounds waiting for a host-side counter to show a
	// change: hosts report every remote.StatsInterval (1 s).
	remoteHostStats = 5 * remote.StatsInterval

	// remoteResume (2 s) is how soon traffic must flow again after the host
	// is killed or continued (the number).
	remoteResume = 2 * time.Second

	// remotePingInterval (50 ms) is the ping rate that measures an outage:
	// the resume time is known to within one interval.
	remotePingInterval = 50 * time.Millisecond

	// remoteOutageMin (200 ms, 4 ping intervals) is the least gap at a
	// host's kill that shows traffic waited for the new host: a restart
	// alone takes remoteBackoff (100 ms) plus a process start (~250 ms
	// measured), during which the daemon drops as host_down.
	remoteOutageMin = 4 * remotePingInterval

	// remoteBackoff (100 ms) is supervision.backoff of the fault tests: the
	// pause before a killed host is started again.
	remoteBackoff = "100ms"

	// remoteKillTransfer (8 s) is how long the TCP stream of the kill test
	// runs; the kill comes remoteKillAfter (2 s) into it, so TCP has time to
	// recover and finish after the restart.
	remoteKillTransfer = 8 * time.Second
	remoteKillAfter    = 2 * time.Second
	remoteKillPort     = 5202

	// remoteTransferBytes (100 MiB, 105 MB) is the TCP transfer of the
	// tunnel test: the 100 MB, less than TestTunnel's 128 MiB since
	// a race-enabled run through both hosts moves only 10–40 Mbit/s.
	remoteTransferBytes = 100 << 20
)

// The SIGSTOP test: a flood into a daemon whose host hangs.
const (
	// stopPool (1024 buffers, 64 MiB) is side a's batch.pool_buffers.
	stopPool = 1024

	// stopWindow (4 batches) is side a's remote.window. The proxy holds up
	// to window batches in flight and window more pending, and pending
	// batches coalesce up to batch.max_packets (128): up to window × 128
	// packets wait, each in a pool buffer. That must be well below the pool
	// (4 × 128 = 512 < 1024), or the pool runs dry first — capture drops
	// no_buffers and the window never overflows. With the defaults (window
	// 32, pool 4096) a stopped host can pin the whole pool.
	stopWindow = 4

	// stopFloodPPS × stopFloodSize × stopFloodSeconds is the offered load
	// while the host is stopped: 40 000 × 1392 B × 5 s = 278 MB. Were the
	// batches queued without bound for the stopped host, that alone would
	// exceed stopRSSBound.
	stopFloodPPS     = 40_000
	stopFloodSize    = 1392 // the largest IPv4 UDP payload within the TUN's MTU 1420
	stopFloodSeconds = 5

	// stopSample (200 ms) is the interval of the VmRSS samples.
	stopSample = 200 * time.Millisecond

	// stopMaxSplit (19) is the most envelopes one batch becomes, as the
	// sender's maxSplit: 128 packets of up to 64 KiB, whole packets to an
	// envelope (7 in MaxEnvelopeBytes with their 5-byte headers).
	stopMaxSplit = packet.MaxBatch/((remote.MaxEnvelopeBytes-5)/(packet.MaxPacketBytes+5)) + 1

	// stopRSSBound is the most resident memory daemon a may reach while its
	// host is stopped, whatever the offered load:
	//   - every packet the daemon holds is in its pool: at most pool_buffers
	//     × packet.BufferBytes (64 MiB), whether in a mailbox or in the
	//     proxy's pending ring (window batches, drops beyond it);
	//   - the proxy's in-flight envelopes: at most window + maxSplit slot
	//     payloads of MaxEnvelopeBytes (23 × 512 KiB), and at most as much
	//     again marshalled into gRPC messages the stopped peer does not read
	//     (the endpoint writer's messages point at the slots; gRPC's write
	//     quota holds back the rest);
	//   - the allowance of TestOverload for the race-enabled runtime
	//     (overloadRuntimeAllowance, 160 MiB).
	// 64 + 23 + 160 = 247 MiB.
	stopRSSBound = stopPool*packet.BufferBytes + 2*(stopWindow+stopMaxSplit)*remote.MaxEnvelopeBytes + overloadRuntimeAllowance
)

// newRemoteLab is newLab with a context of remoteTestTimeout.
func newRemoteLab(t *testing.T) (*lab.Lab, context.Context) {
	t.Helper()
	l, _ := newLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), remoteTestTimeout)
	t.Cleanup(cancel) // runs before the lab's cleanup, which needs no context
	return l, ctx
}

// oop returns side's default config with the udp protocol on a spawned
// host (lab.OutOfProcess).
func oop(l *lab.Lab, side *lab.Side) lab.Config { return lab.OutOfProcess(l.DefaultConfig(side)) }

// startRemote starts side's daemon with cfg and waits until each of its
// spawned hosts runs and has reported the counters of its protocols.
func startRemote(t *testing.T, ctx context.Context, l *lab.Lab, side *lab.Side, cfg lab.Config) *lab.Daemon {
	t.Helper()
	d := startDaemon(t, ctx, l, side, cfg)
	for _, h := range cfg.Hosts {
		var want []string
		for _, p := range cfg.Protocols {
			if p.Host == h.Name {
				want = append(want, h.Name+"/"+p.Name)
			}
		}
		s, err := d.WaitStats(ctx, remoteUpTimeout, func(s node.Snapshot) bool {
			if a, ok := lab.FindActor(s, "host/"+h.Name); !ok || a.State != stats.Running.String() {
				return false
			}
			for _, name := range want {
				if _, ok := lab.FindActor(s, name); !ok {
					return false
				}
			}
			return true
		})
		if err != nil {
			t.Fatalf("side %s: host %s not running with %v within %v: %v\nactors: %v\nlog:\n%s",
				side.Label, h.Name, want, remoteUpTimeout, err, actorNames(s), d.LogTail())
		}
	}
	return d
}

func actorNames(s node.Snapshot) []string {
	names := make([]string, 0, len(s.Actors))
	for _, a := range s.Actors {
		names = append(names, fmt.Sprintf("%s(%s)", a.Name, a.State))
	}
	return names
}

// isGuard reports whether the actor is a remote guard (`remote`,
// `vpn-host/remote`): it counts rejected messages, not packets, so it has
// drops and no in_packets.
func isGuard(name string) bool { return name == "remote" || strings.HasSuffix(name, "/remote") }

// remoteProblems lists what keeps s from being settled: an actor whose
// in_packets ≠ out + drops + queued (guards aside) and, for each protocol
// on a host, a link that lost packets: the proxy sent more than the host's
// receiver took in, or the host's uplink sent more than the daemon's
// receiver took in.
func remoteProblems(s node.Snapshot, cfg lab.Config) []string {
	var out []string
	for _, a := range s.Actors {
		if isGuard(a.Name) {
			continue
		}
		if want := a.OutPackets + a.DroppedTotal() + a.Queued(); a.InPackets != want {
			out = append(out, fmt.Sprintf("%s: in_packets = %d, want out %d + drops %d %v + queued %d = %d",
				a.Name, a.InPackets, a.OutPackets, a.DroppedTotal(), a.Drops, a.Queued(), want))
		}
	}
	for _, p := range cfg.Protocols {
		if p.Host == "" {
			continue
		}
		for _, link := range [][2]string{
			{p.Name, p.Host + "/" + p.Name + ".in"},         // daemon → host
			{p.Host + "/" + p.Name + ".up", p.Name + ".in"}, // host → daemon
		} {
			from, ok1 := lab.FindActor(s, link[0])
			to, ok2 := lab.FindActor(s, link[1])
			switch {
			case !ok1 || !ok2:
				out = append(out, fmt.Sprintf("no actor %s or %s", link[0], link[1]))
			case from.OutPackets != to.InPackets+to.DroppedTotal():
				out = append(out, fmt.Sprintf("link %s → %s: sent %d packets, received %d (+ %d dropped %v)",
					link[0], link[1], from.OutPackets, to.InPackets, to.DroppedTotal(), to.Drops))
			}
		}
	}
	return out
}

// checkRemoteAccounting waits until d's counters, host-side ones included,
// are settled (remoteProblems is empty) and fails t with what is not.
func checkRemoteAccounting(t *testing.T, ctx context.Context, d *lab.Daemon, cfg lab.Config) node.Snapshot {
	t.Helper()
	s, err := d.WaitStats(ctx, e2eQuiesceTimeout, func(s node.Snapshot) bool { return len(remoteProblems(s, cfg)) == 0 })
	if err != nil {
		for _, p := range remoteProblems(s, cfg) {
			t.Errorf("%s: %s", d.Side.NS, p)
		}
	}
	return s
}

// TestRemoteTunnel is TestTunnel with the udp protocol out of process on
// one side, then on both: ping both ways over IPv4 and IPv6, 100 MiB of TCP
// arrive intact, and every packet is accounted for on both sides of each
// process boundary.
func TestRemoteTunnel(t *testing.T) {
	for _, tc := range []struct {
		name   string
		remote [2]bool // side a, side b out of process
	}{
		{"one side", [2]bool{true, false}},
		{"both sides", [2]bool{true, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, ctx := newRemoteLab(t)
			var ds [2]*lab.Daemon
			var cfgs [2]lab.Config
			for i, side := range []*lab.Side{l.A, l.B} {
				cfgs[i] = l.DefaultConfig(side)
				if tc.remote[i] {
					cfgs[i] = lab.OutOfProcess(cfgs[i])
				}
				ds[i] = startRemote(t, ctx, l, side, cfgs[i])
			}

			t.Run("ping", func(t *testing.T) {
				for _, r := range routes(l) {
					t.Run(r.name, func(t *testing.T) { mustPing(t, ctx, l, r.from, r.addr) })
				}
			})

			t.Run("tcp", func(t *testing.T) {
				tr, err := l.TCPTransfer(ctx, l.A, l.B, e2eTCPPort, remoteTransferBytes, 0)
				if err != nil {
					t.Fatal(err)
				}
				if tr.Received.Bytes != remoteTransferBytes || !tr.Match() {
					t.Fatalf("TCP a→b: received %d bytes sha256 %s, want %d bytes sha256 %s (what was sent)",
						tr.Received.Bytes, tr.Received.SHA256, tr.Sent.Bytes, tr.Sent.SHA256)
				}
				t.Logf("TCP a→b: %d MiB in %.2f s, %.2f Gbit/s, sha256 match", tr.Received.Bytes>>20, tr.Received.Seconds, tr.Gbps())
			})

			t.Run("accounting", func(t *testing.T) {
				for i, d := range ds {
					s := checkRemoteAccounting(t, ctx, d, cfgs[i])
					if !tc.remote[i] {
						continue
					}
					// The transfer crossed the host: the proxy sent at least
					// the transfer's bytes (side a) or their ACKs (side b).
					p := actor(t, s, "peer")
					hp := actor(t, s, lab.HostName+"/peer")
					t.Logf("side %s: proxy out %d packets %d MiB, drops %v; host protocol in %d, out %d",
						d.Side.Label, p.OutPackets, p.OutBytes>>20, p.Drops, hp.InPackets, hp.OutPackets)
					if d.Side == l.A && p.OutBytes < remoteTransferBytes {
						t.Errorf("side a: proxy out_bytes = %d, want ≥ %d (the transfer went through the host)", p.OutBytes, remoteTransferBytes)
					}
					if hp.InPackets == 0 || hp.OutPackets == 0 {
						t.Errorf("side %s: host protocol in %d, out %d packets; want both > 0", d.Side.Label, hp.InPackets, hp.OutPackets)
					}
					for _, r := range []stats.Reason{stats.HostDown, stats.RemoteWindow} {
						if n := p.Drops[r.String()]; n != 0 {
							t.Errorf("side %s: proxy drops[%s] = %d, want 0 (the host never stopped)", d.Side.Label, r, n)
						}
					}
				}
			})
		})
	}
}

// hostPid returns the pid of d's spawned host.
func hostPid(t *testing.T, d *lab.Daemon) int {
	t.Helper()
	pid, err := d.HostPid(lab.HostName)
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// TestRemoteHostKilled kills side a's spawned host (SIGKILL) during a TCP
// transfer: the daemon stays up, restarts the host once, traffic resumes
// within remoteResume, the transfer completes intact, and what was routed
// to the host while it was down is counted as host_down.
func TestRemoteHostKilled(t *testing.T) {
	needTool(t, "ping") // the ping trace (iputils ping -D)
	l, ctx := newRemoteLab(t)
	cfgA := oop(l, l.A)
	cfgA.Supervision = lab.Supervision{Backoff: remoteBackoff}
	da := startRemote(t, ctx, l, l.A, cfgA)
	startDaemon(t, ctx, l, l.B, l.DefaultConfig(l.B))
	mustPing(t, ctx, l, l.A, l.B.TUN4)
	daemonPid, oldHost := da.Pid(), hostPid(t, da)

	trace, err := l.StartPingTrace(ctx, l.A, l.B.TUN4, remotePingInterval)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		tr  lab.Transfer
		err error
	}
	done := make(chan result, 1)
	go func() {
		tr, err := l.TCPTransfer(ctx, l.A, l.B, remoteKillPort, 1<<40, remoteKillTransfer)
		done <- result{tr, err}
	}()
	time.Sleep(remoteKillAfter)
	killed := time.Now()
	if err := lab.Signal(oldHost, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	newHost, err := da.WaitHostPid(ctx, lab.HostName, oldHost, remoteUpTimeout)
	if err != nil {
		t.Fatalf("no new host within %v of the kill: %v\n%s", remoteUpTimeout, err, da.LogTail())
	}
	t.Logf("host pid %d killed; restarted as pid %d after %v", oldHost, newHost, time.Since(killed).Round(time.Millisecond))
	res := <-done
	replies, err := trace.Stop()
	if err != nil {
		t.Fatal(err)
	}

	if res.err != nil {
		t.Errorf("TCP transfer across the kill: %v", res.err)
	} else if !res.tr.Match() || res.tr.Received.Bytes == 0 {
		t.Errorf("TCP transfer across the kill: received %d bytes sha256 %s, sent %d bytes sha256 %s; want the same",
			res.tr.Received.Bytes, res.tr.Received.SHA256, res.tr.Sent.Bytes, res.tr.Sent.SHA256)
	} else {
		t.Logf("TCP transfer across the kill: %d MiB intact (sha256 match), %.2f Gbit/s", res.tr.Received.Bytes>>20, res.tr.Gbps())
	}

	// The outage is the longest gap between two ping replies that begins at
	// the kill: at the last reply before it, or at most remoteInFlightSlack
	// after it (replies already in flight may still land just after the
	// kill). It must be long enough to show the kill interrupted traffic
	// (remoteOutageMin) and, like every gap of the trace, at most
	// remoteResume. A gap elsewhere may be the longest on a loaded machine
	// (CI once saw a 621 ms stall 2 s after a 447 ms outage); it only has to
	// stay within remoteResume too.
	last, okLast := replies.LastBefore(killed)
	first, okFirst := replies.FirstAfter(killed)
	outage, from := replies.MaxGapStarting(last, killed.Add(remoteInFlightSlack))
	gap, gapFrom := replies.MaxGap()
	t.Logf("ping every %v: %d replies; last before the kill %v before it, first after %v after it; outage %v; longest gap %v (from %v after the kill)",
		remotePingInterval, len(replies), killed.Sub(last).Round(time.Millisecond), first.Sub(killed).Round(time.Millisecond),
		outage.Round(time.Millisecond), gap.Round(time.Millisecond), gapFrom.Sub(killed).Round(time.Millisecond))
	switch {
	case !okLast || !okFirst:
		t.Errorf("ping: replies before the kill %v, after %v; want both", okLast, okFirst)
	case outage < remoteOutageMin:
		t.Errorf("the gap at the kill is %v (from %v after it), want at least %v: the kill did not interrupt traffic?",
			outage.Round(time.Millisecond), from.Sub(killed).Round(time.Millisecond), remoteOutageMin)
	case gap > remoteResume:
		t.Errorf("traffic stopped for %v (from %v after the kill), want at most %v", gap.Round(time.Millisecond),
			gapFrom.Sub(killed).Round(time.Millisecond), remoteResume)
	}

	if !da.Alive() || da.Pid() != daemonPid {
		t.Fatalf("daemon of side a: alive %v, pid %d (was %d); want it running, same pid\n%s", da.Alive(), da.Pid(), daemonPid, da.LogTail())
	}
	s, err := da.WaitStats(ctx, e2eStateTimeout, func(s node.Snapshot) bool {
		a, _ := lab.FindActor(s, "host/"+lab.HostName)
		return a.State == stats.Running.String() && a.Restarts >= 1
	})
	h := actor(t, s, "host/"+lab.HostName)
	if err != nil || h.Restarts != 1 || h.State != stats.Running.String() {
		t.Errorf("host/%s: restarts %d, state %s; want 1, running (%v)", lab.HostName, h.Restarts, h.State, err)
	}
	mustPing(t, ctx, l, l.A, l.B.TUN4)
	mustPing(t, ctx, l, l.B, l.A.TUN6)

	s, err = da.Quiesce(ctx, e2eQuiesceTimeout)
	if err != nil {
		t.Fatalf("wait for side a to drain: %v", err)
	}
	p := actor(t, s, "peer")
	t.Logf("proxy peer: in %d, out %d, drops %v, queued %d", p.InPackets, p.OutPackets, p.Drops, p.Queued())
	if n := p.Drops[stats.HostDown.String()]; n == 0 {
		t.Errorf("peer drops[host_down] = 0, want > 0 (packets were routed to the host while it was down)")
	}
	if want := p.OutPackets + p.DroppedTotal() + p.Queued(); p.InPackets != want {
		t.Errorf("peer: in_packets = %d, want out %d + drops %d %v + queued %d = %d",
			p.InPackets, p.OutPackets, p.DroppedTotal(), p.Drops, p.Queued(), want)
	}
}

// TestRemoteHostStopped stops side a's host (SIGSTOP) during a UDP flood:
// the proxy's window fills and it drops by policy as remote_window, the
// daemon's resident memory stays under stopRSSBound, and after SIGCONT the
// tunnel answers pings again within remoteResume.
func TestRemoteHostStopped(t *testing.T) {
	needTool(t, "ping") // the ping trace (iputils ping -D)
	l, ctx := newRemoteLab(t)
	cfgA := oop(l, l.A)
	cfgA.PoolBuffers, cfgA.RemoteWindow = stopPool, stopWindow
	da := startRemote(t, ctx, l, l.A, cfgA)
	startDaemon(t, ctx, l, l.B, l.DefaultConfig(l.B))
	mustPing(t, ctx, l, l.A, l.B.TUN4)
	host := hostPid(t, da)
	restartsBefore := actor(t, snapshot(t, ctx, da), "host/"+lab.HostName).Restarts
	if mem, err := da.Memory(); err == nil {
		t.Logf("daemon memory before: VmRSS %d MiB", mem.RSS>>20)
	}

	if err := lab.Signal(host, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	var contOnce sync.Once
	cont := func() { contOnce.Do(func() { _ = lab.Signal(host, syscall.SIGCONT) }) }
	t.Cleanup(cont) // a stopped host would not stop with its daemon
	before := actor(t, snapshot(t, ctx, da), "peer")

	type result struct {
		r   lab.FloodReport
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := l.UDPFlood(ctx, l.A, lab.Flood{
			To:  netip.AddrPortFrom(l.B.TUN4, 9), // discard
			PPS: stopFloodPPS, Seconds: stopFloodSeconds, Size: stopFloodSize,
		})
		done <- result{r, err}
	}()
	var peak int64
	var samples int
	tick := time.NewTicker(stopSample)
	for end := time.Now().Add(stopFloodSeconds * time.Second); time.Now().Before(end); {
		<-tick.C
		m, err := da.Memory()
		if err != nil {
			t.Fatalf("daemon memory: %v", err)
		}
		peak, samples = max(peak, m.RSS), samples+1
	}
	tick.Stop()
	fr := <-done
	if fr.err != nil {
		t.Fatalf("flood: %v", fr.err)
	}
	s := snapshot(t, ctx, da)
	p := actor(t, s, "peer")
	t.Logf("flood with the host stopped: %d datagrams sent in %.1f s; proxy in %d packets (%d MiB), out %d, drops %v, queued %d",
		fr.r.Sent, fr.r.Seconds, p.InPackets-before.InPackets, (p.InBytes-before.InBytes)>>20, p.OutPackets-before.OutPackets,
		p.Drops, p.Queued())
	t.Logf("daemon VmRSS: peak of %d samples every %v = %d MiB; bound %d MiB (pool %d × %d B + 2 × (%d + %d) envelopes × %d B + %d MiB)",
		samples, stopSample, peak>>20, stopRSSBound>>20, stopPool, packet.BufferBytes, stopWindow, stopMaxSplit,
		remote.MaxEnvelopeBytes, overloadRuntimeAllowance>>20)
	if peak > stopRSSBound {
		t.Errorf("daemon VmRSS peaked at %d bytes with the host stopped, want ≤ %d", peak, stopRSSBound)
	}
	if n := p.Drops[stats.RemoteWindow.String()] - before.Drops[stats.RemoteWindow.String()]; n == 0 {
		t.Errorf("peer drops[remote_window] grew by 0, want > 0 (the window of %d batches filled)", stopWindow)
	}
	if p.Queued() > stopWindow*packet.MaxBatch {
		t.Errorf("peer queued %d packets, want ≤ window %d × %d", p.Queued(), stopWindow, packet.MaxBatch)
	}
	for _, a := range s.Actors {
		if len(a.Drops) > 0 {
			t.Logf("  %s: in %d, out %d, drops %v", a.Name, a.InPackets, a.OutPackets, a.Drops)
		}
	}
	if !da.Alive() {
		t.Fatalf("daemon of side a exited (code %d):\n%s", da.ExitCode(), da.LogTail())
	}

	trace, err := l.StartPingTrace(ctx, l.A, l.B.TUN4, remotePingInterval)
	if err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	cont()
	time.Sleep(remoteResume + time.Second)
	replies, err := trace.Stop()
	if err != nil {
		t.Fatal(err)
	}
	first, ok := replies.FirstAfter(resumed)
	if !ok || first.Sub(resumed) > remoteResume {
		t.Errorf("after SIGCONT: first ping reply %v later (found %v), want within %v; %d replies",
			first.Sub(resumed).Round(time.Millisecond), ok, remoteResume, len(replies))
	} else {
		t.Logf("after SIGCONT: first ping reply %v later", first.Sub(resumed).Round(time.Millisecond))
	}
	mustPing(t, ctx, l, l.A, l.B.TUN4)
	if pid, err := da.HostPid(lab.HostName); err != nil || pid != host {
		t.Logf("note: the host is now pid %d (%v), was %d", pid, err, host)
	}
	h := actor(t, snapshot(t, ctx, da), "host/"+lab.HostName)
	t.Logf("host/%s: state %s, restarts %d (before the stop %d)", lab.HostName, h.State, h.Restarts, restartsBefore)

	s, err = da.Quiesce(ctx, e2eQuiesceTimeout)
	if err != nil {
		t.Fatalf("wait for side a to drain: %v", err)
	}
	p = actor(t, s, "peer")
	if want := p.OutPackets + p.DroppedTotal() + p.Queued(); p.InPackets != want {
		t.Errorf("peer: in_packets = %d, want out %d + drops %d %v + queued %d = %d",
			p.InPackets, p.OutPackets, p.DroppedTotal(), p.Drops, p.Queued(), want)
	}
}

// settledActor waits until the counters of actor name on d have not moved
// for longer than a host's report interval (a host's counters reach the
// daemon up to remote.StatsInterval late), and returns them with the
// snapshot.
func settledActor(t *testing.T, ctx context.Context, d *lab.Daemon, name string) (stats.Row, node.Snapshot) {
	t.Helper()
	var last stats.Row
	var since time.Time
	s, err := d.WaitStats(ctx, e2eQuiesceTimeout, func(s node.Snapshot) bool {
		a, _ := lab.FindActor(s, name)
		if since.IsZero() || a.InPackets != last.InPackets || a.OutPackets != last.OutPackets || a.DroppedTotal() != last.DroppedTotal() {
			last, since = a, time.Now()
			return false
		}
		return time.Since(since) > remote.StatsInterval+2*lab.PollInterval
	})
	if err != nil {
		t.Fatalf("counters of %s did not settle: %v", name, err)
	}
	return actor(t, s, name), s
}

// hostileRun runs `switchyard-lab hostile` in side's namespace and returns its
// report.
func hostileRun(ctx context.Context, l *lab.Lab, side *lab.Side, args ...string) (lab.HostileReport, string, error) {
	out, stderr, err := l.Exec(ctx, side, l.Tools, append([]string{"hostile"}, args...)...)
	var r lab.HostileReport
	if err != nil {
		return r, string(stderr), err
	}
	return r, string(stderr), lab.DecodeJSONLine(string(out), &r)
}

// TestRemoteHostile sends what no honest peer sends — an unknown type name,
// garbage msgpack in a valid envelope, an oversized envelope, an oversized
// gRPC message, the unary RPCs — to the remote listeners of side a's host
// and of its daemon. Each is rejected and counted under its reason, and both
// processes keep running (same pids, no restart) and forwarding.
func TestRemoteHostile(t *testing.T) {
	l, ctx := newRemoteLab(t)
	// Over gRPC: with shared memory no batch travels on protoactor remote,
	// so there is no batch receiver to attack there (the region's own
	// hostile-host tests are in actors/remote/shm).
	cfgA := lab.OutOfProcessOver(l.DefaultConfig(l.A), "grpc")
	// A secret file, so the hostile client can present the secret: what
	// it sends then is what a compromised host could send.
	secretFile := filepath.Join(l.Dir, "remote.secret")
	if err := os.WriteFile(secretFile, []byte("hostile-test-secret-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgA.SecretFile = secretFile
	da := startRemote(t, ctx, l, l.A, cfgA)
	startDaemon(t, ctx, l, l.B, l.DefaultConfig(l.B))
	mustPing(t, ctx, l, l.A, l.B.TUN4)
	daemonPid, host := da.Pid(), hostPid(t, da)
	hostAddr, err := lab.ListenAddr(host) // each incarnation picks its port
	if err != nil {
		t.Fatalf("the host's remote port: %v", err)
	}

	for _, target := range []struct {
		name     string
		addr     string
		guard    string // the guard's actor
		receiver string // the actor of sy-in/peer
	}{
		{"host", hostAddr.String(), lab.HostName + "/remote", lab.HostName + "/peer.in"},
		{"daemon", lab.DefaultRemoteListen, "remote", "peer.in"},
	} {
		for _, tc := range []struct {
			name    string
			actor   string // guard or receiver
			reason  stats.Reason
			want    uint64
			outcome string   // in the hostile report's outcome
			args    []string // the secret: the file's unless set
		}{
			// Without the secret, or with another, nothing is read.
			{"unknown-type", target.guard, remote.Unauthenticated, 1, "refused: Unauthenticated", []string{}},
			{"garbage-msgpack", target.guard, remote.Unauthenticated, 1, "refused: Unauthenticated", []string{"--secret", "wrong-secret-0123456789abcdef"}},
			{"unary", target.guard, remote.Unauthenticated, 2, "ListProcesses: Unauthenticated; GetProcessDiagnostics: Unauthenticated", []string{}},
			{"open", target.guard, remote.Unauthenticated, 1, "refused: Unauthenticated", []string{}},
			// With the secret: a compromised peer's input is still filtered.
			{"unknown-type", target.guard, stats.UnknownType, 1, "closed by the server", nil},
			// The receiver counts the packets each envelope claims.
			{"garbage-msgpack", target.receiver, stats.Malformed, uint64(lab.HostileGarbagePackets()), "closed by the server", nil},
			{"oversized-envelope", target.guard, stats.Oversized, 1, "closed by the server", nil},
			{"oversized-grpc", target.guard, stats.Oversized, 1, "ResourceExhausted", nil},
			{"unary", target.guard, stats.UnknownType, 2, "ListProcesses: Unimplemented; GetProcessDiagnostics: Unimplemented", nil},
		} {
			secret := "with the secret"
			if tc.args != nil {
				secret = "without it"
			}
			t.Run(target.name+"/"+tc.name+" "+secret, func(t *testing.T) {
				before, s0 := settledActor(t, ctx, da, tc.actor)
				restarts := actor(t, s0, "host/"+lab.HostName).Restarts
				args := tc.args
				if args == nil {
					args = []string{"--secret-file", secretFile}
				}
				rep, stderr, err := hostileRun(ctx, l, l.A, append([]string{"--addr", target.addr, "--case", tc.name}, args...)...)
				if err != nil {
					t.Fatalf("hostile: %v\n%s", err, stderr)
				}
				t.Logf("hostile %s → %s: %d messages, %d bytes: %s", tc.name, target.addr, rep.Messages, rep.Bytes, rep.Outcome)
				if !strings.Contains(rep.Outcome, tc.outcome) {
					t.Errorf("outcome %q, want it to contain %q", rep.Outcome, tc.outcome)
				}
				key := tc.reason.String()
				s, _ := da.WaitStats(ctx, remoteHostStats, func(s node.Snapshot) bool {
					a, _ := lab.FindActor(s, tc.actor)
					return a.Drops[key] >= before.Drops[key]+tc.want
				})
				after := actor(t, s, tc.actor)
				if got := after.Drops[key] - before.Drops[key]; got != tc.want {
					t.Errorf("%s drops[%s] grew by %d, want %d (drops before %v, after %v)", tc.actor, key, got, tc.want, before.Drops, after.Drops)
				}
				if tc.actor == target.receiver && after.OutPackets != before.OutPackets {
					t.Errorf("%s out_packets grew by %d, want 0 (garbage must not be forwarded)", tc.actor, after.OutPackets-before.OutPackets)
				}
				if !da.Alive() || da.Pid() != daemonPid {
					t.Fatalf("daemon: alive %v, pid %d (was %d)\n%s", da.Alive(), da.Pid(), daemonPid, da.LogTail())
				}
				if pid, err := da.HostPid(lab.HostName); err != nil || pid != host {
					t.Fatalf("host: pid %d (%v), want %d still running\n%s", pid, err, host, da.LogTail())
				}
				if h := actor(t, s, "host/"+lab.HostName); h.Restarts != restarts || h.State != stats.Running.String() {
					t.Errorf("host/%s: restarts %d → %d, state %s; want unchanged, running", lab.HostName, restarts, h.Restarts, h.State)
				}
				mustPing(t, ctx, l, l.A, l.B.TUN4)
			})
		}
	}
	// Even with the secret, an OPEN from another sender never replaces the
	// daemon's live instance (a take-over of the tunnel, issue 12).
	t.Run("host/open with the secret", func(t *testing.T) {
		rep, stderr, err := hostileRun(ctx, l, l.A, "--addr", hostAddr.String(), "--case", "open", "--secret-file", secretFile)
		if err != nil {
			t.Fatalf("hostile: %v\n%s", err, stderr)
		}
		t.Logf("hostile open → %s: %s", hostAddr, rep.Outcome)
		const refusal = `instance \"peer\" is open for another daemon`
		deadline := time.Now().Add(remoteHostStats)
		for !strings.Contains(da.LogTail(), refusal) && time.Now().Before(deadline) {
			time.Sleep(lab.PollInterval)
		}
		if !strings.Contains(da.LogTail(), refusal) {
			t.Errorf("the host did not refuse the OPEN (want %s in the log):\n%s", refusal, da.LogTail())
		}
		if pid, err := da.HostPid(lab.HostName); err != nil || pid != host {
			t.Fatalf("host: pid %d (%v), want %d still running", pid, err, host)
		}
		mustPing(t, ctx, l, l.A, l.B.TUN4)
	})
}

// TestRemoteCheck: `check` refuses a host or remote listener off loopback
// without mutual TLS, and accepts it with.
func TestRemoteCheck(t *testing.T) {
	dir := t.TempDir()
	files, err := lab.WriteTLSFiles(dir, "", netip.MustParseAddr("10.91.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	conf := func(hostListen, remoteListen string, tls bool) string {
		var b strings.Builder
		if remoteListen != "" || tls {
			b.WriteString("remote:\n")
			if remoteListen != "" {
				fmt.Fprintf(&b, "  listen: %s\n", remoteListen)
			}
			if tls {
				fmt.Fprintf(&b, "  tls: {ca: %q, cert: %q, key: %q}\n", files.CA, files.Cert, files.Key)
			}
		}
		fmt.Fprintf(&b, `hosts:
  - name: vpn-host
    listen: %s
    spawn: true
routes: [{prefix: 10.90.0.0/24, to: peer}]
protocols:
  - name: peer
    type: udp
    host: vpn-host
    settings: {listen: "10.91.0.1:7000", peer: "10.91.0.2:7000"}
`, hostListen)
		return b.String()
	}
	for _, tc := range []struct {
		name     string
		yaml     string
		wantCode int
		wantErrs []string
	}{
		{"host on loopback", conf("127.0.0.1:7100", "", false), 0, nil},
		{"host off loopback, no tls", conf("10.91.0.1:7100", "", false), 1, []string{"hosts[0].listen", "mutual TLS"}},
		{"remote.listen off loopback, no tls", conf("127.0.0.1:7100", "10.91.0.1:7200", false), 1, []string{"remote.listen", "mutual TLS"}},
		{"both off loopback, no tls", conf("10.91.0.1:7100", "0.0.0.0:7200", false), 1, []string{"hosts[0].listen", "remote.listen", "mutual TLS"}},
		{"both off loopback, mutual tls", conf("10.91.0.1:7100", "10.91.0.1:7200", true), 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml")
			if err := os.WriteFile(p, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			if got := check(p, &stdout, &stderr); got != tc.wantCode {
				t.Fatalf("switchyard check: exit code %d, want %d; stderr:\n%s\nconfig:\n%s", got, tc.wantCode, stderr.String(), tc.yaml)
			}
			for _, want := range tc.wantErrs {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
				}
			}
		})
	}
}

// TestRemoteMutualTLS runs side a's host and the daemon's remote listener
// on the veth address (not loopback) with mutual TLS: the tunnel works, and
// a client in namespace b reaches neither listener without a certificate
// from the CA, while one with it is served (and its unknown type counted).
func TestRemoteMutualTLS(t *testing.T) {
	l, ctx := newRemoteLab(t)
	files, err := lab.WriteTLSFiles(l.Dir, "a-", l.A.Veth4, netip.MustParseAddr("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	hostAddr := netip.AddrPortFrom(l.A.Veth4, 7100).String()
	remoteAddr := netip.AddrPortFrom(l.A.Veth4, 7200).String()
	cfgA := oop(l, l.A)
	cfgA.Hosts[0].Listen, cfgA.RemoteListen = hostAddr, remoteAddr
	cfgA.TLS = files
	da := startRemote(t, ctx, l, l.A, cfgA)
	startDaemon(t, ctx, l, l.B, l.DefaultConfig(l.B))
	for _, r := range routes(l) {
		mustPing(t, ctx, l, r.from, r.addr)
	}
	pid, err := da.HostPid(lab.HostName)
	if err != nil {
		t.Fatalf("spawned host: %v", err)
	} else if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err != nil || !bytes.Contains(b, []byte("--tls-cert")) {
		t.Errorf("host command line %q (%v): want --tls-cert", bytes.ReplaceAll(b, []byte{0}, []byte{' '}), err)
	}
	// A spawned host picks its port anew each incarnation, on the
	// configured address.
	if got, err := lab.ListenAddr(pid); err != nil || got.Addr() != l.A.Veth4 {
		t.Fatalf("spawned host listens on %v (%v), want an address on %v", got, err, l.A.Veth4)
	} else {
		hostAddr = got.String()
	}

	for _, target := range []struct{ addr, guard string }{
		{hostAddr, lab.HostName + "/remote"},
		{remoteAddr, "remote"},
	} {
		t.Run(target.addr, func(t *testing.T) {
			key := stats.UnknownType.String()
			before := actor(t, snapshot(t, ctx, da), target.guard).Drops[key]
			for _, tc := range []struct {
				name string
				args []string
			}{
				{"plaintext", nil},
				{"tls without a client certificate", []string{"--tls-ca", files.CA}},
			} {
				args := append([]string{"--addr", target.addr, "--case", "unknown-type", "--timeout", "5s"}, tc.args...)
				rep, stderr, err := hostileRun(ctx, l, l.B, args...)
				if err == nil {
					t.Errorf("%s: hostile client was served (%s), want it refused", tc.name, rep.Outcome)
				} else {
					t.Logf("%s: refused: %s", tc.name, strings.TrimSpace(stderr))
				}
			}
			// The control: with the CA's certificate the same client is served.
			rep, stderr, err := hostileRun(ctx, l, l.B, "--addr", target.addr, "--case", "unknown-type",
				"--tls-ca", files.CA, "--tls-cert", files.Cert, "--tls-key", files.Key)
			if err != nil {
				t.Fatalf("with a client certificate: %v\n%s", err, stderr)
			}
			s, _ := da.WaitStats(ctx, remoteHostStats, func(s node.Snapshot) bool {
				a, _ := lab.FindActor(s, target.guard)
				return a.Drops[key] > before
			})
			if got := actor(t, s, target.guard).Drops[key] - before; got != 1 {
				t.Errorf("%s drops[%s] grew by %d, want 1 (the certified client's message; none from the refused ones); outcome %q",
					target.guard, key, got, rep.Outcome)
			}
		})
	}
	mustPing(t, ctx, l, l.A, l.B.TUN4)
}

// remoteInFlightSlack (250 ms) is how long after a host's kill replies that
// were already past it may still arrive: 5 ping intervals.
const remoteInFlightSlack = 5 * remotePingInterval
