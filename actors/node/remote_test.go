package node

import (
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"switchyard/actors/devicetest"
	"switchyard/actors/remote"
	"switchyard/config"
)

func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// remoteLoopConfig is loopConfig with the udp protocol on a protocol host.
func remoteLoopConfig(t *testing.T, udpPort, hostPort int) *config.Config {
	t.Helper()
	yaml := fmt.Sprintf(`
node: {name: loop}
tun: {name: sytest0, mtu: 1420, addresses: [10.90.0.1/24], install_routes: false}
batch: {max_packets: 128, pool_buffers: 4096}
mailbox: {capacity: 1024, policy: drop_newest}
supervision: {max_restarts: 3, within: 10s, backoff: 10ms}
remote: {listen: "127.0.0.1:0", window: 8}
hosts:
  - {name: h, listen: "127.0.0.1:%d", spawn: true}
routes:
  - {prefix: 10.90.0.0/24, to: self}
protocols:
  - name: self
    type: udp
    host: h
    settings: {listen: "127.0.0.1:%d", peer: "127.0.0.1:%d"}
`, hostPort, udpPort, udpPort)
	cfg, err := config.Parse("loop.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestMain lets the test binary be a protocol host: the node under test
// spawns it as `<test binary> host --listen …`, as the daemon spawns
// `switchyard host`. Each process then runs one remote transport (two in
// one process race on gRPC's global logger, inside protoactor).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "host" {
		os.Exit(testHost(os.Args[2:]))
	}
	os.Exit(m.Run())
}

// testHost is a minimal `switchyard host`: the flags the node passes.
func testHost(args []string) int {
	fs := flag.NewFlagSet("host", flag.ContinueOnError)
	listen := fs.String("listen", "", "")
	pool := fs.Int("pool-buffers", 1024, "")
	fs.String("log-level", "info", "")
	ready := fs.Int("ready-fd", 0, "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	addr, err := netip.ParseAddrPort(*listen)
	if err != nil {
		return 2
	}
	system := actor.NewActorSystem()
	h, err := remote.StartHost(remote.HostOptions{Listen: addr, PoolBuffers: *pool, System: system, Log: zap.NewNop()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if *ready > 0 {
		f := os.NewFile(uintptr(*ready), "ready")
		fmt.Fprintln(f, h.Address())
		f.Close()
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	<-sigs
	h.Stop()
	return 0
}

// TestNodeLoopsPacketsThroughAHost runs the loop of
// TestNodeLoopsPacketsThroughUDP with the udp protocol in a protocol host
// the node spawns (this test binary, see TestMain): every packet crosses
// the remote transport out and back, in order and intact, and the host's
// counters come back to the daemon's stats.
func TestNodeLoopsPacketsThroughAHost(t *testing.T) {
	defer goleak.VerifyNone(t, remoteLeakOptions()...)
	log := zaptest.NewLogger(t)
	hostPort := freeTCPPort(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}

	dev := devicetest.New(64)
	n, err := New(remoteLoopConfig(t, freePort(t), hostPort), Options{Device: dev, Log: log.Named("daemon"), Executable: exe})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait for the host to open the instance.
	deadline := time.Now().Add(10 * time.Second)
	for actorByName(n.Stats(), "host/h").State != "running" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}

	const count = 2000
	src, dst := [4]byte{10, 90, 0, 1}, [4]byte{10, 90, 0, 2}
	var sent []string
	for i := 0; i < count; i++ {
		p := devicetest.IPv4(src, dst, 100+i%1300, []byte(fmt.Sprintf("packet-%04d", i)))
		sent = append(sent, string(p))
		dev.Inject(p)
		if i%100 == 99 {
			time.Sleep(2 * time.Millisecond) // stay within the window: this test is about intact delivery
		}
	}
	deadline = time.Now().Add(10 * time.Second)
	for len(dev.Written()) < count && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	got := dev.Written()
	// The host reports its counters every StatsInterval.
	deadline = time.Now().Add(3 * remote.StatsInterval)
	for actorByName(n.Stats(), "h/self.up").OutPackets < count && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	s := n.Stats()
	n.Stop()
	if len(got) != count {
		t.Fatalf("packets back through the host = %d, want %d; stats: %+v", len(got), count, s.Actors)
	}
	for i := range sent {
		if string(got[i]) != sent[i] {
			t.Fatalf("packet %d differs or is out of order", i)
		}
	}
	for _, name := range []string{"self", "self.in", "h/self", "h/self.up", "h/self.in"} {
		a := actorByName(s, name)
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

// remoteLeakOptions are goleak's options for tests that run protoactor
// remote. After Shutdown the library keeps goroutines it never stops: the
// dead-letter throttle (ends after its period), an endpoint writer in its
// 2 s connect-retry sleep when the peer went first, and gRPC's connection
// goroutines of those writers. Ours must all be gone.
func remoteLeakOptions() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreCurrent(),
		goleak.IgnoreAnyFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"),
		goleak.IgnoreAnyFunction("github.com/asynkron/protoactor-go/remote.(*endpointWriter).initialize"),
		goleak.IgnoreAnyFunction("github.com/asynkron/protoactor-go/remote.(*Remote).Shutdown"),
		goleak.IgnoreAnyFunction("github.com/asynkron/protoactor-go/remote.(*endpointWriter).initializeInternal.func1"),
		goleak.IgnoreAnyFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		goleak.IgnoreAnyFunction("google.golang.org/grpc.(*addrConn).resetTransport"),
		goleak.IgnoreAnyFunction("google.golang.org/grpc/internal/transport.(*http2Client).reader"),
		goleak.IgnoreAnyFunction("google.golang.org/grpc/internal/transport.(*controlBuffer).get"),
		goleak.IgnoreAnyFunction("google.golang.org/grpc/internal/transport.(*http2Server).keepalive"),
		goleak.IgnoreAnyFunction("google.golang.org/grpc/internal/transport.newHTTP2Server.func2"),
		goleak.IgnoreAnyFunction("google.golang.org/grpc.(*Server).serveStreams"),
		goleak.IgnoreAnyFunction("google.golang.org/grpc.(*Server).Serve"),
		goleak.IgnoreAnyFunction("google.golang.org/grpc/internal/transport.(*http2Server).HandleStreams"),
	}
}
