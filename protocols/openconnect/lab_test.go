package openconnect

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// lab is a network namespace joined to the test's namespace by a veth:
// the far end 10.97.X.1 (in the namespace), the near end 10.97.X.2.
type lab struct {
	t       *testing.T
	ns      string
	near    string // veth name in the test's namespace
	subnet  byte   // X
	far, ip net.IP // far = 10.97.X.1, ip = 10.97.X.2
	dir     string
}

// needRoot skips the test unless it runs as root with ip netns and the
// named programs.
func needRoot(t *testing.T, programs ...string) {
	t.Helper()
	// The skip messages' first words are what make test lists (and CI
	// fails on): see internal/lab/missing.go.
	if os.Geteuid() != 0 {
		t.Skip("missing capability: root — network namespaces need root")
	}
	for _, p := range append([]string{"ip"}, programs...) {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("missing tool: %s — not installed (make deps installs it; deps/debian.txt names its package): %v", p, err)
		}
	}
	if out, err := exec.Command("ip", "netns", "list").CombinedOutput(); err != nil {
		t.Skipf("missing capability: netns — ip netns does not work here: %v: %s", err, out)
	}
}

func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func newLab(t *testing.T) *lab {
	t.Helper()
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	tag := hex.EncodeToString(rnd[:3])
	dir, err := os.MkdirTemp("", "oc-lab-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	l := &lab{t: t, ns: "oc-" + tag, near: "ocA" + tag, dir: dir}
	// A /24 of 10.97.0.0/16 that no interface here uses yet.
	for i := 0; ; i++ {
		l.subnet = byte(2 + int(rnd[3]+byte(i*37))%250)
		out := run(t, "ip", "-4", "-o", "addr", "show", "to", fmt.Sprintf("10.97.%d.0/24", l.subnet))
		if strings.TrimSpace(out) == "" {
			break
		}
		if i > 20 {
			t.Fatal("no free 10.97.x.0/24")
		}
	}
	l.far = net.IPv4(10, 97, l.subnet, 1).To4()
	l.ip = net.IPv4(10, 97, l.subnet, 2).To4()
	_ = os.Chmod(l.dir, 0o755) // ocserv's workers run as nobody
	run(t, "ip", "netns", "add", l.ns)
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", l.near).Run()
		_ = exec.Command("ip", "netns", "del", l.ns).Run()
	})
	far := "ocB" + tag
	run(t, "ip", "link", "add", l.near, "type", "veth", "peer", "name", far)
	run(t, "ip", "link", "set", far, "netns", l.ns)
	run(t, "ip", "addr", "add", l.ip.String()+"/24", "dev", l.near)
	run(t, "ip", "link", "set", l.near, "up")
	l.exec("ip", "addr", "add", l.far.String()+"/24", "dev", far)
	l.exec("ip", "link", "set", far, "up")
	l.exec("ip", "link", "set", "lo", "up")
	return l
}

// exec runs a command in the namespace.
func (l *lab) exec(args ...string) string {
	l.t.Helper()
	return run(l.t, append([]string{"ip", "netns", "exec", l.ns}, args...)...)
}

// daemon is a process started by a test, stopped by PID at cleanup.
type daemon struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// start runs a long-lived command in the namespace, logging to logName.
func (l *lab) start(logName string, args ...string) *daemon {
	l.t.Helper()
	return l.startInput(logName, "", args...)
}

// startInput is start with input on the command's standard input.
func (l *lab) startInput(logName, input string, args ...string) *daemon {
	l.t.Helper()
	logPath := filepath.Join(l.dir, logName)
	f, err := os.Create(logPath)
	if err != nil {
		l.t.Fatal(err)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", l.ns}, args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	if input != "" {
		cmd.Stdin = strings.NewReader(input)
	}
	if err := cmd.Start(); err != nil {
		f.Close()
		l.t.Fatalf("start %v: %v", args, err)
	}
	d := &daemon{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(d.done) }()
	l.t.Cleanup(func() { d.stop(l.t) })
	return d
}

// stop sends SIGTERM to the daemon's PID, then SIGKILL after 5 s.
func (d *daemon) stop(t *testing.T) {
	select {
	case <-d.done:
		return
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(5 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
	if t.Failed() {
		if b, err := os.ReadFile(d.log); err == nil {
			t.Logf("%s:\n%s", d.log, tail(string(b), 60))
		}
	}
}

func (d *daemon) logText() string {
	b, _ := os.ReadFile(d.log)
	return string(b)
}

func tail(s string, lines int) string {
	ls := strings.Split(s, "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// waitTCP waits until addr accepts TCP connections.
func waitTCP(t *testing.T, addr string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not listening after %v: %v", addr, d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// writeSecret writes a 0600 file.
func writeSecret(t *testing.T, path, text string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
