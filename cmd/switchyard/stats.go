package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"switchyard/actors/node"
)

// statsTimeout (3 s) bounds one request to the admin endpoint.
const statsTimeout = 3 * time.Second

func runStats(args []string) int {
	fs := flag.NewFlagSet("stats", flag.ContinueOnError)
	admin := fs.String("admin", "127.0.0.1:9190", "admin endpoint of the daemon (host:port)")
	asJSON := fs.Bool("json", false, "print the raw JSON from GET /stats")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	body, err := fetchStats(*admin)
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

func fetchStats(admin string) ([]byte, error) {
	c := http.Client{Timeout: statsTimeout}
	resp, err := c.Get("http://" + admin + "/stats")
	if err != nil {
		return nil, fmt.Errorf("is the daemon running? %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /stats: %s", resp.Status)
	}
	return body, nil
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
