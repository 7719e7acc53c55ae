package main

// switchyard-lab forward: the bare forwarder of the benchmark (lab.Forward),
// run inside a lab namespace by lab.StartForwarder. It runs until SIGTERM
// or SIGINT.
//
//	forward --peer ADDR:PORT [--tun NAME] [--mtu N] [--listen PORT]

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"switchyard/internal/lab"
)

func runForward(args []string) int {
	fs := flag.NewFlagSet("forward", flag.ContinueOnError)
	name := fs.String("tun", lab.DefaultTUN, "TUN device to create")
	mtu := fs.Int("mtu", lab.ForwardMTU, "the TUN's MTU (bytes)")
	listen := fs.Uint("listen", lab.DefaultUDPPort, "UDP port to listen on")
	peer := fs.String("peer", "", "the other forwarder's UDP address (ADDR:PORT)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	addr, err := netip.ParseAddrPort(*peer)
	if err != nil || *listen == 0 || *listen > 65535 || *mtu < 576 || *mtu > 65535 || fs.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: switchyard-lab forward --peer ADDR:PORT [--tun NAME] [--mtu 576…65535] [--listen PORT]")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := lab.Forward(ctx, lab.ForwardOptions{TUN: *name, MTU: *mtu, Listen: uint16(*listen), Peer: addr}); err != nil {
		fmt.Fprintf(os.Stderr, "switchyard-lab forward: %v\n", err)
		return 1
	}
	return 0
}
