// Package lab builds and tears down the two-namespace topology of the demo
// and the namespace tests, and runs Switchyard daemons and traffic tools in
// it.
//
//	namespace sy-a-XXXXXX                      namespace sy-b-XXXXXX
//	sy0 10.90.0.1/24 fd90::1/64                sy0 10.90.0.2/24 fd90::2/64
//	 │  daemon a (udp :7000)                    │  daemon b (udp :7000)
//	sy-a-XXXXXX 10.91.0.1/24 fd91::1/64 ══ veth ══ sy-b-XXXXXX 10.91.0.2/24 fd91::2/64
//
// Every name carries a random per-lab suffix, so a test and the demo never
// collide. Close removes everything New and the Lab's methods made
// (processes, namespaces and with them the veths and TUNs, the work
// directory if the lab created it); it is idempotent and safe to call after
// any failure. The lab shells out to `ip` (iproute2); the daemon itself uses
// netlink.
package lab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Side is one end of the topology: a namespace with its veth and the
// addresses its daemon's TUN gets.
type Side struct {
	Label  string     // "a" or "b"
	NS     string     // namespace name, "sy-a-3f9c1e"
	Veth   string     // veth name inside NS (the namespace's name)
	Veth4  netip.Addr // 10.91.0.1 / 10.91.0.2
	Veth6  netip.Addr // fd91::1 / fd91::2
	TUN4   netip.Addr // 10.90.0.1 / 10.90.0.2
	TUN6   netip.Addr // fd90::1 / fd90::2
	Admin  string     // the daemon's admin endpoint inside NS
	TUNDev string     // the daemon's TUN device name
}

// Options configure New.
type Options struct {
	// Binary is the switchyard binary the daemons run from.
	Binary string
	// CLI is the switchyard binary of the operator commands (`stats`,
	// `reload`); empty means Binary. Tests give a race-enabled Binary and a
	// plain CLI: the race detector is for the daemons under test.
	CLI string
	// Tools is the switchyard-lab binary of the traffic tools (`tcp-send`,
	// `tcp-recv`, `udp-flood`, `tun-inject`, `hostile`).
	Tools string
	// Dir receives configs and logs; empty means a temporary directory that
	// Close removes.
	Dir string
}

// Lab is one two-namespace topology.
type Lab struct {
	Suffix string
	A, B   *Side
	Dir    string
	Binary string
	CLI    string
	Tools  string

	ownDir bool

	mu         sync.Mutex
	namespaces []string // created, in order
	procs      map[*exec.Cmd]struct{}
	daemons    []*Daemon
	closed     bool
}

// Addresses of the topology.
var (
	veth4 = [2]netip.Prefix{netip.MustParsePrefix("10.91.0.1/24"), netip.MustParsePrefix("10.91.0.2/24")}
	veth6 = [2]netip.Prefix{netip.MustParsePrefix("fd91::1/64"), netip.MustParsePrefix("fd91::2/64")}
	tun4  = [2]netip.Prefix{netip.MustParsePrefix("10.90.0.1/24"), netip.MustParsePrefix("10.90.0.2/24")}
	tun6  = [2]netip.Prefix{netip.MustParsePrefix("fd90::1/64"), netip.MustParsePrefix("fd90::2/64")}
)

// Fixed names and addresses every lab uses.
const (
	NSPrefix       = "sy-"            // every lab namespace starts with it
	DefaultAdmin   = "127.0.0.1:9190" // each namespace has its own loopback
	DefaultTUN     = "sy0"
	DefaultUDPPort = 7000
)

// Reject prefixes of side a's default config, and an address in each.
var (
	Reject4     = netip.MustParsePrefix("10.66.0.0/16")
	Reject6     = netip.MustParsePrefix("fd66::/64")
	RejectAddr4 = netip.MustParseAddr("10.66.0.1")
	RejectAddr6 = netip.MustParseAddr("fd66::1")
)

// Preflight reports, in one line, why this process cannot build a lab: not
// root, no /dev/net/tun, or no usable `ip netns`. The error is a *Missing.
func Preflight() error {
	if runtime.GOOS != "linux" {
		return errors.New("the lab needs Linux network namespaces; on " + runtime.GOOS + " it does not run")
	}
	if os.Geteuid() != 0 {
		return &Missing{Capability: "root", Why: "needs root to create network namespaces and TUN devices; try sudo"}
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return &Missing{Capability: "/dev/net/tun", Why: fmt.Sprintf("no TUN support: /dev/net/tun is missing (%v); load the tun module", err)}
	}
	if err := NeedTool("ip"); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), CommandTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "ip", "netns", "list").CombinedOutput(); err != nil {
		return &Missing{Capability: "ip netns", Why: fmt.Sprintf("ip netns is not usable: %v: %s", err, bytes.TrimSpace(out))}
	}
	return nil
}

// New builds the topology: two namespaces with lo up, joined by a veth pair
// with IPv4 and IPv6 addresses. On error everything made so far is removed.
func New(ctx context.Context, opts Options) (_ *Lab, err error) {
	if opts.Binary == "" {
		return nil, errors.New("lab: no switchyard binary given")
	}
	suffix, err := newSuffix()
	if err != nil {
		return nil, err
	}
	l := &Lab{
		Suffix: suffix,
		Binary: opts.Binary,
		CLI:    opts.CLI,
		Tools:  opts.Tools,
		Dir:    opts.Dir,
		procs:  map[*exec.Cmd]struct{}{},
	}
	if l.CLI == "" {
		l.CLI = l.Binary
	}
	if l.Tools == "" {
		return nil, errors.New("lab: no switchyard-lab binary given for the traffic tools")
	}
	defer func() {
		if err != nil {
			_ = l.Close()
		}
	}()
	if l.Dir == "" {
		if l.Dir, err = os.MkdirTemp("", "switchyard-lab-"+suffix+"-"); err != nil {
			return nil, fmt.Errorf("lab: work directory: %w", err)
		}
		l.ownDir = true
	}
	l.A, l.B = newSides(suffix)
	sides := [2]*Side{l.A, l.B}

	for _, s := range sides {
		if err := l.ip(ctx, "netns", "add", s.NS); err != nil {
			return nil, err
		}
		l.mu.Lock()
		l.namespaces = append(l.namespaces, s.NS)
		l.mu.Unlock()
		if err := l.ip(ctx, "-n", s.NS, "link", "set", "lo", "up"); err != nil {
			return nil, err
		}
	}
	// Made inside a and b directly, so nothing ever exists in the root
	// namespace, and deleting a namespace deletes the pair.
	if err := l.ip(ctx, "-n", l.A.NS, "link", "add", l.A.Veth, "type", "veth", "peer", "name", l.B.Veth, "netns", l.B.NS); err != nil {
		return nil, err
	}
	for i, s := range sides {
		steps := [][]string{
			{"-n", s.NS, "addr", "add", veth4[i].String(), "dev", s.Veth},
			{"-n", s.NS, "addr", "add", veth6[i].String(), "dev", s.Veth, "nodad"},
			{"-n", s.NS, "link", "set", s.Veth, "up"},
		}
		for _, args := range steps {
			if err := l.ip(ctx, args...); err != nil {
				return nil, err
			}
		}
	}
	return l, nil
}

// newSides names and addresses the two sides of a lab with suffix.
func newSides(suffix string) (a, b *Side) {
	var sides [2]*Side
	for i, label := range []string{"a", "b"} {
		name := NSPrefix + label + "-" + suffix
		sides[i] = &Side{
			Label: label, NS: name, Veth: name,
			Veth4: veth4[i].Addr(), Veth6: veth6[i].Addr(),
			TUN4: tun4[i].Addr(), TUN6: tun6[i].Addr(),
			Admin: DefaultAdmin, TUNDev: DefaultTUN,
		}
	}
	return sides[0], sides[1]
}

func newSuffix() (string, error) {
	b := make([]byte, SuffixBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("lab: random suffix: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// Daemons lists the daemons the lab started, in order.
func (l *Lab) Daemons() []*Daemon {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*Daemon(nil), l.daemons...)
}

// Namespaces lists the namespaces the lab made and has not removed.
func (l *Lab) Namespaces() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.namespaces...)
}

// ip runs `ip args…` in the root namespace (most calls name a namespace with
// -n) and returns its output in the error.
func (l *Lab) ip(ctx context.Context, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, CommandTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// Command returns a command that runs name args… inside side's namespace.
// It is tracked: Close kills it if it is still running. The caller starts
// it (Run or Start+Wait) and calls Done when it has been waited for.
func (l *Lab) Command(ctx context.Context, side *Side, name string, args ...string) (*exec.Cmd, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, errors.New("lab: closed")
	}
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", side.NS, name}, args...)...)
	// Its own process group: a Ctrl-C at the terminal reaches only the demo,
	// which then stops everything in order. If the demo or test dies, the
	// kernel kills the helper (ip netns exec execs it, so it keeps the pid).
	cmd.SysProcAttr = ownGroupDyingWithUs(syscall.SIGKILL) // procattr_*.go
	cmd.WaitDelay = time.Second
	l.procs[cmd] = struct{}{}
	return cmd, nil
}

// Done forgets a command returned by Command once it has been waited for.
func (l *Lab) Done(cmd *exec.Cmd) {
	l.mu.Lock()
	delete(l.procs, cmd)
	l.mu.Unlock()
}

// Exec runs name args… in side's namespace and returns stdout and stderr.
// A non-zero exit is an error carrying both.
func (l *Lab) Exec(ctx context.Context, side *Side, name string, args ...string) (stdout, stderr []byte, err error) {
	cmd, err := l.Command(ctx, side, name, args...)
	if err != nil {
		return nil, nil, err
	}
	defer l.Done(cmd)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	if err != nil {
		err = fmt.Errorf("%s %s in %s: %w: %s", name, strings.Join(args, " "), side.NS, err, tail(e.Bytes(), LogTailBytes))
	}
	return o.Bytes(), e.Bytes(), err
}

// Close stops every daemon (SIGTERM, then SIGKILL after DaemonStopTimeout)
// and every helper still running, deletes the namespaces (and with them the
// veths and TUNs) and the work directory if the lab made it. It is
// idempotent; it returns every problem it met and keeps going past each.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	daemons := append([]*Daemon(nil), l.daemons...)
	procs := make([]*exec.Cmd, 0, len(l.procs))
	for c := range l.procs {
		procs = append(procs, c)
	}
	namespaces := append([]string(nil), l.namespaces...)
	l.mu.Unlock()

	var errs []error
	for _, d := range daemons {
		if _, err := d.Stop(); err != nil && !errors.Is(err, ErrStopped) {
			errs = append(errs, err)
		}
	}
	for _, c := range procs {
		if c.Process != nil {
			_ = c.Process.Kill() // its Wait is still with its caller
		}
	}
	// Delete in reverse order of creation, from a context of its own: the
	// caller's may be cancelled already (Ctrl-C).
	ctx, cancel := context.WithTimeout(context.Background(), 3*CommandTimeout)
	defer cancel()
	for i := len(namespaces) - 1; i >= 0; i-- {
		ns := namespaces[i]
		if err := l.ip(ctx, "netns", "del", ns); err != nil {
			errs = append(errs, err)
			continue
		}
		l.mu.Lock()
		l.namespaces = remove(l.namespaces, ns)
		l.mu.Unlock()
	}
	if l.ownDir && l.Dir != "" {
		if err := os.RemoveAll(l.Dir); err != nil {
			errs = append(errs, fmt.Errorf("lab: remove %s: %w", l.Dir, err))
		}
	}
	return errors.Join(errs...)
}

func remove(list []string, s string) []string {
	out := list[:0]
	for _, v := range list {
		if v != s {
			out = append(out, v)
		}
	}
	return out
}

// Leftovers returns the namespaces of `ip netns list` that belong to this
// lab (tests assert there are none after Close).
func (l *Lab) Leftovers(ctx context.Context) ([]string, error) {
	return ListNamespaces(ctx, "-"+l.Suffix)
}

// ListNamespaces returns the names in `ip netns list` that start with
// NSPrefix and end with suffix.
func ListNamespaces(ctx context.Context, suffix string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, CommandTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "list").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("ip netns list: %v: %s", err, bytes.TrimSpace(out))
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		// "sy-a-3f9c1e (id: 3)"
		f := strings.Fields(line)
		if len(f) > 0 && strings.HasPrefix(f[0], NSPrefix) && strings.HasSuffix(f[0], suffix) {
			names = append(names, f[0])
		}
	}
	return names, nil
}

// tail returns the last n bytes of b, trimmed, starting at a line boundary
// when one is near.
func tail(b []byte, n int) string {
	b = bytes.TrimSpace(b)
	if len(b) > n {
		b = b[len(b)-n:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 && i < 200 {
			b = b[i+1:]
		}
	}
	return string(b)
}

// DaemonBinary returns the switchyard binary the lab's daemons run from:
// path if given, else the `switchyard` next to the running executable (make
// build puts bin/switchyard and bin/switchyard-lab side by side).
func DaemonBinary(path string) (string, error) {
	if path == "" {
		self, err := os.Executable()
		if err != nil {
			return "", fmt.Errorf("find own binary: %w", err)
		}
		path = filepath.Join(filepath.Dir(self), "switchyard")
	}
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("the switchyard binary: %w (build it with make build, or pass --switchyard)", err)
	}
	if !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("the switchyard binary %s is not an executable file", path)
	}
	return path, nil
}
