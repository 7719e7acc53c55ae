package main

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"switchyard/internal/lab"
)

// Ports and listeners of TestCapabilities.
const (
	capsLowPort    = 700              // below 1024: the host that runs it needs CAP_NET_BIND_SERVICE
	capsHighPort   = 7002             // a host that runs only this keeps nothing
	capsLowListen  = "127.0.0.1:7100" // host "low"
	capsHighListen = "127.0.0.1:7101" // host "high"
)

// threadCaps reads the capability sets of every thread of pid.
func threadCaps(t *testing.T, pid int) []procCaps {
	t.Helper()
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("threads of %d: %v (%d found)", pid, err, len(tasks))
	}
	var out []procCaps
	for _, status := range tasks {
		p, err := readProcCaps(status)
		if os.IsNotExist(err) {
			continue // the thread ended meanwhile
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

// checkThreads fails t unless every thread of pid holds exactly want in
// its permitted, effective, inheritable and ambient sets, and at most
// bounding in its bounding set.
func checkThreads(t *testing.T, what string, pid int, want, bounding capSet) {
	t.Helper()
	ts := threadCaps(t, pid)
	for i, p := range ts {
		if p.Prm != want || p.Eff != want || p.Inh != want || p.Amb != want || p.Bnd&^bounding != 0 {
			t.Errorf("%s (pid %d), thread %d of %d: %s; want %s in every set, bounding within %s",
				what, pid, i+1, len(ts), p, want, bounding)
			return
		}
	}
	t.Logf("%s (pid %d): %d threads, each %s", what, pid, len(ts), ts[0])
}

// TestCapabilities: daemons started as root keep CAP_NET_ADMIN and
// CAP_NET_BIND_SERVICE in every set and every thread, and nothing else in
// the bounding set; a spawned host keeps CAP_NET_BIND_SERVICE when a
// protocol on it listens below 1024 (and binds that port: the tunnel
// works) and nothing at all otherwise.
func TestCapabilities(t *testing.T) {
	l, ctx := newRemoteLab(t)
	cfgA := lab.Config{Protocols: []lab.Protocol{{Name: "peer", Type: "udp", Port: capsLowPort, Routes: lab.TunnelPrefixes}}}
	cfgB := lab.Config{
		RemoteListen: lab.DefaultRemoteListen,
		Hosts: []lab.Host{
			{Name: "low", Listen: capsLowListen, Spawn: true},
			{Name: "high", Listen: capsHighListen, Spawn: true},
		},
		Protocols: []lab.Protocol{
			{Name: "peer", Type: "udp", Port: capsLowPort, Routes: lab.TunnelPrefixes, Host: "low"},
			{Name: "spare", Type: "udp", Port: capsHighPort, Routes: []netip.Prefix{netip.MustParsePrefix("10.93.0.0/24")}, Host: "high"},
		},
	}
	da := startDaemon(t, ctx, l, l.A, cfgA)
	db := startRemote(t, ctx, l, l.B, cfgB)
	mustPing(t, ctx, l, l.A, l.B.TUN4)

	for _, d := range []*lab.Daemon{da, db} {
		checkThreads(t, "daemon in "+d.Side.NS, d.Pid(), daemonCaps, daemonCaps)
		if log := d.Log(); !strings.Contains(log, "capabilities restricted") {
			t.Errorf("daemon in %s: no 'capabilities restricted' line in its log", d.Side.NS)
		}
	}
	for _, h := range []struct {
		name string // spawned hosts are found by name: each picks its own port
		want capSet
	}{
		{"low", capsOf(capNetBindService)},
		{"high", 0},
	} {
		pid, err := db.HostPid(h.name)
		if err != nil {
			t.Fatal(err)
		}
		checkThreads(t, "host "+h.name, pid, h.want, daemonCaps)
	}
}
