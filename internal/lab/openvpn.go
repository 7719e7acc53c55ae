package lab

// OpenVPN in the lab (issue 16): a P-256 PKI and a tls-crypt key, a real
// openvpn 2.6 server or client in a side's namespace (configs as in
// PEERS.md: tls-crypt, AES-256-GCM, disable-dco, topology subnet), and the
// daemon configs of Switchyard's openvpn client and server. The tunnel is
// the TUN subnet of the lab: side b (.2) and side a (.1) keep their TUN
// addresses whichever end is the server, so iperf3 and the transfer tools
// find them where they always are.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// OpenVPNPort is the UDP port OpenVPN servers listen on in the lab.
const OpenVPNPort = 1194

// OpenVPNFiles are the key and certificate files of one OpenVPN setup.
type OpenVPNFiles struct {
	CA                    string
	ServerCert, ServerKey string
	ClientCert, ClientKey string // CN "client"
	TLSCrypt              string // openvpn --genkey tls-crypt
}

// WriteOpenVPNFiles makes, in the lab's directory under prefix, a P-256 CA,
// a server certificate (serverAuth, IP SAN serverIP) and a client
// certificate (clientAuth, CN client), keys mode 0600, and a tls-crypt key
// with `openvpn --genkey tls-crypt`.
func (l *Lab) WriteOpenVPNFiles(prefix string, serverIP netip.Addr) (OpenVPNFiles, error) {
	var f OpenVPNFiles
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return f, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: prefix + " CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(7 * 24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return f, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return f, err
	}
	write := func(name, typ string, der []byte, mode os.FileMode) (string, error) {
		path := filepath.Join(l.Dir, prefix+"-"+name)
		return path, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode)
	}
	if f.CA, err = write("ca.crt", "CERTIFICATE", caDER, 0o644); err != nil {
		return f, err
	}
	leaf := func(cn string, serial int64, eku x509.ExtKeyUsage, ip netip.Addr) (string, string, error) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return "", "", err
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(7 * 24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement, ExtKeyUsage: []x509.ExtKeyUsage{eku}}
		if ip.IsValid() {
			tmpl.IPAddresses = []net.IP{ip.AsSlice()}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			return "", "", err
		}
		kd, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return "", "", err
		}
		c, err := write(cn+".crt", "CERTIFICATE", der, 0o644)
		if err != nil {
			return "", "", err
		}
		kf, err := write(cn+".key", "PRIVATE KEY", kd, 0o600)
		return c, kf, err
	}
	if f.ServerCert, f.ServerKey, err = leaf("server", 2, x509.ExtKeyUsageServerAuth, serverIP); err != nil {
		return f, err
	}
	if f.ClientCert, f.ClientKey, err = leaf("client", 3, x509.ExtKeyUsageClientAuth, netip.Addr{}); err != nil {
		return f, err
	}
	f.TLSCrypt = filepath.Join(l.Dir, prefix+"-tc.key")
	if out, err := exec.Command("openvpn", "--genkey", "tls-crypt", f.TLSCrypt).CombinedOutput(); err != nil {
		return f, fmt.Errorf("openvpn --genkey tls-crypt: %v: %s", err, out)
	}
	return f, os.Chmod(f.TLSCrypt, 0o600)
}

// OpenVPNProc is an openvpn process started in a side's namespace.
type OpenVPNProc struct {
	Cmd *exec.Cmd
	Log string
	l   *Lab
	ch  chan struct{}
}

// Stop ends the process (SIGTERM, SIGKILL after DaemonStopTimeout).
func (p *OpenVPNProc) Stop() {
	select {
	case <-p.ch:
		return
	default:
	}
	_ = p.Cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.ch:
	case <-time.After(DaemonStopTimeout):
		_ = p.Cmd.Process.Kill()
		<-p.ch
	}
}

// LogTail is the end of its log file.
func (p *OpenVPNProc) LogTail() string {
	b, _ := os.ReadFile(p.Log)
	return tail(b, LogTailBytes)
}

func (l *Lab) startOpenVPN(side *Side, name, conf string) (*OpenVPNProc, error) {
	if err := NeedTool("openvpn"); err != nil {
		return nil, err
	}
	p := &OpenVPNProc{Log: filepath.Join(l.Dir, name+".log"), l: l, ch: make(chan struct{})}
	confPath := filepath.Join(l.Dir, name+".conf")
	conf += fmt.Sprintf("verb 3\nlog %s\n", p.Log)
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	cmd, err := l.Command(context.Background(), side, "openvpn", "--config", confPath)
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		l.Done(cmd)
		return nil, fmt.Errorf("start openvpn in %s: %w", side.NS, err)
	}
	p.Cmd = cmd
	go func() { _ = cmd.Wait(); l.Done(cmd); close(p.ch) }()
	return p, nil
}

// StartOpenVPNServer starts `openvpn` as a server on side's veth address:
// its tunnel address is side's TUN address, and the client with CN client
// gets client's TUN address (client-config-dir). extra lines are appended
// (reneg-sec, …).
func (l *Lab) StartOpenVPNServer(side, client *Side, f OpenVPNFiles, extra string) (*OpenVPNProc, error) {
	ccd := filepath.Join(l.Dir, "ccd-"+side.Label)
	if err := os.MkdirAll(ccd, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(ccd, "client"), []byte(fmt.Sprintf("ifconfig-push %s 255.255.255.0\n", client.TUN4)), 0o644); err != nil {
		return nil, err
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
ca %s
cert %s
key %s
dh none
tls-crypt %s
data-ciphers AES-256-GCM:CHACHA20-POLY1305
tls-version-min 1.2
disable-dco
keepalive 10 60
tun-mtu 1420
%s
`, side.Veth4, OpenVPNPort, side.TUN4, ccd, side.TUN4, f.CA, f.ServerCert, f.ServerKey, f.TLSCrypt, extra)
	return l.startOpenVPN(side, "openvpn-server-"+side.Label, conf)
}

// StartOpenVPNClient starts `openvpn` as a client of remote.
func (l *Lab) StartOpenVPNClient(side *Side, remote netip.AddrPort, f OpenVPNFiles, extra string) (*OpenVPNProc, error) {
	conf := fmt.Sprintf(`client
dev tun
proto udp4
remote %s %d
nobind
ca %s
cert %s
key %s
remote-cert-tls server
tls-crypt %s
data-ciphers AES-256-GCM:CHACHA20-POLY1305
disable-dco
tun-mtu 1420
%s
`, remote.Addr(), remote.Port(), f.CA, f.ClientCert, f.ClientKey, f.TLSCrypt, extra)
	return l.startOpenVPN(side, "openvpn-client-"+side.Label, conf)
}

// OpenVPNClientYAML is the config of side's daemon with one openvpn client
// instance `vpn` of remote, routing the TUN subnet into it.
func OpenVPNClientYAML(side *Side, remote netip.AddrPort, f OpenVPNFiles, logLevel string, extra ...string) string {
	return openVPNYAML(side, logLevel, fmt.Sprintf(`      remote: %s
      ca_file: %s
      cert_file: %s
      key_file: %s
      tls_crypt_file: %s
      data_ciphers: [AES-256-GCM, CHACHA20-POLY1305]
      remote_cert_tls: server
      accept_routes: true
`, remote, f.CA, f.ClientCert, f.ClientKey, f.TLSCrypt), extra)
}

// OpenVPNServerYAML is the config of side's daemon with one openvpn server
// instance `vpn` on its veth address; the tunnel network is the TUN /24,
// so the server is .1 and the first client .2: side a as the server, side
// b as its client.
func OpenVPNServerYAML(side *Side, f OpenVPNFiles, logLevel string, extra ...string) string {
	return openVPNYAML(side, logLevel, fmt.Sprintf(`      mode: server
      listen: %s
      server: 10.90.0.0/24
      ca_file: %s
      cert_file: %s
      key_file: %s
      tls_crypt_file: %s
      data_ciphers: [AES-256-GCM, CHACHA20-POLY1305]
`, netip.AddrPortFrom(side.Veth4, OpenVPNPort), f.CA, f.ServerCert, f.ServerKey, f.TLSCrypt), extra)
}

func openVPNYAML(side *Side, logLevel, settings string, extra []string) string {
	if logLevel == "" {
		logLevel = "info"
	}
	s := fmt.Sprintf(`node:
  name: gw-%s
log:
  level: %s
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
%s`, side.Label, logLevel, side.Admin, side.TUNDev, side.TUN4, settings)
	for _, e := range extra {
		s += "      " + e + "\n"
	}
	return s
}

// startOpenVPNCase starts the two ends of an OpenVPN case: the reference
// pair (openvpn client in a, server in b), Switchyard's client in a
// against the openvpn server in b, or Switchyard in both (server in a).
func startOpenVPNCase(ctx context.Context, l *Lab, c Case) (procs []benchProc, target netip.Addr, stops []func(), err error) {
	serverSide := l.B
	if c.Kind == KindOpenVPN {
		serverSide = l.A
	}
	f, err := l.WriteOpenVPNFiles("ovpn", serverSide.Veth4)
	if err != nil {
		return nil, target, nil, err
	}
	remote := netip.AddrPortFrom(serverSide.Veth4, OpenVPNPort)
	switch c.Kind {
	case KindOpenVPNRef, KindOpenVPNClient:
		srv, err := l.StartOpenVPNServer(l.B, l.A, f, "")
		if err != nil {
			return nil, target, nil, err
		}
		stops = append(stops, srv.Stop)
		procs = append(procs, benchProc{name: "openvpn b", pid: srv.Cmd.Process.Pid})
		if c.Kind == KindOpenVPNRef {
			cl, err := l.StartOpenVPNClient(l.A, remote, f, "")
			if err != nil {
				return procs, target, stops, err
			}
			stops = append(stops, cl.Stop)
			procs = append(procs, benchProc{name: "openvpn a", pid: cl.Cmd.Process.Pid})
			return procs, l.B.TUN4, stops, nil
		}
		d, err := l.StartDaemonYAML(ctx, l.A, OpenVPNClientYAML(l.A, remote, f, "warn"))
		if err != nil {
			return procs, target, stops, err
		}
		procs = append(procs, benchProc{name: "switchyard a", pid: d.Pid(), daemon: d})
		return procs, l.B.TUN4, stops, nil
	case KindOpenVPN:
		for _, s := range []*Side{l.A, l.B} {
			yaml := OpenVPNServerYAML(l.A, f, "warn")
			if s == l.B {
				yaml = OpenVPNClientYAML(l.B, remote, f, "warn")
			}
			d, err := l.StartDaemonYAML(ctx, s, yaml)
			if err != nil {
				return procs, target, stops, err
			}
			procs = append(procs, benchProc{name: "switchyard " + s.Label, pid: d.Pid(), daemon: d})
		}
		return procs, l.B.TUN4, stops, nil
	}
	return nil, target, nil, fmt.Errorf("case %s: not an openvpn case", c.Key)
}
