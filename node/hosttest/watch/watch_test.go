package watch

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"

	"switchyard/actors/remote/remotetest"
	"switchyard/node"
	"switchyard/node/hosttest"
	"switchyard/packet/packettest"
)

func TestMain(m *testing.M) { hosttest.Main(m) }

// TestNodeReconnectsToAHostItDidNotSpawn: a host started elsewhere (here by
// the test) is watched; when it dies the protocol's packets drop as
// host_down, and when a host listens there again the node opens the
// instance again and traffic flows.
func TestNodeReconnectsToAHostItDidNotSpawn(t *testing.T) {
	defer goleak.VerifyNone(t, remotetest.LeakOptions()...)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	hostPort := hosttest.FreeTCPPort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", hostPort)
	startHost := func() *exec.Cmd {
		cmd := exec.Command(exe, "host", "--listen", addr, "--secret-file", hosttest.SecretFile(t))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				return cmd
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatal("the host does not listen")
		return nil
	}
	host := startHost()

	dev := packettest.New(64)
	n, err := node.New(hosttest.LoopConfig(t, int(packettest.FreeUDPPort(t)), hostPort, false), node.Options{Device: dev, Log: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	state := func() string { return hosttest.ActorByName(n.Stats(), "host/h").State }
	waitState := func(want string, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for state() != want && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if got := state(); got != want {
			t.Fatalf("host/h state = %q, want %q", got, want)
		}
	}
	src, dst := [4]byte{10, 90, 0, 1}, [4]byte{10, 90, 0, 2}
	loop := func(count int) int {
		before := len(dev.Written())
		for i := 0; i < count; i++ {
			dev.Inject(packettest.IPv4(src, dst, 200, []byte(fmt.Sprintf("p%d", i))))
		}
		deadline := time.Now().Add(5 * time.Second)
		for len(dev.Written()) < before+count && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		return len(dev.Written()) - before
	}

	waitState("running", 10*time.Second)
	if got := loop(100); got != 100 {
		t.Fatalf("before the host died: %d of 100 packets came back", got)
	}

	_ = host.Process.Kill()
	_ = host.Wait()
	waitState("restarting", 5*time.Second)
	dropsBefore := hosttest.ActorByName(n.Stats(), "self").Drops["host_down"]
	for i := 0; i < 10; i++ {
		dev.Inject(packettest.IPv4(src, dst, 200, nil))
	}
	deadline := time.Now().Add(5 * time.Second)
	for hosttest.ActorByName(n.Stats(), "self").Drops["host_down"] < dropsBefore+10 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := hosttest.ActorByName(n.Stats(), "self").Drops["host_down"] - dropsBefore; got != 10 {
		t.Errorf("while the host was down: host_down drops = %d, want 10", got)
	}

	host = startHost()
	defer func() { _ = host.Process.Signal(syscall.SIGTERM); _ = host.Wait() }()
	// protoactor may sit in its 2 s connect retries (up to 5) before the
	// node's next OPEN gets through: allow for them.
	waitState("running", 30*time.Second)
	if got := loop(100); got != 100 {
		t.Fatalf("after the host came back: %d of 100 packets came back", got)
	}
}
