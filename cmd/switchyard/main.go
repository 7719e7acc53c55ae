// Command switchyard is the daemon and the operator CLI: the daemon (run),
// the protocol host (host), the config checker (check), the stats clients
// (stats, top), reload, WireGuard keys and version. The demo, the benchmark
// harness and the test clients are in cmd/switchyard-lab, so this binary
// links none of them.
package main

import (
	"fmt"
	"os"

	// The protocols this binary carries; each registers itself in init.
	_ "switchyard/protocols/ipsec"
	_ "switchyard/protocols/openconnect"
	_ "switchyard/protocols/openvpn"
	_ "switchyard/protocols/udp"
	_ "switchyard/protocols/wireguard"
)

const usage = `switchyard — an actor-model packet router for VPN data planes

usage:
  switchyard run     [-c FILE]                 run the daemon in the foreground
  switchyard host    --listen ADDR             run a protocol host (protocols out of process)
                     [--tls-ca F --tls-cert F --tls-key F]  mutual TLS (required off loopback)
                     [--caps net_bind_service]  the one capability it may keep (a port below 1024)
  switchyard check   -c FILE                   validate a config; prints ok or every error
  switchyard stats   [--admin ADDR] [--json]   per-actor counters of a running daemon
                     [--watch [--interval 1s]]  … or their rates, one block per interval
                     [--token-file FILE]        the bearer token of a non-loopback endpoint
  switchyard top     [--admin ADDR] [--interval 1s] [--token-file FILE]
                                               live per-actor view (q quits)
  switchyard reload  [--admin ADDR]            re-read the daemon's config file and apply it
  switchyard genkey                            print a new WireGuard private key (base64)
  switchyard pubkey                            read a private key on stdin, print its public key
  switchyard version                           print the version
`

func main() {
	os.Exit(dispatch(os.Args[1:]))
}

func dispatch(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return runDaemon(rest)
	case "host":
		return runHost(rest)
	case "check":
		return runCheck(rest)
	case "stats":
		return runStats(rest)
	case "top":
		return runTop(rest)
	case "reload":
		return runReload(rest)
	case "genkey":
		return runGenkey(rest)
	case "pubkey":
		return runPubkey(rest)
	case "version", "--version", "-v":
		fmt.Println(versionString())
		return 0
	case "help", "-h", "--help":
		fmt.Print(usage)
		return 0
	}
	fmt.Fprintf(os.Stderr, "switchyard: unknown command %q\n\n%s", cmd, usage)
	return 2
}
