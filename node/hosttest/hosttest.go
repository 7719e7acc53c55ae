// Package hosttest holds what the node's tests with protocol hosts share.
// Each of those tests lives in its own package under this folder, so each
// test binary runs one remote transport: protoactor's remote leaves
// goroutines behind after a shutdown, and two transports in one process
// race on gRPC's global logger (inside protoactor). For the same reason
// each package has one such test, and -count above 1 reports that race.
package hosttest

import (
	"bytes"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"

	"switchyard/actors/remote"
	"switchyard/config"
	"switchyard/node"
	_ "switchyard/protocols/udp" // the protocol the loop runs
	"switchyard/stats"
)

// Main is a test binary's TestMain: with the arguments `host …` the binary
// is a protocol host (what a node spawns as `<binary> host --listen …`, as
// the daemon spawns `switchyard host`); otherwise it runs the tests.
func Main(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "host" {
		os.Exit(runHost(os.Args[2:]))
	}
	os.Exit(m.Run())
}

// runHost is a minimal `switchyard host`: the flags the node passes.
func runHost(args []string) int {
	fs := flag.NewFlagSet("host", flag.ContinueOnError)
	listen := fs.String("listen", "", "")
	pool := fs.Int("pool-buffers", 1024, "")
	fs.String("log-level", "info", "")
	fs.String("name", "", "")
	ready := fs.Int("ready-fd", 0, "")
	secretFD := fs.Int("secret-fd", 0, "")
	secretFile := fs.String("secret-file", "", "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	addr, err := netip.ParseAddrPort(*listen)
	if err != nil {
		return 2
	}
	var secret string
	switch {
	case *secretFD > 0:
		secret, err = remote.ReadSecretFD(*secretFD)
	case *secretFile != "":
		secret, err = config.ReadTokenFile(*secretFile, "")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	system := actor.NewActorSystem()
	h, err := remote.StartHost(remote.HostOptions{Listen: addr, Security: remote.Security{Secret: secret}, PoolBuffers: *pool, System: system, Log: zap.NewNop()})
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

// FreeTCPPort returns a TCP port on 127.0.0.1 that is free right now.
func FreeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// ActorByName returns the named actor of a snapshot (zero if absent).
func ActorByName(s node.Snapshot, name string) stats.Row {
	for _, a := range s.Actors {
		if a.Name == name {
			return a
		}
	}
	return stats.Row{}
}

func LoopConfig(t *testing.T, udpPort, hostPort int, spawn bool) *config.Config {
	t.Helper()
	secretKey := ""
	if !spawn {
		// A host started by hand shares the daemon's secret file.
		secretKey = fmt.Sprintf(", secret_file: %q", SecretFile(t))
	}
	yaml := fmt.Sprintf(`
node: {name: loop}
tun: {name: sytest0, mtu: 1420, addresses: [10.90.0.1/24], install_routes: false}
batch: {max_packets: 128, pool_buffers: 4096}
mailbox: {capacity: 1024, policy: drop_newest}
supervision: {max_restarts: 3, within: 10s, backoff: 10ms}
remote: {listen: "127.0.0.1:0", window: 8%s}
hosts:
  - {name: h, listen: "127.0.0.1:%d", spawn: %v}
routes:
  - {prefix: 10.90.0.0/24, to: self}
protocols:
  - name: self
    type: udp
    host: h
    settings: {listen: "127.0.0.1:%d", peer: "127.0.0.1:%d"}
`, secretKey, hostPort, spawn, udpPort, udpPort)
	cfg, err := config.Parse("loop.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// SecretFile returns the path of a remote secret file (mode 0600) in the
// test's temporary directory, the same path for every call in one test.
func SecretFile(t *testing.T) string {
	t.Helper()
	secretsMu.Lock()
	defer secretsMu.Unlock()
	if p, ok := secrets[t.Name()]; ok {
		return p
	}
	p := filepath.Join(t.TempDir(), "remote.secret")
	if err := os.WriteFile(p, []byte("hosttest-secret-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	secrets[t.Name()] = p
	return p
}

var (
	secretsMu sync.Mutex
	secrets   = map[string]string{}
)

// HostPid returns the pid of this process's child `host --name name`.
func HostPid(t *testing.T, name string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		entries, err := os.ReadDir("/proc")
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			if err != nil {
				continue
			}
			f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
			if len(f) < 2 || f[1] != strconv.Itoa(os.Getpid()) || f[0] == "Z" {
				continue
			}
			cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			if strings.Contains(string(cmdline), "\x00host\x00") && strings.Contains(string(cmdline), "\x00--name\x00"+name+"\x00") {
				return pid
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no child process `host --name %s`", name)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
