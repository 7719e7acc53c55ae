package lab

// WireGuard in the lab: switchyard daemons with the wireguard protocol, and
// the reference peer — the wireguard-go binary built from the module
// version in go.mod, configured with `wg` (wireguard-tools) and `ip`.
//
//	namespace a: sy0 (switchyard, wireguard)   or  wga<suffix> (wireguard-go)
//	namespace b: sy0 (switchyard, wireguard)   or  wgb<suffix> (wireguard-go)
//	             10.90.0.x/24 fd90::x/64 inside, UDP 51820 on the veth
//
// wireguard-go's UAPI socket is /var/run/wireguard/IFACE.sock on the shared
// filesystem; every lab names its interfaces with its own suffix, so labs
// and the two sides never collide and `wg` finds the right socket from any
// namespace.

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Limits of the WireGuard lab, each with its unit and reason.
const (
	// WGPort (51820) is the UDP port both sides listen on: WireGuard's own.
	WGPort = 51820

	// WGBuildTimeout (5 min) bounds building wireguard-go; a cold build
	// cache on 2 cores takes about a minute.
	WGBuildTimeout = 5 * time.Minute

	// WGStartTimeout (10 s) is how long to wait for wireguard-go's UAPI
	// socket to appear; it takes milliseconds.
	WGStartTimeout = 10 * time.Second

	// wgSocketDir is where wireguard-go puts its UAPI sockets.
	wgSocketDir = "/var/run/wireguard"
)

// WGKey is a WireGuard key pair, base64 as `wg` prints it.
type WGKey struct {
	Private, Public string
}

// NewWGKey makes a key pair (clamped, as `wg genkey` does).
func NewWGKey() (WGKey, error) {
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		return WGKey{}, err
	}
	k[0] &= 248
	k[31] = (k[31] & 127) | 64
	priv, err := ecdh.X25519().NewPrivateKey(k[:])
	if err != nil {
		return WGKey{}, err
	}
	return WGKey{
		Private: base64.StdEncoding.EncodeToString(k[:]),
		Public:  base64.StdEncoding.EncodeToString(priv.PublicKey().Bytes()),
	}, nil
}

// WriteKeyFile writes the private key to a 0600 file in the lab's directory
// and returns its path.
func (l *Lab) WriteKeyFile(name string, k WGKey) (string, error) {
	p := filepath.Join(l.Dir, name)
	if err := os.WriteFile(p, []byte(k.Private+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("lab: key file: %w", err)
	}
	return p, os.Chmod(p, 0o600)
}

// WGPeer is the peer of one side: the other side, by default.
type WGPeer struct {
	PublicKey string
	Endpoint  netip.AddrPort // zero: none
}

// WireGuardYAML renders the config of a switchyard daemon on side with one
// wireguard instance `wg` carrying the TUN subnets to peer, whose allowed
// IPs are the TUN subnets. Extra lines go under the instance's settings.
func (l *Lab) WireGuardYAML(side *Side, keyFile string, peer WGPeer, logLevel string) string {
	return l.wireGuardYAML(side, keyFile, peer, logLevel, false)
}

// WireGuardOutOfProcessYAML is WireGuardYAML with the instance on a spawned
// protocol host, as OutOfProcess places the udp protocol.
func (l *Lab) WireGuardOutOfProcessYAML(side *Side, keyFile string, peer WGPeer, logLevel string) string {
	return l.wireGuardYAML(side, keyFile, peer, logLevel, true)
}

func (l *Lab) wireGuardYAML(side *Side, keyFile string, peer WGPeer, logLevel string, outOfProcess bool) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# written by the switchyard lab for namespace %s", side.NS)
	w("node:\n  name: gw-%s", side.Label)
	if logLevel != "" {
		w("log:\n  level: %s", logLevel)
	}
	w("admin:\n  listen: %s", side.Admin)
	host := ""
	if outOfProcess {
		oop := OutOfProcess(Config{})
		remoteYAML(w, oop.RemoteListen, 0, TLSFiles{}, "", oop.Hosts)
		host = "\n    host: " + HostName
	}
	w("tun:\n  name: %s\n  mtu: 1420\n  addresses: [%s/24, \"%s/64\"]\n  install_routes: true",
		side.TUNDev, side.TUN4, side.TUN6)
	w("batch:\n  max_packets: 128")
	w("routes:")
	for _, p := range TunnelPrefixes {
		w("  - prefix: %q\n    to: wg", p)
	}
	w("protocols:\n  - name: wg\n    type: wireguard%s\n    settings:", host)
	w("      private_key_file: %s", keyFile)
	w("      listen_port: %d", WGPort)
	w("      peers:\n        - public_key: %s", peer.PublicKey)
	if peer.Endpoint.IsValid() {
		w("          endpoint: %q", peer.Endpoint)
	}
	w("          allowed_ips: [%q, %q]", TunnelPrefixes[0], TunnelPrefixes[1])
	return b.String()
}

// BuildWireGuardGo builds the wireguard-go binary of the module version in
// go.mod into dir and returns its path. It runs `go build` in the current
// directory, which must be inside the switchyard module.
func BuildWireGuardGo(ctx context.Context, dir string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, WGBuildTimeout)
	defer cancel()
	path := filepath.Join(dir, "wireguard-go")
	out, err := exec.CommandContext(ctx, "go", "build", "-o", path, "golang.zx2c4.com/wireguard").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build golang.zx2c4.com/wireguard: %v\n%s", err, out)
	}
	return path, nil
}

// WGGo is a wireguard-go process with its interface in one namespace.
type WGGo struct {
	Side    *Side
	Iface   string
	LogPath string

	lab    *Lab
	cmd    *exec.Cmd
	exited chan struct{}
}

// WGIface is the wireguard-go interface name of side in this lab
// ("wgb3f9c1e": within the 15-byte limit, unique per lab).
func (l *Lab) WGIface(side *Side) string { return "wg" + side.Label + l.Suffix }

// StartWireGuardGo runs `wireguard-go -f` in side's namespace, configures
// it with `wg set` (private key file, port WGPort, one peer with the TUN
// subnets as allowed IPs) and gives the interface side's TUN addresses.
func (l *Lab) StartWireGuardGo(ctx context.Context, binary string, side *Side, keyFile string, peer WGPeer) (*WGGo, error) {
	iface := l.WGIface(side)
	logPath := filepath.Join(l.Dir, "wireguard-go-"+side.Label+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd, err := l.Command(context.Background(), side, binary, "-f", iface)
	if err != nil {
		return nil, err
	}
	cmd.Env = append(os.Environ(), "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1", "LOG_LEVEL=error")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		l.Done(cmd)
		return nil, fmt.Errorf("start wireguard-go in %s: %w", side.NS, err)
	}
	g := &WGGo{Side: side, Iface: iface, LogPath: logPath, lab: l, cmd: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); l.Done(cmd); close(g.exited) }()

	sock := filepath.Join(wgSocketDir, iface+".sock")
	deadline := time.Now().Add(WGStartTimeout)
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		select {
		case <-g.exited:
			b, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("wireguard-go in %s exited at start: %s", side.NS, tail(b, LogTailBytes))
		default:
		}
		if time.Now().After(deadline) {
			g.Stop()
			return nil, fmt.Errorf("wireguard-go in %s: no UAPI socket %s within %v", side.NS, sock, WGStartTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	args := []string{"set", iface, "private-key", keyFile, "listen-port", strconv.Itoa(WGPort),
		"peer", peer.PublicKey, "allowed-ips", TunnelPrefixes[0].String() + "," + TunnelPrefixes[1].String()}
	if peer.Endpoint.IsValid() {
		args = append(args, "endpoint", peer.Endpoint.String())
	}
	steps := [][]string{
		append([]string{"wg"}, args...),
		{"ip", "addr", "add", side.TUN4.String() + "/24", "dev", iface},
		{"ip", "addr", "add", side.TUN6.String() + "/64", "dev", iface, "nodad"},
		{"ip", "link", "set", iface, "up"},
	}
	for _, s := range steps {
		if _, _, err := l.Exec(ctx, side, s[0], s[1:]...); err != nil {
			g.Stop()
			return nil, err
		}
	}
	return g, nil
}

// Show returns `wg show IFACE DUMP-FIELD` output, e.g. "latest-handshakes"
// or "transfer".
func (g *WGGo) Show(ctx context.Context, what string) (string, error) {
	out, _, err := g.lab.Exec(ctx, g.Side, "wg", "show", g.Iface, what)
	return strings.TrimSpace(string(out)), err
}

// Stop ends wireguard-go (SIGTERM, then SIGKILL) and removes its socket if
// it left one.
func (g *WGGo) Stop() {
	if g.cmd.Process != nil {
		_ = g.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-g.exited:
	case <-time.After(DaemonStopTimeout):
		_ = g.cmd.Process.Kill()
		<-g.exited
	}
	_ = os.Remove(filepath.Join(wgSocketDir, g.Iface+".sock"))
}
