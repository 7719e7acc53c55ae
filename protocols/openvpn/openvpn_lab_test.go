package openvpn

// Namespace test against a real openvpn 2.6 server: the Switchyard daemon
// (built with -race) in lab side a, `openvpn --mode server` in side b, over
// the lab's veth. The server hands the client a's TUN address (10.90.0.1),
// so the node's TUN already carries it.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"switchyard/internal/lab"
	"switchyard/node"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// binaries builds the race-enabled daemon and the lab tools once.
func binaries(t *testing.T) (daemon, tools string) {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "ovpn-bin-")
		if buildErr != nil {
			return
		}
		for _, b := range [][]string{
			{"build", "-race", "-o", filepath.Join(buildDir, "switchyard"), "../../cmd/switchyard"},
			{"build", "-o", filepath.Join(buildDir, "switchyard-lab"), "../../cmd/switchyard-lab"},
		} {
			if out, err := exec.Command("go", b...).CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go %v: %v\n%s", b, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "switchyard"), filepath.Join(buildDir, "switchyard-lab")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// pki is a P-256 CA with a server and a client certificate, as PEM files.
type pki struct {
	dir                            string
	ca, serverCert, serverKey      string
	clientCert, clientKey, caPEMed string
}

func writePEM(t *testing.T, path, typ string, der []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
		t.Fatal(err)
	}
}

// newPKI makes a CA named name and, signed by it, a server certificate
// (serverAuth, IP SAN) and a client certificate (clientAuth) in dir.
func newPKI(t *testing.T, dir, name string, serverIP net.IP) *pki {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	p := &pki{dir: dir, ca: filepath.Join(dir, name+"-ca.crt")}
	writePEM(t, p.ca, "CERTIFICATE", caDER, 0o644)
	leaf := func(cn string, serial int64, eku x509.ExtKeyUsage, ip net.IP) (string, string) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement, ExtKeyUsage: []x509.ExtKeyUsage{eku}}
		if ip != nil {
			tmpl.IPAddresses = []net.IP{ip}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kd, _ := x509.MarshalPKCS8PrivateKey(k)
		c, kf := filepath.Join(dir, name+"-"+cn+".crt"), filepath.Join(dir, name+"-"+cn+".key")
		writePEM(t, c, "CERTIFICATE", der, 0o644)
		writePEM(t, kf, "PRIVATE KEY", kd, 0o600)
		return c, kf
	}
	p.serverCert, p.serverKey = leaf("server", 2, x509.ExtKeyUsageServerAuth, serverIP)
	p.clientCert, p.clientKey = leaf("client", 3, x509.ExtKeyUsageClientAuth, nil)
	return p
}

const ovpnPort = 1194

// ovpnLab is a lab with an openvpn server in side b.
type ovpnLab struct {
	*lab.Lab
	pki    *pki
	tcKey  string
	server *exec.Cmd
	log    string
}

func needLab(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("namespace test")
	}
	if err := lab.Preflight(); err != nil {
		t.Skip(err.Error())
	}
	if err := lab.NeedTool("openvpn"); err != nil {
		t.Skip(err.Error())
	}
}

func startOpenVPNServer(t *testing.T, ctx context.Context, renegSec int) *ovpnLab {
	t.Helper()
	daemon, tools := binaries(t)
	l, err := lab.New(ctx, lab.Options{Binary: daemon, Tools: tools})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	o := &ovpnLab{Lab: l}
	o.pki = newPKI(t, l.Dir, "ours", net.IP(l.B.Veth4.AsSlice()))
	o.tcKey = filepath.Join(l.Dir, "tc.key")
	if out, err := exec.Command("openvpn", "--genkey", "tls-crypt", o.tcKey).CombinedOutput(); err != nil {
		t.Fatalf("openvpn --genkey: %v: %s", err, out)
	}
	_ = os.Chmod(o.tcKey, 0o600)
	o.log = filepath.Join(l.Dir, "openvpn-server.log")
	// The client (CN "client") gets side a's TUN address.
	ccd := filepath.Join(l.Dir, "ccd")
	if err := os.MkdirAll(ccd, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ccd, "client"), []byte(fmt.Sprintf("ifconfig-push %s 255.255.255.0\n", l.A.TUN4)), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`dev tun
proto udp4
local %s
port %d
mode server
tls-server
topology subnet
ifconfig %s 255.255.255.0
ifconfig-pool 10.90.0.100 10.90.0.200 255.255.255.0
client-config-dir %s
push "topology subnet"
push "route-gateway %s"
push "route 10.77.0.0 255.255.0.0"
ca %s
cert %s
key %s
dh none
tls-crypt %s
data-ciphers AES-256-GCM:CHACHA20-POLY1305
tls-version-min 1.2
disable-dco
keepalive 2 20
reneg-sec %d
tun-mtu 1420
verb 3
log %s
`, l.B.Veth4, ovpnPort, l.B.TUN4, ccd, l.B.TUN4, o.pki.ca, o.pki.serverCert, o.pki.serverKey, o.tcKey, renegSec, o.log)
	confPath := filepath.Join(l.Dir, "server.conf")
	_ = ccd
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd, err := l.Command(context.Background(), l.B, "openvpn", "--config", confPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	o.server = cmd
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		l.Done(cmd)
		if t.Failed() {
			b, _ := os.ReadFile(o.log)
			t.Logf("openvpn server log:\n%s", tailLines(string(b), 80))
		}
	})
	return o
}

func tailLines(s string, n int) string {
	ls := strings.Split(s, "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n")
}

// clientYAML is side a's daemon config with one openvpn client instance.
func (o *ovpnLab) clientYAML(cert, key, ca string) string {
	return clientYAMLFor(o.A, netip.AddrPortFrom(o.B.Veth4, ovpnPort), cert, key, ca, o.tcKey)
}

// clientYAMLFor is the config of a daemon on side a with an openvpn client
// of remote.
func clientYAMLFor(a *lab.Side, remote netip.AddrPort, cert, key, ca, tcKey string) string {
	return fmt.Sprintf(`node:
  name: gw-a
admin:
  listen: %s
tun:
  name: %s
  mtu: 1420
  addresses: [%s/24]
  install_routes: true
batch:
  max_packets: 128
routes:
  - prefix: "10.90.0.0/24"
    to: vpn
protocols:
  - name: vpn
    type: openvpn
    settings:
      remote: %s
      ca_file: %s
      cert_file: %s
      key_file: %s
      tls_crypt_file: %s
      data_ciphers: [AES-256-GCM, CHACHA20-POLY1305]
      remote_cert_tls: server
      accept_routes: true
`, a.Admin, a.TUNDev, a.TUN4, remote, ca, cert, key, tcKey)
}

// serverYAMLFor is the config of a daemon on side a with an openvpn
// server on its veth address; the tunnel network is the TUN's /24, so the
// server is .1 and the first client .2 (side b's TUN address).
func serverYAMLFor(a *lab.Side, cert, key, ca, tcKey string) string {
	return fmt.Sprintf(`node:
  name: gw-%s
admin:
  listen: %s
tun:
  name: %s
  mtu: 1420
  addresses: [%s/24]
  install_routes: true
batch:
  max_packets: 128
routes:
  - prefix: "10.90.0.0/24"
    to: vpn
protocols:
  - name: vpn
    type: openvpn
    settings:
      mode: server
      listen: %s
      server: 10.90.0.0/24
      push_routes: [10.77.0.0/16]
      ca_file: %s
      cert_file: %s
      key_file: %s
      tls_crypt_file: %s
      data_ciphers: [AES-256-GCM, CHACHA20-POLY1305]
      reneg_sec: 5
`, a.Label, a.Admin, a.TUNDev, a.TUN4, netip.AddrPortFrom(a.Veth4, ovpnPort), ca, cert, key, tcKey)
}

// info returns the openvpn instance's stats info.
func info(t *testing.T, ctx context.Context, d *lab.Daemon) (clientInfo, node.Snapshot) {
	t.Helper()
	var in clientInfo
	snap, err := d.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	row, ok := lab.FindActor(snap, "vpn")
	if !ok {
		t.Fatalf("no stats row vpn")
	}
	b, _ := json.Marshal(row.Info)
	_ = json.Unmarshal(b, &in)
	return in, snap
}

func waitConnected(t *testing.T, ctx context.Context, d *lab.Daemon, within time.Duration) clientInfo {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		in, _ := info(t, ctx, d)
		if in.State == "connected" {
			return in
		}
		if time.Now().After(deadline) {
			t.Fatalf("not connected after %v: %+v\ndaemon log:\n%s", within, in, d.LogTail())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestOpenVPNServer: Switchyard client ↔ openvpn 2.6 server: ping both ways,
// a 100 MiB sha256-checked TCP transfer across a renegotiation (reneg-sec
// 10 on the server), ping again after it.
func TestOpenVPNServer(t *testing.T) {
	needLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	o := startOpenVPNServer(t, ctx, 10)
	d, err := o.StartDaemonYAML(ctx, o.A, o.clientYAML(o.pki.clientCert, o.pki.clientKey, o.pki.ca))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.LogTail())
		}
	})
	up := time.Now()
	in := waitConnected(t, ctx, d, 20*time.Second)
	if got, want := in.Address, o.A.TUN4.String()+"/24"; got != want {
		t.Errorf("pushed address %q, want %q", got, want)
	}
	if err := o.PingUntil(ctx, o.A, o.B.TUN4, 10*time.Second); err != nil {
		t.Fatalf("ping a→b: %v", err)
	}
	if err := o.PingUntil(ctx, o.B, o.A.TUN4, 10*time.Second); err != nil {
		t.Fatalf("ping b→a: %v", err)
	}
	// Start the transfer so that it spans the server's renegotiation at 10 s.
	if w := time.Until(up.Add(7 * time.Second)); w > 0 {
		time.Sleep(w)
	}
	tr, err := o.TCPTransfer(ctx, o.A, o.B, 5201, 100<<20, 0)
	if err != nil {
		t.Fatalf("transfer: %v", err)
	}
	if !tr.Match() {
		t.Fatalf("transfer mismatch: sent %+v received %+v", tr.Sent, tr.Received)
	}
	t.Logf("100 MiB a→b in %.1f s (%.2f Gbit/s, race-enabled daemon)", tr.Received.Seconds, tr.Gbps())
	if time.Since(up) < 12*time.Second {
		time.Sleep(time.Until(up.Add(12 * time.Second)))
	}
	in, _ = info(t, ctx, d)
	if in.Renegotiations == 0 {
		t.Errorf("no renegotiation seen: %+v", in)
	}
	if in.Reconnects != 0 {
		t.Errorf("reconnected %d times (%s)", in.Reconnects, in.LastError)
	}
	if err := o.PingUntil(ctx, o.A, o.B.TUN4, 10*time.Second); err != nil {
		t.Fatalf("ping a→b after renegotiation: %v", err)
	}
	t.Logf("info: %+v", in)
}

// TestOpenVPNWrongCA: a client certificate from another CA is refused by
// the server; the client never comes up.
func TestOpenVPNWrongCA(t *testing.T) {
	needLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	o := startOpenVPNServer(t, ctx, 3600)
	other := newPKI(t, o.Dir, "other", nil)
	d, err := o.StartDaemonYAML(ctx, o.A, o.clientYAML(other.clientCert, other.clientKey, o.pki.ca))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(6 * time.Second)
	in, _ := info(t, ctx, d)
	if in.State == "connected" {
		t.Fatalf("a client with a certificate from another CA came up: %+v", in)
	}
	b, _ := os.ReadFile(o.log)
	if !strings.Contains(string(b), "VERIFY ERROR") && !strings.Contains(string(b), "certificate verify failed") {
		t.Errorf("the server log shows no verification failure:\n%s", tailLines(string(b), 30))
	}
	t.Logf("client state %q, last error %q", in.State, in.LastError)
}
