package main

// `switchyard-lab demo`: the whole data path on one machine, in six steps.
//
//  1. Two network namespaces joined by a veth pair (internal/lab).
//  2. A daemon in each, with the udp protocol over the veth.
//  3. Ping both ways through the tunnel, IPv4 and IPv6.
//  4. Ping a reject prefix: the router answers with ICMP unreachable.
//  5. TCP through the tunnel with the built-in sender and receiver
//     (`switchyard lab tcp-send/tcp-recv`), hashed at both ends.
//  6. The per-actor stats of both daemons, and one throughput line.
//
// Everything made is removed at the end, on failure and on Ctrl-C.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"switchyard/internal/lab"
)

// Demo limits. Every number has its unit and its reason.
const (
	// demoTransferSeconds (3 s) and demoTransferBytes (1 GiB) bound the TCP
	// transfer, whichever comes first: long enough for a steady rate, short
	// enough for a demo (at ~3 Gbit/s the time limit ends it).
	demoTransferSeconds = 3.0
	demoTransferBytes   = 1 << 30

	// demoPings (5) is the number of pings per direction and family.
	demoPings = 5

	// demoWarmup (5 s) is how long the first ping of each direction may
	// take to get through (neighbour discovery on the veth).
	demoWarmup = 5 * time.Second

	// demoTCPPort is the port tcp-recv listens on, on b's TUN address.
	demoTCPPort = 5201
)

func runDemo(args []string) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	seconds := fs.Float64("seconds", demoTransferSeconds, "longest TCP transfer, in seconds")
	size := fs.Int64("bytes", demoTransferBytes, "largest TCP transfer, in bytes")
	daemonBin := fs.String("switchyard", "", "the switchyard daemon binary (default: next to this one)")
	keep := fs.Bool("keep-logs", false, "keep the configs and daemon logs (their directory is printed)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := lab.Preflight(); err != nil {
		fmt.Fprintf(os.Stderr, "switchyard-lab demo: %v\n", err)
		return 1
	}
	bin, err := lab.DaemonBinary(*daemonBin)
	if err != nil {
		fmt.Fprintf(os.Stderr, "switchyard-lab demo: %v\n", err)
		return 1
	}
	tools, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "switchyard-lab demo: find own binary: %v\n", err)
		return 1
	}
	// Ctrl-C or SIGTERM cancels ctx; the signals stay caught until the
	// cleanup is done, so a second Ctrl-C cannot cut it short.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	d := &demo{out: os.Stdout, bin: bin, tools: tools, seconds: *seconds, size: *size, keep: *keep}
	err = d.run(ctx)
	if ctx.Err() != nil {
		fmt.Fprintln(d.out, "interrupted: cleaning up")
		err = errors.New("interrupted")
	}
	if cerr := d.cleanup(); cerr != nil {
		fmt.Fprintf(os.Stderr, "switchyard-lab demo: cleanup: %v\n", cerr)
		return 1
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "switchyard-lab demo: %v\n", err)
		return 1
	}
	return 0
}

type demo struct {
	out     io.Writer
	bin     string // the switchyard daemon
	tools   string // this binary: the traffic tools
	seconds float64
	size    int64
	keep    bool

	lab        *lab.Lab
	daemons    [2]*lab.Daemon
	throughput string
}

const demoSteps = 6

func (d *demo) step(n int, format string, args ...any) {
	fmt.Fprintf(d.out, "[%d/%d] %s\n", n, demoSteps, fmt.Sprintf(format, args...))
}

func (d *demo) run(ctx context.Context) error {
	fmt.Fprintln(d.out, "switchyard-lab demo: two daemons in two network namespaces, joined by the udp protocol")
	opts := lab.Options{Binary: d.bin, Tools: d.tools}
	if d.keep {
		dir, err := os.MkdirTemp("", "switchyard-demo-")
		if err != nil {
			return err
		}
		opts.Dir = dir
	}
	l, err := lab.New(ctx, opts)
	if err != nil {
		return fmt.Errorf("build namespaces: %w", err)
	}
	d.lab = l
	a, b := l.A, l.B
	d.step(1, "namespaces %s and %s joined by a veth (%s ↔ %s, %s ↔ %s) ... ok",
		a.NS, b.NS, a.Veth4, b.Veth4, a.Veth6, b.Veth6)

	for i, s := range []*lab.Side{a, b} {
		dm, err := l.StartDaemon(ctx, s, l.DefaultConfig(s))
		if err != nil {
			return err
		}
		d.daemons[i] = dm
	}
	d.step(2, "daemons running: a (%s %s, %s; pid %d) and b (%s %s, %s; pid %d), udp %s:%d ↔ %s:%d ... ok",
		a.TUNDev, a.TUN4, a.TUN6, d.daemons[0].Pid(), b.TUNDev, b.TUN4, b.TUN6, d.daemons[1].Pid(),
		a.Veth4, lab.DefaultUDPPort, b.Veth4, lab.DefaultUDPPort)

	d.step(3, "ping through the tunnel, both ways, IPv4 and IPv6:")
	for _, p := range []struct {
		from, to *lab.Side
		addr     netip.Addr
	}{{a, b, b.TUN4}, {a, b, b.TUN6}, {b, a, a.TUN4}, {b, a, a.TUN6}} {
		if err := l.PingUntil(ctx, p.from, p.addr, demoWarmup); err != nil {
			return err
		}
		r, err := l.Ping(ctx, p.from, p.addr, demoPings)
		if err != nil {
			return err
		}
		fmt.Fprintf(d.out, "      %s → %s  %-10s %d/%d replies, %.0f%% loss, avg rtt %.2f ms\n",
			p.from.Label, p.to.Label, p.addr, r.Received, r.Transmitted, r.Loss, float64(r.AvgRTT)/float64(time.Millisecond))
		if r.Received == 0 {
			return fmt.Errorf("no ping replies from %s:\n%s", p.addr, r.Output)
		}
	}

	d.step(4, "reject routes (%s, %s on a) answer with ICMP destination unreachable:", lab.Reject4, lab.Reject6)
	for _, addr := range []netip.Addr{lab.RejectAddr4, lab.RejectAddr6} {
		r, err := l.Ping(ctx, a, addr, 1)
		if err != nil {
			return err
		}
		line := firstLineWith(r.Output, lab.RejectReply(addr))
		if line == "" {
			return fmt.Errorf("ping %s: no %q reply:\n%s", addr, lab.RejectReply(addr), r.Output)
		}
		fmt.Fprintf(d.out, "      a → %-10s %s\n", addr, line)
	}

	d.step(5, "TCP a → b through the tunnel (built-in sender/receiver, up to %s or %g s) ...", mib(d.size), d.seconds)
	t, err := l.TCPTransfer(ctx, a, b, demoTCPPort, d.size, time.Duration(d.seconds*float64(time.Second)))
	if err != nil {
		return err
	}
	match := "sha256 match"
	if !t.Match() {
		match = fmt.Sprintf("sha256 MISMATCH: sent %d bytes %s…, received %d bytes %s…",
			t.Sent.Bytes, short(t.Sent.SHA256), t.Received.Bytes, short(t.Received.SHA256))
	}
	fmt.Fprintf(d.out, "      %s in %.1f s, %s\n", mib(t.Received.Bytes), t.Received.Seconds, match)
	d.throughput = fmt.Sprintf("throughput: %.2f Gbit/s over the udp tunnel (a → b, %s in %.1f s, %s)",
		t.Gbps(), mib(t.Received.Bytes), t.Received.Seconds, match)

	d.step(6, "per-actor stats (switchyard stats, run inside each namespace):")
	for i, s := range []*lab.Side{a, b} {
		text, err := d.daemons[i].StatsText(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(d.out, "\n--- side %s (%s) ---\n%s", s.Label, s.NS, text)
	}
	fmt.Fprintf(d.out, "\n%s\n", d.throughput)
	if !t.Match() {
		return errors.New("the TCP transfer arrived damaged")
	}
	return nil
}

// cleanup stops the daemons (reporting a bad exit) and removes everything.
func (d *demo) cleanup() error {
	if d.lab == nil {
		return nil
	}
	var errs []error
	for _, dm := range d.daemons {
		if dm == nil {
			continue
		}
		code, err := dm.Stop()
		if err == nil && code != 0 {
			err = fmt.Errorf("daemon in %s exited with code %d; log:\n%s", dm.Side.NS, code, dm.LogTail())
		}
		if err != nil && !errors.Is(err, lab.ErrStopped) {
			errs = append(errs, err)
		}
	}
	if err := d.lab.Close(); err != nil {
		errs = append(errs, err)
	}
	left, err := d.lab.Leftovers(context.Background())
	switch {
	case err != nil:
		errs = append(errs, err)
	case len(left) > 0:
		errs = append(errs, fmt.Errorf("namespaces left behind: %v", left))
	}
	if len(errs) == 0 {
		msg := "cleanup: daemons stopped, namespaces, veths and TUNs removed ... ok"
		if d.keep {
			msg += " (configs and logs kept in " + d.lab.Dir + ")"
		}
		fmt.Fprintln(d.out, msg)
	}
	return errors.Join(errs...)
}

func firstLineWith(text, sub string) string {
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, sub) {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

func mib(n int64) string {
	if n >= 1<<30 && n%(1<<30) == 0 {
		return fmt.Sprintf("%d GiB", n>>30)
	}
	return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
}

func short(h string) string { return h[:min(len(h), 12)] }
