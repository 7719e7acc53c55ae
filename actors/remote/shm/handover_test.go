//go:build linux

package shm

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"switchyard/packet"
)

const (
	dialPathEnv  = "SHM_TEST_DIAL_PATH"
	dialNonceEnv = "SHM_TEST_DIAL_NONCE"
)

type handOverResult struct {
	peer Peer
	err  error
}

func handOverAsync(l *Listener, d *Daemon, nonce Nonce, limit time.Duration) chan handOverResult {
	ch := make(chan handOverResult, 1)
	go func() {
		p, err := l.HandOver(d, nonce, time.Now().Add(limit))
		ch <- handOverResult{p, err}
	}()
	return ch
}

func TestHandOver(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	l, err := Listen(dir, "host-a.sock")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for path, want := range map[string]os.FileMode{dir: 0o700, l.Path(): 0o600} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Mode().Perm(); got != want {
			t.Errorf("%s: mode %#o, want %#o", path, got, want)
		}
	}
	d, err := New(small)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	nonce, err := NewNonce()
	if err != nil {
		t.Fatal(err)
	}
	if back, err := ParseNonce(nonce.String()); err != nil || back != nonce {
		t.Fatalf("nonce %v round trip: %v, %v", nonce, back, err)
	}
	res := handOverAsync(l, d, nonce, 20*time.Second)

	wrong := nonce
	wrong[0] ^= 1
	if _, err := Dial(l.Path(), wrong, 5*time.Second); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("dial with a wrong nonce: %v, want refused", err)
	}
	files, err := Dial(l.Path(), nonce, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	h, err := Attach(files)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.peer.Pidfd.Close()
	if r.peer.PID != os.Getpid() || r.peer.UID != os.Geteuid() {
		t.Fatalf("peer %+v, want pid %d uid %d", r.peer, os.Getpid(), os.Geteuid())
	}
	if l.Refused() != 1 {
		t.Fatalf("refused %d connections, want 1", l.Refused())
	}
	if h.ID() != d.ID() {
		t.Fatalf("host region %v, daemon's %v", h.ID(), d.ID())
	}
	// The region works.
	pool := packet.NewPool(512)
	b := batchOf(t, pool, 0, 1400)
	d.Send(b, 0)
	b.Release()
	echoOnce(t, h, pool, true)
	got := pool.GetBatch()
	if n, err := d.Receive(got); n != 1 || err != nil {
		t.Fatalf("receive = %d, %v", n, err)
	}
	got.Release()
	// Handed over once: a second host gets nothing.
	if _, err := d.HostFiles(); err == nil {
		t.Fatal("host files handed over twice")
	}
}

func TestHandOverRefusals(t *testing.T) {
	d, err := New(small)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	nonce, _ := NewNonce()

	t.Run("other user", func(t *testing.T) {
		l, err := Listen(filepath.Join(t.TempDir(), "run"), "h.sock")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		l.uid = os.Geteuid() + 1 // as if this process were another user
		res := handOverAsync(l, d, nonce, 500*time.Millisecond)
		if _, err := Dial(l.Path(), nonce, 5*time.Second); err == nil {
			t.Fatal("a peer of another user got the region")
		}
		if r := <-res; r.err == nil || !errors.Is(r.err, os.ErrDeadlineExceeded) {
			t.Fatalf("handover: %v, want the deadline", r.err)
		}
		if l.Refused() != 1 {
			t.Fatalf("refused %d, want 1", l.Refused())
		}
	})
	t.Run("silent peer", func(t *testing.T) {
		l, err := Listen(filepath.Join(t.TempDir(), "run"), "h.sock")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		res := handOverAsync(l, d, nonce, 300*time.Millisecond)
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		if err := unix.Connect(fd, &unix.SockaddrUnix{Name: l.Path()}); err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-res:
			if r.err == nil {
				t.Fatal("a silent peer got the region")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a silent peer held the handover past its deadline")
		}
	})
	t.Run("loose directory", func(t *testing.T) {
		dir := t.TempDir()
		os.Chmod(dir, 0o755)
		if _, err := Listen(dir, "h.sock"); err == nil || !strings.Contains(err.Error(), "0700") {
			t.Fatalf("listen in a 0755 directory: %v", err)
		}
		link := filepath.Join(t.TempDir(), "link")
		os.Symlink(t.TempDir(), link)
		if _, err := Listen(link, "h.sock"); err == nil || !strings.Contains(err.Error(), "not a directory") {
			t.Fatalf("listen in a symlink: %v", err)
		}
		if _, err := Listen(t.TempDir(), "../h.sock"); err == nil {
			t.Fatal("socket name with a slash accepted")
		}
	})
}

// TestHandOverToProcess: a host the daemon did not spawn dials in, gets its
// region, echoes; its pidfd says when it dies.
func TestHandOverToProcess(t *testing.T) {
	l, err := Listen(filepath.Join(t.TempDir(), "run"), "h.sock")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	d, err := New(small)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	nonce, _ := NewNonce()
	res := handOverAsync(l, d, nonce, 30*time.Second)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), hostModeEnv+"=dial", dialPathEnv+"="+l.Path(), dialNonceEnv+"="+nonce.String())
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.peer.Pidfd.Close()
	if r.peer.PID != cmd.Process.Pid {
		t.Fatalf("peer pid %d, host pid %d", r.peer.PID, cmd.Process.Pid)
	}
	tr := &traffic{d: d, pool: packet.NewPool(1024), lossless: true, total: 5000}
	tr.start()
	for deadline := time.Now().Add(30 * time.Second); tr.received.Load() < 5000; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) || len(tr.errs) > 0 {
			t.Fatalf("received %d of 5000: %v", tr.received.Load(), drain(tr.errs))
		}
	}
	cmd.Process.Kill()
	fds := []unix.PollFd{{Fd: int32(r.peer.Pidfd.Fd()), Events: unix.POLLIN}}
	if n, err := unix.Poll(fds, 10000); n != 1 || err != nil {
		t.Fatalf("pidfd not readable 10 s after the kill: %d, %v", n, err)
	}
	select {
	case <-tr.ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the daemon did not see the host die")
	}
	close(tr.stop)
	tr.wg.Wait()
	if !errors.Is(tr.waitErr, ErrPeerGone) {
		t.Fatalf("wait: %v, want ErrPeerGone", tr.waitErr)
	}
	d.Reclaim()
	checkConservation(t, d.Counts())
}

// dialHost is the host side of TestHandOverToProcess.
func dialHost() error {
	nonce, err := ParseNonce(os.Getenv(dialNonceEnv))
	if err != nil {
		return err
	}
	files, err := Dial(os.Getenv(dialPathEnv), nonce, 10*time.Second)
	if err != nil {
		return err
	}
	h, err := Attach(files)
	if err != nil {
		return fmt.Errorf("attach: %w", err)
	}
	return echoHost(h)
}
