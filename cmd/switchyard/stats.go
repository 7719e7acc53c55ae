package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"switchyard/config"
	"switchyard/node"
)

// statsTimeout (3 s) bounds one request to the admin endpoint.
const statsTimeout = 3 * time.Second

func runStats(args []string) int {
	fs := flag.NewFlagSet("stats", flag.ContinueOnError)
	admin := fs.String("admin", "127.0.0.1:9190", "admin endpoint of the daemon (host:port)")
	asJSON := fs.Bool("json", false, "print the raw JSON from GET /stats")
	tokenFile := fs.String("token-file", "", "file holding the admin bearer token (admin.token_file of the daemon)")
	watch := fs.Bool("watch", false, "print per-actor rates every --interval until interrupted")
	interval := fs.Duration("interval", time.Second, "with --watch: time between two blocks")
	count := fs.Int("count", 0, "with --watch: stop after this many blocks (0: until interrupted)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	c, err := newAdminClient(*admin, *tokenFile)
	if err != nil {
		fmt.Fprintf(os.Stderr, "switchyard stats: %v\n", err)
		return 1
	}
	if *watch {
		if *interval < minInterval {
			fmt.Fprintf(os.Stderr, "switchyard stats: --interval must be at least %v\n", minInterval)
			return 2
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return watchStats(ctx, c, os.Stdout, os.Stderr, *interval, *count)
	}
	body, err := c.fetch()
	if err != nil {
		fmt.Fprintf(os.Stderr, "switchyard stats: %v\n", err)
		return 1
	}
	if *asJSON {
		_, _ = os.Stdout.Write(body)
		return 0
	}
	var snap node.Snapshot
	if err := json.Unmarshal(body, &snap); err != nil {
		fmt.Fprintf(os.Stderr, "switchyard stats: bad answer from %s: %v\n", *admin, err)
		return 1
	}
	printStats(os.Stdout, snap)
	return 0
}

// minInterval (100 ms) is the shortest refresh of `stats --watch` and `top`:
// faster, the rates are mostly noise and the polling costs the daemon CPU.
const minInterval = 100 * time.Millisecond

// adminClient fetches GET /stats from a daemon's admin endpoint.
type adminClient struct {
	admin string
	token string // bearer token; "" sends none
	http  http.Client
}

// newAdminClient reads the token file, if any, with the rules the daemon
// applies to admin.token_file (not readable by group or others).
func newAdminClient(admin, tokenFile string) (*adminClient, error) {
	c := &adminClient{admin: admin, http: http.Client{Timeout: statsTimeout}}
	if tokenFile != "" {
		t, err := config.ReadTokenFile(tokenFile, "")
		if err != nil {
			return nil, fmt.Errorf("--token-file: %w", err)
		}
		c.token = t
	}
	return c, nil
}

// fetch returns the body of GET /stats.
func (c *adminClient) fetch() ([]byte, error) { return c.request(http.MethodGet, "/stats") }

// request sends method path to the admin endpoint, with the bearer token if
// there is one, and returns the body. Statuses other than 200 and those in
// also are errors.
func (c *adminClient) request(method, path string, also ...int) ([]byte, error) {
	req, err := http.NewRequest(method, "http://"+c.admin+path, nil)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("is the daemon running? %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	what := method + " " + path
	switch {
	case resp.StatusCode == http.StatusOK || slices.Contains(also, resp.StatusCode):
		return body, nil
	case resp.StatusCode == http.StatusUnauthorized && c.token == "":
		return nil, fmt.Errorf("%s: %s: the endpoint wants a token; pass --token-file", what, resp.Status)
	case resp.StatusCode == http.StatusUnauthorized:
		return nil, fmt.Errorf("%s: %s: the token was refused", what, resp.Status)
	}
	return nil, fmt.Errorf("%s: %s: %s", what, resp.Status, strings.TrimSpace(string(body)))
}

// snapshot fetches and decodes GET /stats.
func (c *adminClient) snapshot() (node.Snapshot, error) {
	var s node.Snapshot
	body, err := c.fetch()
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(body, &s); err != nil {
		return s, fmt.Errorf("bad answer from %s: %w", c.admin, err)
	}
	return s, nil
}

// watchStats prints one block of rates every interval: the plain,
// scrolling sibling of `switchyard top`, for logs and pipes. An unreachable
// daemon is reported on stderr and retried. It returns when ctx ends (0),
// or after count blocks when count > 0.
func watchStats(ctx context.Context, c *adminClient, stdout, stderr io.Writer, interval time.Duration, count int) int {
	var prev *node.Snapshot
	tick := time.NewTicker(interval)
	defer tick.Stop()
	printed := 0
	for {
		s, err := c.snapshot()
		switch {
		case err != nil:
			fmt.Fprintf(stderr, "%s  %v (retrying every %v)\n", time.Now().Format(time.TimeOnly), err, interval)
			prev = nil
		case prev == nil:
			fmt.Fprintf(stdout, "%s  node %s: first sample taken; rates follow every %v\n",
				s.Time.Local().Format(time.TimeOnly), s.Node, interval)
			prev = &s
		default:
			printRates(stdout, s, computeRates(*prev, s))
			prev = &s
			printed++
			if count > 0 && printed >= count {
				return 0
			}
		}
		select {
		case <-ctx.Done():
			return 0
		case <-tick.C:
		}
	}
}

// printRates writes one --watch block.
func printRates(w io.Writer, s node.Snapshot, r Rates) {
	fmt.Fprintf(w, "%s  node %s  up %s  pool %d/%d buffers  over %.2fs\n", s.Time.Local().Format(time.TimeOnly), s.Node,
		time.Duration(s.Uptime*float64(time.Second)).Round(time.Second), s.Pool.OutstandingBuffers, s.Pool.LimitBuffers, r.Seconds)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "ACTOR\tSTATE\tIN PPS\tIN MBIT/S\tOUT PPS\tOUT MBIT/S\tDROPS/S\tQUEUE\tCAP\tRESTARTS\t")
	for _, a := range r.Actors {
		queue, capacity := "-", "-"
		if a.Capacity > 0 {
			queue, capacity = fmt.Sprint(a.Depth), fmt.Sprint(a.Capacity)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t\n", a.Name, a.State,
			fmtRate(a.InPPS), fmtMbps(a.InMbps), fmtRate(a.OutPPS), fmtMbps(a.OutMbps), fmtRate(a.DropsPerSec),
			queue, capacity, a.Restarts)
	}
	_ = tw.Flush()
	if lines := dropLines(r); len(lines) > 0 {
		fmt.Fprintf(w, "drops/s by reason: %s\n", strings.Join(lines, ", "))
	}
	fmt.Fprintln(w)
}

// printStats writes the per-actor table.
func printStats(w io.Writer, s node.Snapshot) {
	fmt.Fprintf(w, "node %s  up %s  pool %d/%d buffers in use\n", s.Node,
		time.Duration(s.Uptime*float64(time.Second)).Round(time.Second), s.Pool.OutstandingBuffers, s.Pool.LimitBuffers)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "ACTOR\tSTATE\tIN PKTS\tIN BYTES\tIN BATCH\tOUT PKTS\tOUT BYTES\tOUT BATCH\tDROPPED\tQUEUE\tHIGH\tCAP\tRESTARTS\t")
	for _, a := range s.Actors {
		depth, high, capacity := "-", "-", "-"
		if a.Mailbox != nil {
			depth = fmt.Sprint(a.Mailbox.DepthBatches)
			high = fmt.Sprint(a.Mailbox.HighWaterBatches)
			capacity = fmt.Sprintf("%d %s", a.Mailbox.Capacity, a.Mailbox.Policy)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%d\t%s\t%d\t%d\t%s\t%s\t%s\t%d\t\n",
			a.Name, a.State, a.InPackets, humanBytes(a.InBytes), a.InBatches,
			a.OutPackets, humanBytes(a.OutBytes), a.OutBatches, a.DroppedTotal(), depth, high, capacity, a.Restarts)
	}
	_ = tw.Flush()
	var lines []string
	for _, a := range s.Actors {
		reasons := make([]string, 0, len(a.Drops))
		for r := range a.Drops {
			reasons = append(reasons, r)
		}
		sort.Strings(reasons)
		for _, r := range reasons {
			lines = append(lines, fmt.Sprintf("  %-14s %-18s %d", a.Name, r, a.Drops[r]))
		}
	}
	if len(lines) > 0 {
		fmt.Fprintln(w, "drops by reason (packets):")
		fmt.Fprintln(w, strings.Join(lines, "\n"))
	} else {
		fmt.Fprintln(w, "drops by reason: none")
	}
	printPeers(w, s)
	printSessions(w, s)
}

// printSessions writes one line per protocol session the node applied
// (node/session.go): what the peer assigned and what is routed into it.
func printSessions(w io.Writer, s node.Snapshot) {
	for _, si := range s.Sessions {
		fmt.Fprintf(w, "%s: session since %s ago  addresses %v  routes %v  kernel routes %v\n", si.Instance,
			s.Time.Sub(si.Since).Round(time.Second), si.Addresses, si.Routes, si.KernelRoutes)
		refused := make([]string, 0, len(si.Refused))
		for p := range si.Refused {
			refused = append(refused, p)
		}
		sort.Strings(refused)
		for _, p := range refused {
			fmt.Fprintf(w, "  refused %s: %s\n", p, si.Refused[p])
		}
	}
}

// peersInfo is the part of a protocol's stats info that lists peers (the
// WireGuard protocol's shape; other protocols may adopt it).
type peersInfo struct {
	PublicKey  string `json:"public_key"`
	ListenPort int    `json:"listen_port"`
	Peers      []struct {
		PublicKey     string     `json:"public_key"`
		Endpoint      string     `json:"endpoint"`
		LastHandshake *time.Time `json:"last_handshake"`
		RxBytes       uint64     `json:"rx_bytes"`
		TxBytes       uint64     `json:"tx_bytes"`
	} `json:"peers"`
}

// printPeers writes one line per peer of every protocol whose info lists
// peers: like `wg show`, with the handshake's age.
func printPeers(w io.Writer, s node.Snapshot) {
	for _, a := range s.Actors {
		if a.Info == nil {
			continue
		}
		raw, err := json.Marshal(a.Info)
		if err != nil {
			continue
		}
		var info peersInfo
		if json.Unmarshal(raw, &info) != nil || info.Peers == nil {
			continue
		}
		fmt.Fprintf(w, "%s: public key %s, listening on port %d\n", a.Name, info.PublicKey, info.ListenPort)
		for _, p := range info.Peers {
			hs := "never"
			if p.LastHandshake != nil {
				hs = fmt.Sprintf("%s ago", s.Time.Sub(*p.LastHandshake).Round(time.Second))
			}
			endpoint := p.Endpoint
			if endpoint == "" {
				endpoint = "(none yet)"
			}
			fmt.Fprintf(w, "  peer %s  endpoint %s  latest handshake %s  rx %s  tx %s\n",
				p.PublicKey, endpoint, hs, humanBytes(p.RxBytes), humanBytes(p.TxBytes))
		}
	}
}

func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
