package lab

// SSL VPN peers in a lab namespace: ocserv (the reference gateway) and
// openconnect (the reference client), with a throwaway PKI and login, for
// the openconnect protocol's namespace tests and bench cases.
//
//  1. WriteOCPKI makes a CA and a server certificate for the gateway's
//     address (SAN IP) and the openconnect-style pin of its key.
//  2. StartOcserv writes an ocpasswd file (OCUser, OCPassword) and an
//     ocserv.conf, and runs `ocserv -f` in the side's namespace on the
//     side's veth address, port OCPort (TCP and UDP), pool OCPool, pushing
//     OCRoute; OCTarget is put on the namespace's loopback, so traffic to
//     it crosses the tunnel and ends in that namespace.
//  3. StartOpenconnect runs `openconnect` in a namespace with a script that
//     only puts the assigned address on its device, brings it up and routes
//     OCRoute into it (no DNS, no default route).
//  4. Stop ends either by PID: SIGTERM, then SIGKILL after
//     DaemonStopTimeout.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// The SSL VPN of a lab.
const (
	// OCPort (4443) is the gateways' TCP and UDP port.
	OCPort = 4443
	// OCUser and OCPassword are the login every lab gateway accepts.
	OCUser     = "alice"
	OCPassword = "correct horse battery"
	// OCStartTimeout (15 s) bounds a gateway's start (ocserv forks its
	// security module first) and a client's session coming up.
	OCStartTimeout = 15 * time.Second
)

// Addresses of a lab's SSL VPN.
var (
	// OCPool is the tunnel addresses the gateway assigns.
	OCPool = netip.MustParsePrefix("192.168.99.0/24")
	// OCRoute is the route the gateway pushes (split-include).
	OCRoute = netip.MustParsePrefix("10.77.0.0/16")
	// OCTarget, in OCRoute, is on the gateway namespace's loopback: the
	// address traffic through the tunnel is sent to.
	OCTarget = netip.MustParseAddr("10.77.0.1")
)

// OCPKI is a gateway's certificate material.
type OCPKI struct {
	CA, Cert, Key string // PEM files
	Pin           string // pin-sha256:… of the server key, as openconnect spells it
}

// WriteOCPKI writes a CA and a server certificate for server (SAN IP) into
// dir.
func WriteOCPKI(dir string, server netip.Addr) (OCPKI, error) {
	var p OCPKI
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return p, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "switchyard lab CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return p, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return p, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return p, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: server.String()},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{server.AsSlice()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return p, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return p, err
	}
	write := func(name, typ string, b []byte, mode os.FileMode) (string, error) {
		path := filepath.Join(dir, name)
		return path, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), mode)
	}
	if p.CA, err = write("oc-ca.pem", "CERTIFICATE", caDER, 0o644); err != nil {
		return p, err
	}
	if p.Cert, err = write("oc-server.pem", "CERTIFICATE", der, 0o644); err != nil {
		return p, err
	}
	if p.Key, err = write("oc-server.key", "PRIVATE KEY", keyDER, 0o600); err != nil {
		return p, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return p, err
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	p.Pin = "pin-sha256:" + base64.StdEncoding.EncodeToString(sum[:])
	return p, nil
}

// WritePasswordFile writes OCPassword into a 0600 file in the lab's
// directory, for a switchyard client's password_file.
func (l *Lab) WritePasswordFile(name string) (string, error) {
	path := filepath.Join(l.Dir, name)
	return path, os.WriteFile(path, []byte(OCPassword+"\n"), 0o600)
}

// Proc is a long-lived peer process in a lab namespace (ocserv,
// openconnect), stopped by PID.
type Proc struct {
	Side    *Side
	LogPath string
	lab     *Lab
	cmd     *exec.Cmd
	exited  chan struct{}
}

// startProc starts name args… in side's namespace, logging to logName, with
// stdin as its input.
func (l *Lab) startProc(side *Side, logName, stdin, name string, args ...string) (*Proc, error) {
	logPath := filepath.Join(l.Dir, logName)
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd, err := l.Command(context.Background(), side, name, args...)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	if err := cmd.Start(); err != nil {
		l.Done(cmd)
		return nil, fmt.Errorf("start %s in %s: %w", name, side.NS, err)
	}
	p := &Proc{Side: side, LogPath: logPath, lab: l, cmd: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); l.Done(cmd); close(p.exited) }()
	return p, nil
}

// Pid is the process's id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Exited is closed when the process has exited.
func (p *Proc) Exited() <-chan struct{} { return p.exited }

// Log returns the process's log so far.
func (p *Proc) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// Stop sends SIGTERM, then SIGKILL after DaemonStopTimeout, and waits.
func (p *Proc) Stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(DaemonStopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// waitLog waits until the log holds want, the process exits or timeout.
func (p *Proc) waitLog(want string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if strings.Contains(p.Log(), want) {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited: %s", p.cmd.Args, tail([]byte(p.Log()), LogTailBytes))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: no %q in its log within %v: %s", p.cmd.Args, want, timeout, tail([]byte(p.Log()), LogTailBytes))
		}
		time.Sleep(PollInterval)
	}
}

// Ocserv is an ocserv gateway in a lab namespace.
type Ocserv struct {
	*Proc
	URL   string // https://<veth address>:OCPort
	PKI   OCPKI
	Dir   string // its config, sockets and password file
	Occtl string // its occtl socket
}

// OcservOptions adjust a lab's ocserv.
type OcservOptions struct {
	// DPD is the dead peer detection interval ocserv announces (DTLS and
	// CSTP); 0 means OCDefaultDPD.
	DPD time.Duration
	// Extra lines appended to ocserv.conf.
	Extra string
}

// OCDefaultDPD (60 s) is ocserv's DPD in a lab unless a test asks for less.
const OCDefaultDPD = 60 * time.Second

// StartOcserv starts ocserv on side's veth address and puts OCTarget on
// side's loopback.
func (l *Lab) StartOcserv(ctx context.Context, side *Side, opts OcservOptions) (*Ocserv, error) {
	if opts.DPD <= 0 {
		opts.DPD = OCDefaultDPD
	}
	if err := NeedTool("ocserv"); err != nil {
		return nil, err
	}
	// Not under the lab's directory: ocserv's workers run as nobody and
	// must reach the sockets here, through directories they may enter.
	dir, err := os.MkdirTemp("", "sy-ocserv-")
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(dir)
		}
	}()
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	pki, err := WriteOCPKI(dir, side.Veth4)
	if err != nil {
		return nil, err
	}
	passwd := filepath.Join(dir, "ocpasswd")
	cmd := exec.CommandContext(ctx, "ocpasswd", "-c", passwd, OCUser)
	cmd.Stdin = strings.NewReader(OCPassword + "\n" + OCPassword + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ocpasswd: %w: %s", err, out)
	}
	mask := net.IP(net.CIDRMask(OCRoute.Bits(), 32)).String()
	poolMask := net.IP(net.CIDRMask(OCPool.Bits(), 32)).String()
	conf := fmt.Sprintf(`auth = "plain[passwd=%[1]s]"
listen-host = %[2]s
tcp-port = %[3]d
udp-port = %[3]d
run-as-user = nobody
run-as-group = nogroup
socket-file = %[4]s/ocserv.sock
occtl-socket-file = %[4]s/occtl.sock
pid-file = %[4]s/ocserv.pid
use-occtl = true
isolate-workers = false
server-cert = %[5]s
server-key = %[6]s
ca-cert = %[7]s
max-ban-score = 0
max-clients = 16
max-same-clients = 8
device = vpns
ipv4-network = %[8]s
ipv4-netmask = %[9]s
route = %[10]s/%[11]s
cisco-client-compat = true
dtls-legacy = true
try-mtu-discovery = false
dpd = %[13]d
mobile-dpd = %[13]d
keepalive = 30
cookie-timeout = 300
rekey-time = 86400
%[12]s
`, passwd, side.Veth4, OCPort, dir, pki.Cert, pki.Key, pki.CA, OCPool.Addr(), poolMask, OCRoute.Addr(), mask, opts.Extra, int(opts.DPD/time.Second))
	confPath := filepath.Join(dir, "ocserv.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	if _, _, err := l.Exec(ctx, side, "ip", "addr", "replace", OCTarget.String()+"/32", "dev", "lo"); err != nil {
		return nil, err
	}
	p, err := l.startProc(side, "ocserv-"+side.Label+".log", "", "ocserv", "-f", "-c", confPath, "-d", "1")
	if err != nil {
		return nil, err
	}
	o := &Ocserv{Proc: p, URL: fmt.Sprintf("https://%s", netip.AddrPortFrom(side.Veth4, OCPort)), PKI: pki, Dir: dir,
		Occtl: filepath.Join(dir, "occtl.sock")}
	if err := p.waitLog("listening (TCP)", OCStartTimeout); err != nil {
		p.Stop()
		return nil, err
	}
	ok = true
	return o, nil
}

// Stop stops ocserv (its main process: it ends its workers) and removes
// its directory.
func (o *Ocserv) Stop() {
	o.Proc.Stop()
	_ = os.RemoveAll(o.Dir)
}

// OpenconnectScript is the vpnc-script the lab gives openconnect: the
// assigned address on the device, the device up, OCRoute into it.
const OpenconnectScript = `#!/bin/sh
case "$reason" in
connect)
	ip addr add "$INTERNAL_IP4_ADDRESS/32" dev "$TUNDEV"
	ip link set "$TUNDEV" up mtu "${INTERNAL_IP4_MTU:-1400}"
	ip route replace ` + "%s" + ` dev "$TUNDEV" src "$INTERNAL_IP4_ADDRESS"
	ip route replace ` + "%s" + ` dev "$TUNDEV" src "$INTERNAL_IP4_ADDRESS"
	;;
esac
exit 0
`

// StartOpenconnect runs openconnect in side's namespace against url (server
// key pinned with pin) with device iface, and waits until the device has an
// address. routes go into the device (OCRoute and the pool, say).
func (l *Lab) StartOpenconnect(ctx context.Context, side *Side, url, pin, iface string, routes [2]netip.Prefix) (*Proc, error) {
	if err := NeedTool("openconnect"); err != nil {
		return nil, err
	}
	script := filepath.Join(l.Dir, "vpnc-"+iface)
	if err := os.WriteFile(script, []byte(fmt.Sprintf(OpenconnectScript, routes[0], routes[1])), 0o755); err != nil {
		return nil, err
	}
	p, err := l.startProc(side, "openconnect-"+iface+".log", OCPassword+"\n", "openconnect", "--user="+OCUser,
		"--passwd-on-stdin", "--servercert", pin, "--script="+script, "--interface="+iface, "--non-inter", url)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(OCStartTimeout)
	for {
		out, _, _ := l.Exec(ctx, side, "ip", "-4", "-o", "addr", "show", "dev", iface)
		if strings.Contains(string(out), "inet ") {
			return p, nil
		}
		select {
		case <-p.exited:
			return nil, fmt.Errorf("openconnect in %s exited: %s", side.NS, tail([]byte(p.Log()), LogTailBytes))
		default:
		}
		if time.Now().After(deadline) {
			p.Stop()
			return nil, errors.New("openconnect: no address on " + iface + " within " + OCStartTimeout.String() + ": " + tail([]byte(p.Log()), LogTailBytes))
		}
		time.Sleep(PollInterval)
	}
}
