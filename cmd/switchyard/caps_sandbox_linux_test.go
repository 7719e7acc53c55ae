package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// denyCapsetEnv makes the test binary a helper (TestMain): it forbids
// capset with EPERM through a seccomp filter, as deploy/switchyard.service
// does (SystemCallFilter=~@privileged, SystemCallErrorNumber=EPERM), and
// executes its arguments.
const denyCapsetEnv = "SWITCHYARD_TEST_DENY_CAPSET"

// sandboxReadyTimeout (20 s) bounds a host's start under the sandbox: two
// executions of a race-enabled binary on a loaded machine.
const sandboxReadyTimeout = 20 * time.Second

// runAsHelper runs the helper when the environment asks for it.
func runAsHelper() {
	if os.Getenv(denyCapsetEnv) != "" {
		denyCapsetAndExec(os.Args[1:])
	}
}

// denyCapsetAndExec is the helper: on one locked thread, no_new_privs and a
// seccomp filter answering capset with EPERM, then execve(args).
func denyCapsetAndExec(args []string) {
	runtime.LockOSThread()
	var arch uint32
	switch runtime.GOARCH {
	case "amd64":
		arch = unix.AUDIT_ARCH_X86_64
	case "arm64":
		arch = unix.AUDIT_ARCH_AARCH64
	default:
		fmt.Fprintln(os.Stderr, "deny capset: no seccomp filter for", runtime.GOARCH)
		os.Exit(3)
	}
	filter := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 4}, // seccomp_data.arch
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: arch, Jt: 1},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // seccomp_data.nr
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: unix.SYS_CAPSET, Jf: 1},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "deny capset: no_new_privs:", err)
		os.Exit(3)
	}
	if err := unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&prog)), 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "deny capset: seccomp:", err)
		os.Exit(3)
	}
	env := []string{}
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, denyCapsetEnv+"=") {
			env = append(env, e)
		}
	}
	err := syscall.Exec(args[0], args, env)
	fmt.Fprintln(os.Stderr, "deny capset: exec:", err)
	os.Exit(3)
}

// copyExecutable copies src into dir with mode 0755 (a user other than
// root must be able to run it).
func copyExecutable(t *testing.T, src, dir, name string) string {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	dst := filepath.Join(dir, name)
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestHostUnderServiceSandbox: a protocol host started as the systemd unit
// starts the daemon — user nobody, CAP_NET_ADMIN and CAP_NET_BIND_SERVICE
// ambient and bounding, no_new_privs, capset forbidden by seccomp — keeps
// nothing once it listens (the daemon's hosts inherit the daemon's ambient
// set).
func TestHostUnderServiceSandbox(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("missing capability: root — starting a process as another user with capabilities needs root")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("missing tool: setpriv — not installed (make deps installs util-linux)")
	}
	dir, err := os.MkdirTemp("", "switchyard-sandbox-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	helper := copyExecutable(t, self, dir, "deny-capset")
	bin := copyExecutable(t, e2eCLI.get(t), dir, "switchyard")

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
		"--inh-caps=-all,+net_admin,+net_bind_service", "--ambient-caps=+net_admin,+net_bind_service",
		"--bounding-set=-all,+net_admin,+net_bind_service", "--no-new-privs", "--",
		helper, bin, "host", "--listen", "127.0.0.1:"+freePort(t), "--ready-fd", "3", "--secret-fd", "4")
	cmd.Env = append(os.Environ(), denyCapsetEnv+"=1")
	cmd.Dir = dir
	// The secret on a pipe, as a daemon hands it to the hosts it spawns.
	sr, sw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer sr.Close()
	if _, err := sw.WriteString("caps-test-secret-0123456789abcdef\n"); err != nil {
		t.Fatal(err)
	}
	sw.Close()
	cmd.ExtraFiles = []*os.File{w, sr}
	logFile, err := os.Create(filepath.Join(dir, "host.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	log := func() string { b, _ := os.ReadFile(logFile.Name()); return string(b) }
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-exited
	}()
	ready := make(chan error, 1)
	go func() { _, err := bufio.NewReader(r).ReadString('\n'); ready <- err }()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("host under the sandbox did not get ready: %v\n%s", err, log())
		}
	case err := <-exited:
		t.Fatalf("host under the sandbox exited: %v\n%s", err, log())
	case <-time.After(sandboxReadyTimeout):
		t.Fatalf("host under the sandbox not ready within %v\n%s", sandboxReadyTimeout, log())
	}
	for i, p := range threadCaps(t, cmd.Process.Pid) {
		if p.Prm != 0 || p.Eff != 0 || p.Amb != 0 {
			t.Errorf("thread %d: %s; want no capability permitted, effective or ambient", i+1, p)
		}
		if i == 0 {
			t.Logf("host under the sandbox: %s", p)
		}
	}
	if !strings.Contains(log(), "capabilities restricted") {
		t.Errorf("host log lacks 'capabilities restricted':\n%s", log())
	}
}
