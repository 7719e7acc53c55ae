package loop

import (
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"

	"switchyard/actors/remote"
	"switchyard/actors/remote/remotetest"
	"switchyard/node"
	"switchyard/node/hosttest"
	"switchyard/packet/packettest"
)

func TestMain(m *testing.M) { hosttest.Main(m) }

// TestNodeLoopsPacketsThroughAHost runs the loop of
// TestNodeLoopsPacketsThroughUDP with the udp protocol in a protocol host
// the node spawns (this test binary, see TestMain): every packet crosses
// the remote transport out and back, in order and intact, and the host's
// counters come back to the daemon's stats.
func TestNodeLoopsPacketsThroughAHost(t *testing.T) {
	defer goleak.VerifyNone(t, remotetest.LeakOptions()...)
	// Not zaptest: protoactor's endpoint writers outlive the node (their
	// connect retries) and would log after the test ends.
	log := zap.NewNop()
	hostPort := hosttest.FreeTCPPort(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}

	dev := packettest.New(64)
	n, err := node.New(hosttest.LoopConfig(t, int(packettest.FreeUDPPort(t)), hostPort, true), node.Options{Device: dev, Log: log.Named("daemon"), Executable: exe})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait for the host to open the instance.
	deadline := time.Now().Add(10 * time.Second)
	for hosttest.ActorByName(n.Stats(), "host/h").State != "running" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}

	const count = 2000
	const inFlight = 300 // packets the test lets be on their way at once
	src, dst := [4]byte{10, 90, 0, 1}, [4]byte{10, 90, 0, 2}
	var sent []string
	for i := 0; i < count; i++ {
		p := packettest.IPv4(src, dst, 100+i%1300, []byte(fmt.Sprintf("packet-%04d", i)))
		sent = append(sent, string(p))
		dev.Inject(p)
		if i%100 == 99 {
			// Stay within what the crossing holds (the region's slots and
			// the staging queue): this test is about intact delivery, not
			// about the drop policy, so it waits for the loop to catch up.
			for wait := time.Now().Add(5 * time.Second); len(dev.Written()) < i+1-inFlight && time.Now().Before(wait); {
				time.Sleep(time.Millisecond)
			}
		}
	}
	deadline = time.Now().Add(10 * time.Second)
	for len(dev.Written()) < count && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	got := dev.Written()
	// The host reports its counters every StatsInterval.
	deadline = time.Now().Add(3 * remote.StatsInterval)
	for hosttest.ActorByName(n.Stats(), "h/self.up").OutPackets < count && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	// Idle now. The host completed everything, and the daemon must see so
	// without sending more: an idle tunnel is not a stuck host (its last
	// completions once waited on the ring until the stuck check killed it).
	time.Sleep(remote.StuckTimeout + remote.StatsInterval)
	s := n.Stats()
	n.Stop()
	if h := hosttest.ActorByName(s, "host/h"); h.Restarts != 0 {
		t.Errorf("host/h restarted %d times while the tunnel was idle, want 0", h.Restarts)
	}
	if c := hosttest.ActorByName(s, "self.host"); c.InPackets != c.OutPackets || c.InPackets == 0 {
		t.Errorf("self.host: handed %d, completed %d; want every packet completed once idle", c.InPackets, c.OutPackets)
	}
	if len(got) != count {
		t.Fatalf("packets back through the host = %d, want %d; stats: %+v", len(got), count, s.Actors)
	}
	for i := range sent {
		if string(got[i]) != sent[i] {
			t.Fatalf("packet %d differs or is out of order", i)
		}
	}
	for _, name := range []string{"self", "self.in", "h/self", "h/self.up", "h/self.in"} {
		a := hosttest.ActorByName(s, name)
		if a.Name == "" {
			t.Errorf("no actor %q in the daemon's stats", name)
			continue
		}
		if a.DroppedTotal() != 0 {
			t.Errorf("%s dropped %v", name, a.Drops)
		}
	}
	if err := n.Pool().CheckLeaks(); err != nil {
		t.Error(err)
	}
}
