package lab

// Out of process in the lab (issue 4): finding a daemon's spawned protocol
// hosts, watching a tunnel with a fast timestamped ping to measure how long
// traffic stops, and making the certificates of mutual TLS.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// HostPids returns the protocol hosts the daemon spawned, by name: its
// child processes whose command line is `… host … --name NAME …`.
func (d *Daemon) HostPids() (map[string]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	hosts := map[string]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, err := procParent(pid); err != nil || ppid != d.Pid() {
			continue // gone meanwhile, or not a child
		}
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		if name, ok := hostArg(strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00"), "--name"); ok {
			hosts[name] = pid
		}
	}
	return hosts, nil
}

// HostPid returns the pid of the host named name that the daemon spawned.
func (d *Daemon) HostPid(name string) (int, error) {
	hosts, err := d.HostPids()
	if err != nil {
		return 0, err
	}
	pid, ok := hosts[name]
	if !ok {
		return 0, fmt.Errorf("daemon %d in %s has no host process named %s (hosts: %v)", d.Pid(), d.Side.NS, name, hosts)
	}
	return pid, nil
}

// WaitHostPid polls HostPid until a host named name exists whose pid is
// not notPid (0: any), for at most timeout.
func (d *Daemon) WaitHostPid(ctx context.Context, name string, notPid int, timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	for {
		pid, err := d.HostPid(name)
		if err == nil && pid != notPid {
			return pid, nil
		}
		if err == nil {
			err = fmt.Errorf("host %s is still pid %d", name, pid)
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("within %v: %w", timeout, err)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(PollInterval):
		}
	}
}

// hostArg reports whether args is a `switchyard host` command line, and
// the value of its flag (--name, --listen).
func hostArg(args []string, flag string) (string, bool) {
	isHost := false
	for i, a := range args {
		switch {
		case a == "host" && i >= 1 && !isHost:
			isHost = true
		case isHost && a == flag && i+1 < len(args):
			return args[i+1], true
		case isHost && strings.HasPrefix(a, flag+"="):
			return strings.TrimPrefix(a, flag+"="), true
		}
	}
	return "", false
}

// ListenAddr returns the IPv4 TCP address process pid listens on (a
// protocol host's remote port, which each incarnation chooses anew): the
// listening socket among its file descriptors, looked up in its network
// namespace's /proc/PID/net/tcp.
func ListenAddr(pid int) (netip.AddrPort, error) {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return netip.AddrPort{}, err
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(target, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")] = true
		}
	}
	table, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/tcp", pid))
	if err != nil {
		return netip.AddrPort{}, err
	}
	return parseListen(string(table), inodes)
}

// parseListen finds, in the text of /proc/net/tcp, a socket in state LISTEN
// (0A) whose inode is in inodes, and returns its local address.
func parseListen(table string, inodes map[string]bool) (netip.AddrPort, error) {
	for _, line := range strings.Split(table, "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 10 || f[3] != "0A" || !inodes[f[9]] {
			continue
		}
		hostPort := strings.Split(f[1], ":")
		if len(hostPort) != 2 || len(hostPort[0]) != 8 {
			continue
		}
		raw, err1 := strconv.ParseUint(hostPort[0], 16, 32)
		port, err2 := strconv.ParseUint(hostPort[1], 16, 16)
		if err1 != nil || err2 != nil {
			continue
		}
		// The address is the kernel's u32 in host byte order (little endian here).
		a := netip.AddrFrom4([4]byte{byte(raw), byte(raw >> 8), byte(raw >> 16), byte(raw >> 24)})
		return netip.AddrPortFrom(a, uint16(port)), nil
	}
	return netip.AddrPort{}, errors.New("no listening IPv4 TCP socket")
}

// procParent reads the parent pid of pid from /proc/PID/stat.
func procParent(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseProcStatParent(b)
}

// parseProcStatParent reads field 4 (ppid) of /proc/PID/stat, after the
// command name in parentheses (which may itself hold spaces and ')').
func parseProcStatParent(b []byte) (int, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("/proc stat: no command name")
	}
	f := strings.Fields(string(b[i+1:])) // state ppid …
	if len(f) < 2 {
		return 0, errors.New("/proc stat: too few fields")
	}
	return strconv.Atoi(f[1])
}

// Signal sends sig to pid (a host process: SIGKILL, SIGSTOP, SIGCONT).
func Signal(pid int, sig syscall.Signal) error {
	if err := syscall.Kill(pid, sig); err != nil {
		return fmt.Errorf("signal %v to %d: %w", sig, pid, err)
	}
	return nil
}

// PingTrace is a ping running in the background, one echo request every
// interval, each reply timestamped (ping -D): the gaps between replies show
// when and for how long a tunnel stopped carrying traffic.
type PingTrace struct {
	pid  int
	out  bytes.Buffer
	errs bytes.Buffer
	done chan error
}

// StartPingTrace starts `ping -n -D -i INTERVAL -W 1 addr` in side's
// namespace. An interval below 200 ms needs root.
func (l *Lab) StartPingTrace(ctx context.Context, side *Side, addr netip.Addr, interval time.Duration) (*PingTrace, error) {
	cmd, err := l.Command(ctx, side, "ping", "-n", "-D", "-W", "1",
		"-i", strconv.FormatFloat(interval.Seconds(), 'f', -1, 64), addr.String())
	if err != nil {
		return nil, err
	}
	p := &PingTrace{done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = &p.out, &p.errs
	if err := cmd.Start(); err != nil {
		l.Done(cmd)
		return nil, fmt.Errorf("start ping in %s: %w", side.NS, err)
	}
	p.pid = cmd.Process.Pid
	go func() {
		err := cmd.Wait()
		l.Done(cmd)
		p.done <- err
	}()
	return p, nil
}

// Stop ends the ping (SIGINT) and returns the times of its replies, in
// order.
func (p *PingTrace) Stop() (PingReplies, error) {
	_ = syscall.Kill(p.pid, syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(CommandTimeout):
		_ = syscall.Kill(p.pid, syscall.SIGKILL)
		<-p.done
	}
	r, err := ParsePingTrace(p.out.Bytes())
	if err != nil {
		return nil, fmt.Errorf("%w; stderr: %s", err, strings.TrimSpace(p.errs.String()))
	}
	return r, nil
}

// PingReplies are the arrival times of echo replies, in order.
type PingReplies []time.Time

var pingReplyLine = regexp.MustCompile(`^\[(\d+)\.(\d+)\] \d+ bytes from .*icmp_seq=\d+`)

// ParsePingTrace reads the reply lines of `ping -D` output.
func ParsePingTrace(out []byte) (PingReplies, error) {
	var r PingReplies
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		m := pingReplyLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		sec, err := strconv.ParseInt(m[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("ping -D: %q: %w", sc.Text(), err)
		}
		frac := m[2]
		for len(frac) < 9 {
			frac += "0"
		}
		nsec, err := strconv.ParseInt(frac[:9], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("ping -D: %q: %w", sc.Text(), err)
		}
		r = append(r, time.Unix(sec, nsec))
	}
	sort.Slice(r, func(i, j int) bool { return r[i].Before(r[j]) })
	return r, sc.Err()
}

// FirstAfter returns the first reply at or after t.
func (r PingReplies) FirstAfter(t time.Time) (time.Time, bool) {
	i := sort.Search(len(r), func(i int) bool { return !r[i].Before(t) })
	if i == len(r) {
		return time.Time{}, false
	}
	return r[i], true
}

// LastBefore returns the last reply before t.
func (r PingReplies) LastBefore(t time.Time) (time.Time, bool) {
	i := sort.Search(len(r), func(i int) bool { return !r[i].Before(t) })
	if i == 0 {
		return time.Time{}, false
	}
	return r[i-1], true
}

// MaxGap returns the longest time between two consecutive replies and when
// it began.
func (r PingReplies) MaxGap() (gap time.Duration, from time.Time) {
	return r.MaxGapStarting(time.Time{}, time.Unix(1<<62, 0))
}

// MaxGapStarting returns the longest time between two consecutive replies
// whose earlier reply is in [lo, hi], and when it began.
func (r PingReplies) MaxGapStarting(lo, hi time.Time) (gap time.Duration, from time.Time) {
	for i := 1; i < len(r); i++ {
		if r[i-1].Before(lo) || r[i-1].After(hi) {
			continue
		}
		if g := r[i].Sub(r[i-1]); g > gap {
			gap, from = g, r[i-1]
		}
	}
	return gap, from
}

// Lifetimes of the lab's certificates.
const (
	// tlsValidity (24 h) is how long the lab's CA and certificate are valid:
	// a lab lives for minutes, and a day forgives a skewed clock.
	tlsValidity = 24 * time.Hour
)

// WriteTLSFiles makes a CA and one certificate it signs, valid for both
// server and client authentication with ips as IP SANs, and writes them
// (ca.pem, cert.pem, key.pem, the key mode 0600) to dir with prefix.
func WriteTLSFiles(dir, prefix string, ips ...netip.Addr) (TLSFiles, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return TLSFiles{}, err
	}
	now := time.Now().Add(-time.Hour)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: prefix + "switchyard lab CA"},
		NotBefore:             now,
		NotAfter:              now.Add(tlsValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return TLSFiles{}, fmt.Errorf("lab: CA certificate: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return TLSFiles{}, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return TLSFiles{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: prefix + "switchyard"},
		NotBefore:    now,
		NotAfter:     now.Add(tlsValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip.AsSlice())
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return TLSFiles{}, fmt.Errorf("lab: certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return TLSFiles{}, err
	}
	f := TLSFiles{
		CA:   filepath.Join(dir, prefix+"ca.pem"),
		Cert: filepath.Join(dir, prefix+"cert.pem"),
		Key:  filepath.Join(dir, prefix+"key.pem"),
	}
	for _, w := range []struct {
		path, kind string
		der        []byte
		mode       os.FileMode
	}{
		{f.CA, "CERTIFICATE", caDER, 0o644},
		{f.Cert, "CERTIFICATE", der, 0o644},
		{f.Key, "PRIVATE KEY", keyDER, 0o600},
	} {
		data := pem.EncodeToMemory(&pem.Block{Type: w.kind, Bytes: w.der})
		if err := os.WriteFile(w.path, data, w.mode); err != nil {
			return TLSFiles{}, fmt.Errorf("lab: write %s: %w", w.path, err)
		}
		if err := os.Chmod(w.path, w.mode); err != nil {
			return TLSFiles{}, err
		}
	}
	return f, nil
}
