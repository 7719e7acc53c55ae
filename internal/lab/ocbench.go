package lab

// The openconnect bench cases: an SSL VPN client in namespace a, a gateway
// in namespace b, iperf3 from a to OCTarget behind the gateway.
//
//  1. The gateway: ocserv (KindOCRef, KindOCClient) or a switchyard daemon
//     with the openconnect protocol in server mode (KindOCServer,
//     KindOCPair), pool OCPool, pushing OCRoute, OCTarget on b's loopback.
//  2. The client: openconnect (KindOCRef, KindOCServer) with the lab's
//     script, or a switchyard daemon with the openconnect protocol in
//     client mode and accept_routes (KindOCClient, KindOCPair): the gateway's
//     address and route reach its TUN through the node's sessions.
//  3. Measured: the daemons, openconnect, and ocserv's processes (the main
//     one and its per-client worker, which carries the data).

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"switchyard/node"
)

// ocTUNMTU (1400 bytes) is the TUN MTU of the openconnect cases: within the
// tunnel MTU both ends negotiate (1406 by default), so full-size packets
// are not refused as oversized.
const ocTUNMTU = 1400

// ocDaemonYAML is side's daemon config with one openconnect instance `oc`
// (settings: its settings lines, indented by six spaces), the TUN's
// address addr and routes (YAML list items).
func ocDaemonYAML(side *Side, addr netip.Prefix, routes []string, settings ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "node: {name: oc-%s}\nlog: {level: warn}\nadmin: {listen: %s}\n", side.Label, side.Admin)
	fmt.Fprintf(&b, "tun: {name: %s, mtu: %d, addresses: [%s], install_routes: true}\n", side.TUNDev, ocTUNMTU, addr)
	b.WriteString("batch: {max_packets: 128}\nroutes:\n")
	if len(routes) == 0 {
		b.WriteString("  - {prefix: 10.66.0.0/16, action: reject}\n")
	}
	for _, r := range routes {
		fmt.Fprintf(&b, "  - %s\n", r)
	}
	b.WriteString("protocols:\n  - name: oc\n    type: openconnect\n    settings:\n")
	for _, s := range settings {
		fmt.Fprintf(&b, "      %s\n", s)
	}
	return b.String()
}

// startOpenconnectPair starts c's gateway in b and client in a.
func startOpenconnectPair(ctx context.Context, l *Lab, c Case) (procs []benchProc, target netip.Addr, stops []func(), err error) {
	var url, pin, ca string
	var gw *Ocserv
	switch c.Kind {
	case KindOCRef, KindOCClient:
		if gw, err = l.StartOcserv(ctx, l.B, OcservOptions{}); err != nil {
			return nil, target, nil, err
		}
		stops = append(stops, gw.Stop)
		url, pin, ca = gw.URL, gw.PKI.Pin, gw.PKI.CA
	default:
		pki, err := WriteOCPKI(l.Dir, l.B.Veth4)
		if err != nil {
			return nil, target, nil, err
		}
		users := filepath.Join(l.Dir, "ocpasswd")
		cmd := exec.CommandContext(ctx, "ocpasswd", "-c", users, OCUser)
		cmd.Stdin = strings.NewReader(OCPassword + "\n" + OCPassword + "\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, target, nil, fmt.Errorf("ocpasswd: %w: %s", err, out)
		}
		if err := os.Chmod(users, 0o600); err != nil {
			return nil, target, nil, err
		}
		if _, _, err := l.Exec(ctx, l.B, "ip", "addr", "replace", OCTarget.String()+"/32", "dev", "lo"); err != nil {
			return nil, target, nil, err
		}
		own := netip.PrefixFrom(OCPool.Addr().Next(), OCPool.Bits()) // the pool's first address: the server's own
		yaml := ocDaemonYAML(l.B, own, []string{fmt.Sprintf("{prefix: %s, to: oc}", OCPool)},
			"mode: server",
			"listen: "+strconv.Quote(netip.AddrPortFrom(l.B.Veth4, OCPort).String()),
			"cert_file: "+strconv.Quote(pki.Cert), "key_file: "+strconv.Quote(pki.Key),
			"users_file: "+strconv.Quote(users),
			"pool: "+OCPool.String(), "routes: ["+OCRoute.String()+"]")
		d, err := l.StartDaemonYAML(ctx, l.B, yaml)
		if err != nil {
			return nil, target, nil, err
		}
		procs = append(procs, benchProc{name: "switchyard b", pid: d.Pid(), daemon: d})
		url = "https://" + netip.AddrPortFrom(l.B.Veth4, OCPort).String()
		pin, ca = pki.Pin, pki.CA
	}

	switch c.Kind {
	case KindOCRef, KindOCServer:
		oc, err := l.StartOpenconnect(ctx, l.A, url, pin, "oc0", [2]netip.Prefix{OCRoute, OCPool})
		if err != nil {
			return procs, target, stops, err
		}
		stops = append(stops, oc.Stop)
		procs = append(procs, benchProc{name: "openconnect a", pid: oc.Pid()})
	default:
		pw, err := l.WritePasswordFile("oc.pw")
		if err != nil {
			return procs, target, stops, err
		}
		yaml := ocDaemonYAML(l.A, netip.PrefixFrom(l.A.TUN4, 24), nil,
			"server: "+url, "username: "+OCUser, "password_file: "+strconv.Quote(pw),
			"server_ca_file: "+strconv.Quote(ca), "accept_routes: true")
		d, err := l.StartDaemonYAML(ctx, l.A, yaml)
		if err != nil {
			return procs, target, stops, err
		}
		procs = append(procs, benchProc{name: "switchyard a", pid: d.Pid(), daemon: d})
		if _, err := d.WaitStats(ctx, OCStartTimeout, func(s node.Snapshot) bool {
			for _, si := range s.Sessions {
				if si.Instance == "oc" && len(si.KernelRoutes) > 0 {
					return true
				}
			}
			return false
		}); err != nil {
			return procs, target, stops, fmt.Errorf("the switchyard client's session: %w; log:\n%s", err, d.LogTail())
		}
	}
	if gw != nil {
		// ocserv's worker for the client carries the data: measure it too.
		deadline := time.Now().Add(OCStartTimeout)
		for {
			kids := descendants(gw.Pid())
			if len(kids) >= 2 || time.Now().After(deadline) { // sec-mod and the worker
				for i, pid := range kids { // "b.1" sec-mod, "b.2" the client's worker
					procs = append(procs, benchProc{name: "ocserv b." + strconv.Itoa(i+1), pid: pid})
				}
				break
			}
			time.Sleep(PollInterval)
		}
		procs = append(procs, benchProc{name: "ocserv b", pid: gw.Pid()})
	}
	return procs, OCTarget, stops, nil
}

// descendants lists the processes below pid (from /proc's children lists).
func descendants(pid int) []int {
	var out []int
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if k, err := strconv.Atoi(f); err == nil {
				out = append(out, k)
				out = append(out, descendants(k)...)
			}
		}
	}
	return out
}

// StartOpenconnectCase starts the gateway and client of an openconnect
// case kind (KindOCRef … KindOCPair) for a test: it returns the address
// behind the gateway (OCTarget), the daemons it started (gateway first) and
// what stops the other peers (the lab's Close stops the daemons).
func (l *Lab) StartOpenconnectCase(ctx context.Context, kind CaseKind) (target netip.Addr, daemons []*Daemon, stop func(), err error) {
	procs, target, stops, err := startOpenconnectPair(ctx, l, Case{Key: "test", Kind: kind})
	stop = func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	for _, p := range procs {
		if p.daemon != nil {
			daemons = append(daemons, p.daemon)
		}
	}
	return target, daemons, stop, err
}
