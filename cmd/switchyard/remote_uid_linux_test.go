package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"switchyard/actors/remote"
	"switchyard/internal/lab"
	"switchyard/node"
)

// TestRemoteUnprivilegedTakeover is issue 12's first finding, replayed: a
// local user (uid 65534) connects to the root-owned host's loopback port
// and sends an OPEN of the live instance `peer` (bind port 53, its peer the
// attacker). It cannot read the daemon's secret file, and without the
// secret the host refuses the stream (Unauthenticated), counts it as
// unauthenticated, and the tunnel keeps working on the same host.
func TestRemoteUnprivilegedTakeover(t *testing.T) {
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("missing tool: setpriv — not installed (make deps installs util-linux)")
	}
	l, ctx := newRemoteLab(t)
	cfgA := lab.OutOfProcess(l.DefaultConfig(l.A))
	secretFile := filepath.Join(l.Dir, "remote.secret")
	if err := os.WriteFile(secretFile, []byte("takeover-test-secret-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgA.SecretFile = secretFile
	da := startRemote(t, ctx, l, l.A, cfgA)
	startDaemon(t, ctx, l, l.B, l.DefaultConfig(l.B))
	mustPing(t, ctx, l, l.A, l.B.TUN4)
	host := hostPid(t, da)
	hostAddr, err := lab.ListenAddr(host)
	if err != nil {
		t.Fatalf("the host's remote port: %v", err)
	}
	// The hostile client, where uid 65534 may run it.
	dir, err := os.MkdirTemp("", "sy-uid-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tools := copyExecutable(t, l.Tools, dir, "switchyard-lab")
	asNobody := func(args ...string) (string, string, error) {
		cmd := append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", "--", tools, "hostile",
			"--addr", hostAddr.String(), "--case", "open"}, args...)
		out, stderr, err := l.Exec(ctx, l.A, setpriv, cmd...)
		return string(out), string(stderr), err
	}

	// The secret file is root's, mode 0600: nobody cannot read it.
	if out, stderr, err := asNobody("--secret-file", secretFile); err == nil || !strings.Contains(stderr, "permission denied") {
		t.Errorf("uid 65534 with --secret-file: err %v, stdout %q, stderr %q; want permission denied", err, out, stderr)
	}

	guard := lab.HostName + "/remote"
	before, _ := settledActor(t, ctx, da, guard)
	out, stderr, err := asNobody()
	if err != nil {
		t.Fatalf("hostile open as uid 65534: %v\n%s", err, stderr)
	}
	var rep lab.HostileReport
	if err := lab.DecodeJSONLine(out, &rep); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rep.Outcome, "refused: Unauthenticated") {
		t.Errorf("outcome %q, want the stream refused: Unauthenticated", rep.Outcome)
	}
	key := remote.Unauthenticated.String()
	s, _ := da.WaitStats(ctx, remoteHostStats, func(s node.Snapshot) bool {
		a, _ := lab.FindActor(s, guard)
		return a.Drops[key] > before.Drops[key]
	})
	if got := actor(t, s, guard).Drops[key] - before.Drops[key]; got != 1 {
		t.Errorf("%s drops[%s] grew by %d, want 1", guard, key, got)
	}
	if pid, err := da.HostPid(lab.HostName); err != nil || pid != host {
		t.Fatalf("host: pid %d (%v), want %d still running", pid, err, host)
	}
	if strings.Contains(da.Log(), "192.0.2.66") {
		t.Errorf("the daemon's log mentions the attacker's peer: the OPEN got through\n%s", da.LogTail())
	}
	mustPing(t, ctx, l, l.A, l.B.TUN4)
}
