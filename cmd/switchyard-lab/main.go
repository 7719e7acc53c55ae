// Command switchyard-lab is Switchyard's laboratory: the two-namespace demo,
// the benchmark harness, and the traffic and hostile-peer tools the demo,
// the benchmark and the namespace tests run inside their namespaces. It is
// not needed to run Switchyard; the daemon and operator CLI are
// cmd/switchyard.
package main

import (
	"fmt"
	"os"
)

const usage = `switchyard-lab — demo, benchmarks and test tools for Switchyard (root for namespaces)

usage:
  switchyard-lab demo  [--switchyard BIN]     two daemons in two network namespaces
  switchyard-lab bench micro [FILE]           summarise go test -bench output (make bench)
  switchyard-lab bench e2e [flags]            end-to-end benchmark in namespaces (make bench)
  switchyard-lab soak [flags]                 load, reloads, host kills, a SIGSTOP and transfers for
                                              --duration, then exact conservation checks (make soak)
  switchyard-lab ping|tcp-recv|tcp-send|udp-flood|tun-inject …
                                              traffic tools run inside a lab namespace
  switchyard-lab hostile …                    a remote peer that sends what no honest peer sends
  switchyard-lab forward --peer ADDR:PORT     the bare TUN↔UDP forwarder the benchmark compares with

BIN defaults to the switchyard binary next to this one (make build puts both in bin/).
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
	case "demo":
		return runDemo(rest)
	case "bench":
		return runBench(rest)
	case "hostile":
		return runHostile(rest)
	case "soak":
		return runSoak(rest)
	case "forward":
		return runForward(rest)
	case "tcp-recv", "tcp-send", "udp-flood", "tun-inject", "ping":
		return runLab(args)
	case "help", "-h", "--help":
		fmt.Print(usage)
		return 0
	}
	fmt.Fprintf(os.Stderr, "switchyard-lab: unknown command %q\n\n%s", cmd, usage)
	return 2
}
