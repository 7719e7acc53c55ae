package ipsec

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Paths of strongSwan 5.9.8 (Debian strongswan-charon, strongswan-swanctl).
const (
	charonPath = "/usr/lib/ipsec/charon"
	// charonLoad is the plugin list PEERS.md found to work with
	// kernel-libipsec (the openssl plugin supplies X25519 and ChaCha20).
	charonLoad = "random nonce openssl pem pkcs1 pkcs8 x509 revocation constraints pubkey kdf gcm aes sha1 sha2 hmac kernel-libipsec kernel-netlink socket-default vici updown"
)

// needCharon skips the test unless it runs as root with ip netns, charon
// and swanctl.
func needCharon(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("missing capability: root — network namespaces need root")
	}
	for _, p := range []string{"ip", "swanctl"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("missing tool: %s — not installed (make deps installs it; deps/debian.txt names its package): %v", p, err)
		}
	}
	if _, err := os.Stat(charonPath); err != nil {
		t.Skipf("missing tool: charon — not installed (make deps installs strongswan-charon): %v", err)
	}
	if out, err := exec.Command("ip", "netns", "list").CombinedOutput(); err != nil {
		t.Skipf("missing capability: netns — ip netns does not work here: %v: %s", err, out)
	}
}

func run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// netLab is a namespace joined to the test's namespace by a veth: far end
// 10.98.X.1 inside, near end 10.98.X.2 here; inner (tunnel) addresses
// 10.99.X.1 (on the namespace's lo) and 10.99.X.2 (ours, in the harness).
type netLab struct {
	t                   *testing.T
	ns, near            string
	x                   byte
	far, ip             netip.Addr
	innerFar, innerNear netip.Addr
	dir                 string
}

func newNetLab(t *testing.T) *netLab {
	t.Helper()
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	tag := hex.EncodeToString(rnd[:3])
	l := &netLab{t: t, ns: "ipsec-" + tag, near: "isA" + tag, dir: t.TempDir()}
	for i := 0; ; i++ {
		l.x = byte(2 + int(rnd[3]+byte(i*37))%250)
		out := run(t, "ip", "-4", "-o", "addr", "show", "to", fmt.Sprintf("10.98.%d.0/24", l.x))
		if strings.TrimSpace(out) == "" {
			break
		}
		if i > 20 {
			t.Fatal("no free 10.98.x.0/24")
		}
	}
	l.far = netip.AddrFrom4([4]byte{10, 98, l.x, 1})
	l.ip = netip.AddrFrom4([4]byte{10, 98, l.x, 2})
	l.innerFar = netip.AddrFrom4([4]byte{10, 99, l.x, 1})
	l.innerNear = netip.AddrFrom4([4]byte{10, 99, l.x, 2})
	run(t, "ip", "netns", "add", l.ns)
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", l.near).Run()
		_ = exec.Command("ip", "netns", "del", l.ns).Run()
	})
	far := "isB" + tag
	run(t, "ip", "link", "add", l.near, "type", "veth", "peer", "name", far)
	run(t, "ip", "link", "set", far, "netns", l.ns)
	run(t, "ip", "addr", "add", l.ip.String()+"/24", "dev", l.near)
	run(t, "ip", "link", "set", l.near, "up")
	l.exec("ip", "addr", "add", l.far.String()+"/24", "dev", far)
	l.exec("ip", "link", "set", far, "up")
	l.exec("ip", "link", "set", "lo", "up")
	l.exec("ip", "addr", "add", l.innerFar.String()+"/32", "dev", "lo")
	return l
}

func (l *netLab) exec(args ...string) string {
	l.t.Helper()
	return run(l.t, append([]string{"ip", "netns", "exec", l.ns}, args...)...)
}

// charon is a strongSwan daemon in a namespace, stopped by PID at cleanup.
type charon struct {
	t    testing.TB
	dir  string
	ns   string
	cmd  *exec.Cmd
	done chan struct{}
	vici string
}

// charonConn describes the swanctl connection a test wants.
type charonConn struct {
	Local, Remote     netip.Addr
	LocalID, RemoteID string
	PSK               string
	Proposals, ESP    string
	LocalTS, RemoteTS string
	Extra             string // more lines inside the connection
	ChildExtra        string // more lines inside the child
	// Certificates (auth = pubkey) instead of the PSK: absolute paths.
	Cert, Key, CA string
	// Pool, when set, is a responder's virtual IP pool; VIP makes an
	// initiator ask for one (vips = 0.0.0.0).
	Pool string
	VIP  bool
}

// startCharon starts charon in ns with its own /run and vici socket under
// dir, loads conn and waits until it is loaded.
func startCharon(t testing.TB, ns, dir string, conn charonConn) *charon {
	t.Helper()
	c := &charon{t: t, dir: dir, ns: ns, done: make(chan struct{}), vici: "unix://" + filepath.Join(dir, "charon.vici")}
	conf := fmt.Sprintf(`charon {
  load = %s
  retransmit_timeout = 1.0
  retransmit_tries = 3
  filelog {
    f {
      path = %s
      default = 1
      ike = 2
      enc = 1
      flush_line = yes
    }
  }
  plugins {
    vici {
      socket = %s
    }
  }
}
`, charonLoad, filepath.Join(dir, "charon.log"), c.vici)
	if err := os.WriteFile(filepath.Join(dir, "strongswan.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	auth := func(local bool) string {
		if conn.Cert == "" {
			return "auth = psk"
		}
		if local {
			return "auth = pubkey\n      certs = " + conn.Cert
		}
		return "auth = pubkey\n      cacerts = " + conn.CA
	}
	extra := conn.Extra
	pools := ""
	if conn.Pool != "" {
		extra += "\n    pools = p"
		pools = "pools {\n  p {\n    addrs = " + conn.Pool + "\n  }\n}\n"
	}
	if conn.VIP {
		extra += "\n    vips = 0.0.0.0"
	}
	secret := fmt.Sprintf("ike-t {\n    id-l = %s\n    id-r = %s\n    secret = \"%s\"\n  }", conn.LocalID, conn.RemoteID, conn.PSK)
	if conn.Cert != "" {
		// swanctl loads private keys from private/ beside its config file.
		secret = ""
		key, err := os.ReadFile(conn.Key)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(dir, "private"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "private", "charon.key"), key, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	swan := pools + fmt.Sprintf(`connections {
  t {
    version = 2
    local_addrs = %s
    remote_addrs = %s
    encap = yes
    proposals = %s
    %s
    local {
      %s
      id = %s
    }
    remote {
      %s
      id = %s
    }
    children {
      net {
        local_ts = %s
        remote_ts = %s
        esp_proposals = %s
        %s
      }
    }
  }
}
secrets {
  %s
}
`, conn.Local, conn.Remote, conn.Proposals, extra, auth(true), conn.LocalID, auth(false), conn.RemoteID, conn.LocalTS, conn.RemoteTS, conn.ESP,
		conn.ChildExtra, secret)
	swanPath := filepath.Join(dir, "swanctl.conf")
	if err := os.WriteFile(swanPath, []byte(swan), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "charon.out"))
	if err != nil {
		t.Fatal(err)
	}
	// charon's pid file is compiled in as /var/run/charon.pid: each charon
	// gets its own /run (ip netns exec gives a private mount namespace).
	c.cmd = exec.Command("ip", "netns", "exec", ns, "sh", "-c",
		"mount -t tmpfs none /run && exec env STRONGSWAN_CONF="+filepath.Join(dir, "strongswan.conf")+" "+charonPath)
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.cmd.Wait(); logf.Close(); close(c.done) }()
	t.Cleanup(c.stop)
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := exec.Command("swanctl", "--load-all", "--file", swanPath, "--uri", c.vici).CombinedOutput()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("swanctl --load-all: %v\n%s\n%s", err, out, c.log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	return c
}

// reloadPSK replaces the connection's PSK in charon.
func (c *charon) reloadPSK(t testing.TB, psk string) {
	t.Helper()
	path := filepath.Join(c.dir, "swanctl.conf")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(b), "secret = ")
	if i < 0 {
		t.Fatal("no secret in swanctl.conf")
	}
	j := strings.Index(string(b)[i:], "\n")
	text := string(b)[:i] + fmt.Sprintf("secret = %q", psk) + string(b)[i+j:]
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := c.swanctl("--load-creds", "--clear", "--file", path); err != nil {
		t.Fatalf("swanctl --load-creds: %v\n%s", err, out)
	}
}

// swanctl runs swanctl against this charon.
func (c *charon) swanctl(args ...string) (string, error) {
	out, err := exec.Command("swanctl", append(args, "--uri", c.vici)...).CombinedOutput()
	return string(out), err
}

func (c *charon) log() string {
	b, _ := os.ReadFile(filepath.Join(c.dir, "charon.log"))
	return string(b)
}

func (c *charon) stop() {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
	if c.t.Failed() {
		ls := strings.Split(c.log(), "\n")
		if len(ls) > 2000 {
			ls = ls[len(ls)-2000:]
		}
		c.t.Logf("charon log:\n%s", strings.Join(ls, "\n"))
	}
}
