package conserve

import (
	"fmt"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"switchyard/node"
	"switchyard/node/hosttest"
	"switchyard/packet/packettest"
	"switchyard/stats"
)

func TestMain(m *testing.M) { hosttest.Main(m) }

// kills is issue 20's "10 host kills under load".
const kills = 10

// TestHostKillsUnderLoadCountEveryPacket kills the spawned host (transport
// shm) 10 times while traffic flows, then checks that the daemon accounts
// for every packet it handed over: each was completed by the host's
// protocol or counted host_lost — none vanished — and every row holds
// in = out + dropped exactly, with the pool whole.
func TestHostKillsUnderLoadCountEveryPacket(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg := hosttest.LoopConfig(t, int(packettest.FreeUDPPort(t)), hosttest.FreeTCPPort(t), true)
	cfg.Supervision.MaxRestarts = 10 * kills
	dev := packettest.New(256)
	n, err := node.New(cfg, node.Options{Device: dev, Log: zap.NewNop(), Executable: exe})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			n.Stop()
		}
	}()
	waitRunning(t, n, 0)

	// Traffic: a steady stream of packets into the TUN until told to stop.
	done := make(chan struct{})
	var wg sync.WaitGroup
	var sent int
	wg.Add(1)
	go func() {
		defer wg.Done()
		src, dst := [4]byte{10, 90, 0, 1}, [4]byte{10, 90, 0, 2}
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			dev.Inject(packettest.IPv4(src, dst, 200, []byte(fmt.Sprintf("p%07d", i))))
			sent++
			if i%32 == 31 {
				time.Sleep(500 * time.Microsecond)
			}
		}
	}()

	for i := 1; i <= kills; i++ {
		time.Sleep(150 * time.Millisecond) // traffic in flight
		if err := syscall.Kill(hosttest.HostPid(t, "h"), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitRunning(t, n, i)
	}
	close(done)
	wg.Wait()
	// Quiesce: what is in flight completes or is counted.
	time.Sleep(500 * time.Millisecond)
	s := n.Stats()
	n.Stop()
	stopped = true
	s = n.Stats() // after the stop every region has ended and was counted

	router := hosttest.ActorByName(s, "router")
	proxy := hosttest.ActorByName(s, "self")
	host := hosttest.ActorByName(s, "self.host")
	in := hosttest.ActorByName(s, "self.in")
	if router.InPackets != uint64(sent) {
		t.Errorf("router in = %d, want the %d packets sent", router.InPackets, sent)
	}
	for _, r := range []stats.Row{router, proxy, host, in} {
		if r.InPackets != r.OutPackets+r.DroppedTotal()+r.Queued() {
			t.Errorf("%s: in %d != out %d + dropped %d (%v) + queued %d", r.Name, r.InPackets, r.OutPackets, r.DroppedTotal(), r.Drops, r.Queued())
		}
	}
	if proxy.OutPackets != host.InPackets {
		t.Errorf("proxy out %d != %s in %d: handed packets not all on the host row", proxy.OutPackets, host.Name, host.InPackets)
	}
	if host.Drops[stats.HostLost.String()] == 0 {
		t.Errorf("%d kills under load and no packet counted host_lost: the kills did not catch packets in flight (drops %v)", kills, host.Drops)
	}
	if err := n.Pool().CheckLeaks(); err != nil {
		t.Error(err)
	}
	t.Logf("sent %d; handed to the host %d: completed %d, host_lost %d; proxy drops %v; back through the loop %d",
		sent, host.InPackets, host.OutPackets, host.Drops[stats.HostLost.String()], proxy.Drops, len(dev.Written()))
}

// waitRunning waits until host h runs again after restarts restarts.
func waitRunning(t *testing.T, n *node.Node, restarts int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		h := hosttest.ActorByName(n.Stats(), "host/h")
		if h.State == "running" && h.Restarts >= uint64(restarts) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("host/h not running after %d restarts: %+v", restarts, hosttest.ActorByName(n.Stats(), "host/h"))
}
