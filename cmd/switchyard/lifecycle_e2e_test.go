package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestRunWithoutPrivilegeIsOneLine: a user who cannot create a TUN device
// gets one line on stderr and exit code 1, not a stack of errors.
func TestRunWithoutPrivilegeIsOneLine(t *testing.T) {
	bin := e2eCLI.get(t)
	cmd := exec.Command(bin, "run")
	if os.Geteuid() == 0 {
		// Run the binary as nobody from a directory nobody can read.
		dir, err := os.MkdirTemp("", "switchyard-nobody-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		copyBin := filepath.Join(dir, "switchyard")
		data, err := os.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(copyBin, data, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd = exec.Command(copyBin, "run")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	code := cmd.ProcessState.ExitCode()
	if err == nil || code != 1 {
		t.Fatalf("switchyard run as non-root: exit code %d (err %v), want 1", code, err)
	}
	lines := strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "root") {
		t.Fatalf("stderr = %q, want one line that mentions root", stderr.String())
	}
}

// TestStopRemovesTUNAndLogsCounters: SIGTERM stops the daemon with exit
// code 0, its TUN is gone, and the final counters are in its log.
func TestStopRemovesTUNAndLogsCounters(t *testing.T) {
	l, ctx := newLab(t)
	d := startDaemon(t, ctx, l, l.A, l.DefaultConfig(l.A))
	if _, _, err := l.Exec(ctx, l.A, "ip", "link", "show", l.A.TUNDev); err != nil {
		t.Fatalf("TUN %s missing while the daemon runs: %v", l.A.TUNDev, err)
	}
	code, err := d.Stop()
	checkExit(t, d, code, err)
	if _, _, err := l.Exec(ctx, l.A, "ip", "link", "show", l.A.TUNDev); err == nil {
		t.Errorf("TUN %s still exists after the daemon stopped", l.A.TUNDev)
	}
	log := d.Log()
	for _, want := range []string{"final counters", `"actor": "router"`, "node stopped"} {
		if !strings.Contains(log, want) {
			t.Errorf("daemon log lacks %q:\n%s", want, d.LogTail())
		}
	}
}
