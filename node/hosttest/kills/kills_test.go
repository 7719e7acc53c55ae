package kills

import (
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"switchyard/node"
	"switchyard/node/hosttest"
	"switchyard/packet/packettest"
)

func TestMain(m *testing.M) { hosttest.Main(m) }

// kills is how many times the test kills the host: issue 20's 50.
const kills = 50

// TestHostKillsLeakNothing kills the spawned host with SIGKILL 50 times.
// Each incarnation listens on a port of its own, so protoactor's connect
// retries to the dead one never reach the next: every kill costs exactly one
// "protocol host up" (no re-open storm, no "opening its instances again"),
// and the daemon's goroutines stay flat (the endpoint writer's leaked
// connection is closed, dialfix.go).
func TestHostKillsLeakNothing(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	log := zap.New(core)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg := hosttest.LoopConfig(t, int(packettest.FreeUDPPort(t)), hosttest.FreeTCPPort(t), true)
	cfg.Supervision.MaxRestarts = 10 * kills
	n, err := node.New(cfg, node.Options{Device: packettest.New(64), Log: log, Executable: exe})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	defer n.Stop()

	ups := func() int { return logs.FilterMessage("protocol host up").Len() }
	waitUp := func(want int) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for (ups() < want || hosttest.ActorByName(n.Stats(), "host/h").State != "running") && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if ups() < want {
			t.Fatalf("host up %d times, want %d", ups(), want)
		}
	}
	waitUp(1)

	var baseline int
	for i := 1; i <= kills; i++ {
		pid := hosttest.HostPid(t, "h")
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitUp(1 + i)
		if i == 5 {
			time.Sleep(300 * time.Millisecond) // the first kills' writers settle
			baseline = runtime.NumGoroutine()
		}
	}
	// The dead incarnations' connect retries (2 s apart, 5 at most) end.
	time.Sleep(3 * time.Second)
	deadline := time.Now().Add(15 * time.Second)
	var now int
	for {
		now = runtime.NumGoroutine()
		if now <= baseline+goroutineSlack || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if now > baseline+goroutineSlack {
		t.Errorf("goroutines after %d kills: %d, after 5: %d (slack %d): something leaks per kill", kills, now, baseline, goroutineSlack)
	}
	if got, want := ups(), 1+kills; got != want {
		t.Errorf("\"protocol host up\" logged %d times, want %d (one per incarnation)", got, want)
	}
	if n := logs.FilterMessage("connection to protocol host lost; opening its instances again").Len(); n != 0 {
		t.Errorf("instances re-opened %d times on a lost connection, want 0: a stale incarnation's connection reached the daemon", n)
	}
	if got := hosttest.ActorByName(n.Stats(), "host/h").Restarts; got != kills {
		t.Errorf("host/h restarts = %d, want %d", got, kills)
	}
	t.Logf("%d kills: goroutines %d after 5, %d at the end; %d \"host up\" lines", kills, baseline, now, ups())
}

// goroutineSlack is the goroutine count the test tolerates above its
// baseline: timers and gRPC's idle goroutines that come and go, far below
// the ~3 per kill of the leak (150 over 50 kills).
const goroutineSlack = 10
