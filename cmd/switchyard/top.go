package main

// `switchyard top`: a terminal view of a running daemon, refreshed every
// --interval.
//
//  1. Every interval the program fetches GET /stats (off the UI loop, in a
//     bubbletea command).
//  2. computeRates turns the previous and the new snapshot into per-actor
//     rates: a pure function, timed by the daemon's clock (Snapshot.Time).
//  3. View renders the rows: rates in and out, drops by reason, the mailbox
//     depth as a bar against its capacity, the queueing delay of the batches
//     delivered since the last refresh (p50/p99 from the mailbox's
//     histogram), restarts and state.
//
// An unreachable daemon does not end it: the error is shown above the last
// data and the fetch is retried every interval. q, Esc or Ctrl-C quits.

import (
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"

	"switchyard/node"
	"switchyard/stats"
)

// mailboxBarWidth (10 cells) is the width of a mailbox depth bar: one cell
// per tenth of the capacity.
const mailboxBarWidth = 10

func runTop(args []string) int {
	fs := flag.NewFlagSet("top", flag.ContinueOnError)
	admin := fs.String("admin", "127.0.0.1:9190", "admin endpoint of the daemon (host:port)")
	tokenFile := fs.String("token-file", "", "file holding the admin bearer token (admin.token_file of the daemon)")
	interval := fs.Duration("interval", time.Second, "time between two refreshes")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *interval < minInterval {
		fmt.Fprintf(os.Stderr, "switchyard top: --interval must be at least %v\n", minInterval)
		return 2
	}
	c, err := newAdminClient(*admin, *tokenFile)
	if err != nil {
		fmt.Fprintf(os.Stderr, "switchyard top: %v\n", err)
		return 1
	}
	m := newTopModel(*admin, *interval, c.snapshot)
	if _, err := tea.NewProgram(m, tea.WithAltScreen()).Run(); err != nil {
		fmt.Fprintf(os.Stderr, "switchyard top: %v\n", err)
		return 1
	}
	return 0
}

// Rates are the per-actor rates between two snapshots.
type Rates struct {
	// Seconds is the time between the snapshots by the daemon's clock; 0
	// when there is no earlier snapshot (the rates are then 0).
	Seconds float64
	Actors  []ActorRate
}

// ActorRate is one actor's rates and current gauges.
type ActorRate struct {
	Name, Kind, State        string
	InPPS, OutPPS            float64 // packets per second
	InMbps, OutMbps          float64 // Mbit/s (10^6 bits) of IP packets
	DropsPerSec              float64 // all reasons
	Drops                    map[string]float64
	Depth, HighWater         int64  // mailbox batches; 0 without a mailbox
	Capacity                 int64  // 0: the actor has no mailbox
	Restarts, RestartsRecent uint64 // in total, and since the previous snapshot
	// WaitP50 and WaitP99 are the queueing delay quantiles (ns, the
	// histogram bucket's upper bound) of the batches the mailbox delivered
	// since the previous snapshot; Waited is how many there were.
	WaitP50, WaitP99 int64
	Waited           uint64
}

// computeRates returns the rates of every actor of cur, in cur's order,
// from the counters' growth since prev. An actor absent from prev, and a
// counter that went down (the daemon restarted), count from zero.
func computeRates(prev, cur node.Snapshot) Rates {
	dt := cur.Time.Sub(prev.Time).Seconds()
	if prev.Time.IsZero() || dt <= 0 {
		dt = 0
	}
	before := make(map[string]int, len(prev.Actors))
	for i, a := range prev.Actors {
		before[a.Name] = i
	}
	per := func(now, then uint64) float64 {
		if dt == 0 {
			return 0
		}
		if now < then { // a reset
			then = 0
		}
		return float64(now-then) / dt
	}
	r := Rates{Seconds: dt, Actors: make([]ActorRate, 0, len(cur.Actors))}
	for _, a := range cur.Actors {
		var p struct {
			inP, outP, inB, outB, restarts uint64
			drops                          map[string]uint64
			waits                          []uint64
		}
		if i, ok := before[a.Name]; ok {
			pa := prev.Actors[i]
			p.inP, p.outP, p.inB, p.outB, p.restarts, p.drops = pa.InPackets, pa.OutPackets, pa.InBytes, pa.OutBytes, pa.Restarts, pa.Drops
			if pa.Mailbox != nil {
				p.waits = pa.Mailbox.QueueDelay
			}
		}
		ar := ActorRate{
			Name: a.Name, Kind: a.Kind, State: a.State,
			InPPS:    per(a.InPackets, p.inP),
			OutPPS:   per(a.OutPackets, p.outP),
			InMbps:   per(a.InBytes, p.inB) * 8 / 1e6,
			OutMbps:  per(a.OutBytes, p.outB) * 8 / 1e6,
			Restarts: a.Restarts,
		}
		if a.Restarts >= p.restarts {
			ar.RestartsRecent = a.Restarts - p.restarts
		} else {
			ar.RestartsRecent = a.Restarts
		}
		for reason, n := range a.Drops {
			if v := per(n, p.drops[reason]); v > 0 {
				if ar.Drops == nil {
					ar.Drops = map[string]float64{}
				}
				ar.Drops[reason] = v
				ar.DropsPerSec += v
			}
		}
		if mb := a.Mailbox; mb != nil {
			ar.Depth, ar.HighWater, ar.Capacity = mb.DepthBatches, mb.HighWaterBatches, mb.Capacity
			if dt > 0 {
				waits := waitsSince(mb.QueueDelay, p.waits)
				ar.WaitP50, ar.WaitP99 = stats.DelayQuantile(waits, 0.5), stats.DelayQuantile(waits, 0.99)
				for _, n := range waits {
					ar.Waited += n
				}
			}
		}
		r.Actors = append(r.Actors, ar)
	}
	return r
}

// waitsSince is the queueing delay histogram of the batches delivered
// between two snapshots' histograms; the whole of cur when a bucket went
// down (the daemon or the actor's host restarted).
func waitsSince(cur, prev []uint64) []uint64 {
	out := make([]uint64, len(cur))
	for i, n := range cur {
		if i < len(prev) {
			if n < prev[i] {
				return append(out[:0], cur...)
			}
			n -= prev[i]
		}
		out[i] = n
	}
	return out
}

// fmtWait formats a queueing delay quantile (ns): 1µs, 512µs, 8.4ms, 1.07s.
func fmtWait(ns int64) string {
	switch d := float64(ns); {
	case d < 1e6:
		return fmt.Sprintf("%.0fµs", d/1e3)
	case d < 1e9:
		return strings.TrimSuffix(fmt.Sprintf("%.1f", d/1e6), ".0") + "ms"
	default:
		return fmt.Sprintf("%.2fs", d/1e9)
	}
}

// waitColumn is the WAIT P50/P99 cell: "-" without a mailbox, "…" without
// rates, "idle" when nothing was delivered since the last refresh.
func waitColumn(a ActorRate, haveRates bool) string {
	switch {
	case a.Capacity <= 0:
		return "-"
	case !haveRates:
		return "…"
	case a.Waited == 0:
		return "idle"
	}
	return fmtWait(a.WaitP50) + "/" + fmtWait(a.WaitP99)
}

// fmtRate formats a per-second rate compactly: 0, 3.25, 412.0, 12.3k, 1.21M.
func fmtRate(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	case v < 1e3:
		return fmt.Sprintf("%.1f", v)
	case v < 1e6:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.2fM", v/1e6)
}

// fmtMbps formats Mbit/s: 0, <0.01, 0.52, 941.3.
func fmtMbps(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v < 0.01:
		return "<0.01"
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

// dropLines lists the drop rates by actor and reason: "router no_route
// 1.00/s", actors in snapshot order, reasons sorted.
func dropLines(r Rates) []string {
	var out []string
	for _, a := range r.Actors {
		reasons := make([]string, 0, len(a.Drops))
		for reason := range a.Drops {
			reasons = append(reasons, reason)
		}
		sort.Strings(reasons)
		for _, reason := range reasons {
			out = append(out, fmt.Sprintf("%s %s %s/s", a.Name, reason, fmtRate(a.Drops[reason])))
		}
	}
	return out
}

// mailboxBar draws depth against capacity: "[###.......]  31/100". A
// non-empty mailbox shows at least one cell.
func mailboxBar(depth, capacity int64) string {
	if capacity <= 0 {
		return "-"
	}
	depth = max(depth, 0)
	filled := int(math.Round(float64(depth) / float64(capacity) * mailboxBarWidth))
	if depth > 0 && filled == 0 {
		filled = 1
	}
	filled = min(filled, mailboxBarWidth)
	return fmt.Sprintf("[%s%s] %d/%d", strings.Repeat("#", filled), strings.Repeat(".", mailboxBarWidth-filled), depth, capacity)
}

// topModel is the bubbletea model of `switchyard top`.
type topModel struct {
	admin    string
	interval time.Duration
	fetch    func() (node.Snapshot, error)

	cur, prev *node.Snapshot // the latest and the one before
	rates     Rates
	err       error     // the last fetch's error, nil after a success
	errAt     time.Time // when it happened
	width     int
}

// Messages of the update loop.
type (
	snapMsg struct {
		snap node.Snapshot
		err  error
		at   time.Time
	}
	tickMsg struct{}
)

func newTopModel(admin string, interval time.Duration, fetch func() (node.Snapshot, error)) topModel {
	return topModel{admin: admin, interval: interval, fetch: fetch}
}

func (m topModel) fetchCmd() tea.Cmd {
	return func() tea.Msg {
		s, err := m.fetch()
		return snapMsg{snap: s, err: err, at: time.Now()}
	}
}

// Init implements tea.Model: the first fetch at once.
func (m topModel) Init() tea.Cmd { return m.fetchCmd() }

// Update implements tea.Model.
func (m topModel) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.KeyMsg:
		switch msg.String() {
		case "q", "Q", "esc", "ctrl+c":
			return m, tea.Quit
		}
	case tea.WindowSizeMsg:
		m.width = msg.Width
	case snapMsg:
		if msg.err != nil {
			m.err, m.errAt = msg.err, msg.at
		} else {
			m.err = nil
			s := msg.snap
			m.prev, m.cur = m.cur, &s
			if m.prev != nil {
				m.rates = computeRates(*m.prev, s)
			} else {
				m.rates = computeRates(node.Snapshot{}, s)
			}
		}
		return m, tea.Tick(m.interval, func(time.Time) tea.Msg { return tickMsg{} })
	case tickMsg:
		return m, m.fetchCmd()
	}
	return m, nil
}

var (
	topTitle = lipgloss.NewStyle().Bold(true)
	topError = lipgloss.NewStyle().Foreground(lipgloss.Color("9")).Bold(true)
	topDown  = lipgloss.NewStyle().Foreground(lipgloss.Color("9"))
	topDim   = lipgloss.NewStyle().Faint(true)
)

// View implements tea.Model.
func (m topModel) View() string {
	var b strings.Builder
	title := fmt.Sprintf("switchyard top  %s  every %v", m.admin, m.interval)
	if s := m.cur; s != nil {
		title = fmt.Sprintf("switchyard top  node %s  up %s  pool %d/%d buffers  %s  every %v", s.Node,
			time.Duration(s.Uptime*float64(time.Second)).Round(time.Second), s.Pool.OutstandingBuffers,
			s.Pool.LimitBuffers, m.admin, m.interval)
	}
	b.WriteString(topTitle.Render(title) + "\n")
	if m.err != nil {
		line := fmt.Sprintf("! %s  %v; retrying every %v", m.errAt.Format(time.TimeOnly), m.err, m.interval)
		if m.cur != nil {
			line += fmt.Sprintf(" (showing data from %s)", m.cur.Time.Local().Format(time.TimeOnly))
		}
		b.WriteString(topError.Render(line) + "\n")
	} else {
		b.WriteString("\n")
	}
	if m.cur == nil {
		b.WriteString("waiting for the first answer…\n")
		b.WriteString(topDim.Render("q: quit") + "\n")
		return b.String()
	}
	writeTopTable(&b, m.rates, m.prev != nil)
	b.WriteString("\n")
	if lines := dropLines(m.rates); len(lines) > 0 {
		b.WriteString("drops/s by reason:\n")
		for _, l := range lines {
			b.WriteString("  " + l + "\n")
		}
	} else if m.prev != nil {
		b.WriteString("drops/s by reason: none\n")
	}
	b.WriteString("\n" + topDim.Render("q: quit") + "\n")
	return b.String()
}

// writeTopTable writes the per-actor rows; without rates (one snapshot so
// far) the rate columns show "…".
func writeTopTable(w io.Writer, r Rates, haveRates bool) {
	var tb strings.Builder
	tw := tabwriter.NewWriter(&tb, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ACTOR\tSTATE\tIN PPS\tIN MBIT/S\tOUT PPS\tOUT MBIT/S\tDROPS/S\tMAILBOX (BATCHES)\tHIGH\tWAIT P50/P99\tRESTARTS")
	rate := fmtRate
	mbps := fmtMbps
	if !haveRates {
		rate = func(float64) string { return "…" }
		mbps = rate
	}
	for _, a := range r.Actors {
		high := "-"
		if a.Capacity > 0 {
			high = fmt.Sprint(a.HighWater)
		}
		restarts := fmt.Sprint(a.Restarts)
		if a.RestartsRecent > 0 {
			restarts += fmt.Sprintf(" (+%d)", a.RestartsRecent)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.Name, a.State,
			rate(a.InPPS), mbps(a.InMbps), rate(a.OutPPS), mbps(a.OutMbps), rate(a.DropsPerSec),
			mailboxBar(a.Depth, a.Capacity), high, waitColumn(a, haveRates), restarts)
	}
	_ = tw.Flush()
	lines := strings.Split(strings.TrimRight(tb.String(), "\n"), "\n")
	for i, l := range lines {
		switch {
		case i == 0:
			l = topTitle.Render(l)
		case r.Actors[i-1].State != "running":
			l = topDown.Render(l)
		}
		fmt.Fprintln(w, l)
	}
}
