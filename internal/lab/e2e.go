package lab

// The end-to-end cases of `make bench` (`switchyard bench e2e`): iperf3
// between two namespaces over
//
//  1. the veth alone — the kernel's ceiling on this machine;
//  2. two wireguard-go binaries — the reference a user would pick instead;
//     and two bare TUN↔UDP forwarders (forward.go) — the machine's limit
//     for a tunnel on the same libraries, what the udp pairs compare with;
//  3. two switchyard daemons, udp protocol, batch 128 and batch 1;
//  4. the same with the udp protocol out of process on both sides (a
//     spawned protocol host per daemon), batch 128 and batch 1 — the second
//     is the per-packet IPC design the project replaces;
//  5. two switchyard daemons, wireguard protocol, batch 128, in process and
//     out of process;
//
// and a UDP flood above capacity through the udp tunnel. Every case builds
// its own lab (fresh namespaces and daemons) and removes it before the next;
// a run measures the receiver's throughput and the CPU time each daemon used
// over it (utime + stime from /proc/PID/stat).

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"switchyard/stats"
)

// CaseKind is what carries the traffic of a case.
type CaseKind int

// The kinds of end-to-end case.
const (
	KindVeth          CaseKind = iota // iperf3 straight over the veth: the ceiling
	KindWireGuardGo                   // two wireguard-go binaries: the reference
	KindUDP                           // two switchyard daemons, udp protocol
	KindWireGuard                     // two switchyard daemons, wireguard protocol
	KindBare                          // two bare forwarders (Forward): the reference of the udp pairs
	KindOCRef                         // ocserv and openconnect: the SSL VPN reference (ocbench.go)
	KindOCClient                      // switchyard openconnect client against ocserv
	KindOCServer                      // openconnect against switchyard's openconnect server
	KindOCPair                        // switchyard openconnect client against switchyard's server
	KindOpenVPNRef                    // two openvpn 2.6 processes: the OpenVPN reference (openvpn.go)
	KindOpenVPNClient                 // switchyard's openvpn client against an openvpn 2.6 server
	KindOpenVPN                       // two switchyard daemons, openvpn server and client
	// IPsec (issue 17), PSK, AES-GCM-256 ESP in UDP:
	KindIPsecStrongSwan           // two strongSwan charons with kernel-libipsec: the reference pair
	KindIPsecSwitchyardStrongSwan // a switchyard daemon (ipsec initiator) ↔ strongSwan
	KindIPsecPair                 // two switchyard daemons, ipsec protocol
)

// Case is one configuration of the end-to-end benchmark.
type Case struct {
	Key   string   `json:"key"`   // stable identifier: "veth", "udp-b128", …
	Label string   `json:"label"` // what the report prints
	Kind  CaseKind `json:"-"`
	Batch int      `json:"batch,omitempty"` // switchyard batch.max_packets
	// OutOfProcess runs each daemon's protocol on a protocol host the
	// daemon spawns (OutOfProcess), on its own loopback.
	OutOfProcess bool `json:"out_of_process,omitempty"`
	// OneSide limits OutOfProcess to side a: the data crosses one process
	// boundary per direction instead of two.
	OneSide bool `json:"one_side,omitempty"`
	// Transport is how batches cross to the hosts: "shm" (the default) or
	// "grpc".
	Transport string `json:"transport,omitempty"`
	// InProcess is, for an out-of-process case, the key of the in-process
	// case it is compared with: the report shows the ratio of the medians
	// (the goal is ≥ 0.8 at batch 128).
	InProcess string `json:"in_process,omitempty"`
	// Flood makes the case one iperf3 UDP run at a fixed offered rate above
	// capacity instead of the TCP runs.
	Flood bool `json:"flood,omitempty"`
	// Ref is the key of the reference case this one is compared with
	// (the bare forwarder pair for udp, the wireguard-go pair for
	// wireguard): the harness runs their rounds interleaved in one run and
	// reports each round's ratio.
	Ref string `json:"ref,omitempty"`
	// Latency adds the RTT measurement (latency.go) to each round.
	Latency bool `json:"latency,omitempty"`
	// Policy, if set, is the mailbox policy of every actor of the
	// switchyard daemons ("codel"), with its defaults.
	Policy string `json:"policy,omitempty"`
	// PoolBuffers, if set, is batch.pool_buffers of the switchyard daemons
	// (issue 20: what a smaller pool costs in throughput and saves in RSS).
	PoolBuffers int `json:"pool_buffers,omitempty"`
}

// Cases are the end-to-end cases, in report order: each out-of-process
// case right after its in-process reference, so both meet the same load.
// A case with a Ref runs interleaved with its reference (Groups).
func Cases() []Case {
	return []Case{
		{Key: "veth", Label: "kernel veth alone (ceiling)", Kind: KindVeth, Latency: true},
		{Key: "wireguard-go", Label: "wireguard-go pair (reference)", Kind: KindWireGuardGo, Latency: true},
		{Key: "bare", Label: "bare TUN↔UDP forwarder pair (reference)", Kind: KindBare, Latency: true},
		{Key: "udp-b128", Label: "switchyard udp, in-process, batch 128", Kind: KindUDP, Batch: 128, Ref: "bare", Latency: true},
		{Key: "udp-oop-b128", Label: "switchyard udp, out of process (shm), batch 128", Kind: KindUDP, Batch: 128,
			OutOfProcess: true, InProcess: "udp-b128"},
		{Key: "udp-oop1-b128", Label: "switchyard udp, out of process (shm) on side a only, batch 128", Kind: KindUDP, Batch: 128,
			OutOfProcess: true, OneSide: true, InProcess: "udp-b128"},
		{Key: "udp-grpc-b128", Label: "switchyard udp, out of process (grpc), batch 128", Kind: KindUDP, Batch: 128,
			OutOfProcess: true, Transport: "grpc", InProcess: "udp-b128"},
		{Key: "udp-grpc1-b128", Label: "switchyard udp, out of process (grpc) on side a only, batch 128", Kind: KindUDP, Batch: 128,
			OutOfProcess: true, OneSide: true, Transport: "grpc", InProcess: "udp-b128"},
		{Key: "udp-codel-b128", Label: "switchyard udp, in-process, batch 128, codel mailboxes", Kind: KindUDP, Batch: 128,
			Ref: "bare", Latency: true, Policy: "codel"},
		{Key: "udp-pool1k-b128", Label: "switchyard udp, in-process, batch 128, pool_buffers 1024 (64 MiB)", Kind: KindUDP, Batch: 128,
			Ref: "bare", PoolBuffers: 1024},
		{Key: "udp-b1", Label: "switchyard udp, in-process, batch 1", Kind: KindUDP, Batch: 1, Ref: "bare"},
		{Key: "udp-oop-b1", Label: "switchyard udp, out of process (shm), batch 1", Kind: KindUDP, Batch: 1,
			OutOfProcess: true, InProcess: "udp-b1"},
		{Key: "udp-grpc-b1", Label: "switchyard udp, out of process (grpc), batch 1: one message per packet", Kind: KindUDP, Batch: 1,
			OutOfProcess: true, Transport: "grpc", InProcess: "udp-b1"},
		{Key: "wireguard-b128", Label: "switchyard wireguard, in-process, batch 128", Kind: KindWireGuard, Batch: 128,
			Ref: "wireguard-go", Latency: true},
		{Key: "wireguard-oop-b128", Label: "switchyard wireguard, out of process (shm), batch 128", Kind: KindWireGuard, Batch: 128,
			OutOfProcess: true, InProcess: "wireguard-b128"},
		{Key: "openvpn", Label: "openvpn 2.6 pair, AES-256-GCM, tls-crypt, DCO off (reference)", Kind: KindOpenVPNRef},
		{Key: "openvpn-sy-client", Label: "switchyard openvpn client ↔ openvpn 2.6 server", Kind: KindOpenVPNClient, Batch: 128, Ref: "openvpn"},
		{Key: "openvpn-sy-pair", Label: "switchyard openvpn server ↔ switchyard openvpn client", Kind: KindOpenVPN, Batch: 128, Ref: "openvpn"},
		{Key: "ipsec-strongswan", Label: "strongSwan ↔ strongSwan, kernel-libipsec, PSK, AES-GCM-256 (reference)", Kind: KindIPsecStrongSwan},
		{Key: "ipsec-sy-strongswan", Label: "switchyard ipsec ↔ strongSwan, PSK, AES-GCM-256", Kind: KindIPsecSwitchyardStrongSwan, Ref: "ipsec-strongswan"},
		{Key: "ipsec-b128", Label: "switchyard ipsec pair, in-process, batch 128, PSK, AES-GCM-256", Kind: KindIPsecPair, Batch: 128, Ref: "ipsec-strongswan"},
		{Key: "udp-flood", Label: "switchyard udp, in-process, batch 128, UDP flood", Kind: KindUDP, Batch: 128, Flood: true},
		{Key: "openconnect-ref", Label: "ocserv ↔ openconnect (SSL VPN reference pair)", Kind: KindOCRef},
		{Key: "openconnect-client", Label: "switchyard openconnect client ↔ ocserv", Kind: KindOCClient, Ref: "openconnect-ref"},
		{Key: "openconnect-server", Label: "openconnect ↔ switchyard openconnect server", Kind: KindOCServer, Ref: "openconnect-ref"},
		{Key: "openconnect-pair", Label: "switchyard openconnect client ↔ switchyard server", Kind: KindOCPair, Ref: "openconnect-ref"},
	}
}

// Groups splits cases (in order) into the groups the harness runs
// together, their rounds interleaved: each reference with the cases whose
// Ref it is, at the place of its first member; every other case alone.
// A case whose reference is not among cases runs alone.
func Groups(cases []Case) [][]Case {
	selected := map[string]bool{}
	for _, c := range cases {
		selected[c.Key] = true
	}
	head := func(c Case) string { // the key of the group c belongs to
		if c.Ref != "" && selected[c.Ref] {
			return c.Ref
		}
		return c.Key
	}
	index := map[string]int{}
	var groups [][]Case
	for _, c := range cases {
		h := head(c)
		i, ok := index[h]
		if !ok {
			i = len(groups)
			index[h] = i
			groups = append(groups, nil)
		}
		if c.Key == h { // the reference leads its group
			groups[i] = append([]Case{c}, groups[i]...)
		} else {
			groups[i] = append(groups[i], c)
		}
	}
	return groups
}

// NotBuilt lists the configurations that do not exist yet, with the reason
// the report prints in place of numbers. Every case of issue 4 is built.
func NotBuilt() []Case { return nil }

// NotBuiltReason is what the report prints for NotBuilt rows.
const NotBuiltReason = "not built yet (issue 4)"

// InProcessRatio is c's median over its in-process reference's, from the
// medians of a run by case key; 0 when c has no reference or either is
// missing.
func InProcessRatio(c Case, medians map[string]float64) float64 {
	if c.InProcess == "" {
		return 0
	}
	ref, own := medians[c.InProcess], medians[c.Key]
	if ref <= 0 || own <= 0 {
		return 0
	}
	return own / ref
}

// Flood defaults: a fixed offered rate above what the tunnel carries.
const (
	// DefaultFloodRate (4 Gbit/s) is iperf3's -b: above every tunnel's
	// capacity on a 2-core machine, so the daemons must drop.
	DefaultFloodRate = "4G"

	// DefaultFloodLen (1392 bytes) is iperf3's -l: the largest UDP payload
	// whose IPv4 packet (20 + 8 + 1392 = 1420) fits the TUN's MTU, so no
	// datagram is fragmented.
	DefaultFloodLen = 1392

	// DefaultFloodDuration (5 s) is the flood's length.
	DefaultFloodDuration = 5 * time.Second

	// floodDrain (5 s) is how long to wait after the flood for the daemons'
	// mailboxes to empty before reading the final counters.
	floodDrain = 5 * time.Second
)

// E2EOptions configure RunCase.
type E2EOptions struct {
	Binary      string        // switchyard binary for the daemons (build it without -race)
	Tools       string        // switchyard-lab binary of the traffic tools
	WireGuardGo string        // wireguard-go binary (BuildWireGuardGo), for KindWireGuardGo
	Runs        int           // TCP runs per case; 0 means 3
	Duration    time.Duration // per TCP run; 0 means 10 s

	FloodRate     string        // iperf3 -b; "" means DefaultFloodRate
	FloodLen      int           // iperf3 -l; 0 means DefaultFloodLen
	FloodDuration time.Duration // 0 means DefaultFloodDuration

	// Profile, if set, is a file that receives a CPU profile of side a's
	// switchyard daemon taken during the first run (from the admin
	// endpoint's /debug/pprof/profile).
	Profile string

	// Progress, if set, is told when each phase of a case starts.
	Progress func(Event)
	// Log, if set, receives notes (a profile written, a retry).
	Log func(format string, args ...any)
}

func (o *E2EOptions) defaults() {
	if o.Runs <= 0 {
		o.Runs = 3
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.FloodRate == "" {
		o.FloodRate = DefaultFloodRate
	}
	if o.FloodLen <= 0 {
		o.FloodLen = DefaultFloodLen
	}
	if o.FloodDuration <= 0 {
		o.FloodDuration = DefaultFloodDuration
	}
	if o.Progress == nil {
		o.Progress = func(Event) {}
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
}

// Phase is where a case is.
type Phase string

// The phases of a case, in order.
const (
	PhaseSetup Phase = "setup" // namespaces, daemons, first ping
	PhaseRun   Phase = "run"   // one TCP run (Event.Run of Event.Runs)
	PhaseFlood Phase = "flood" // the UDP flood
	PhaseDone  Phase = "done"  // torn down
)

// Event is a progress report of RunCase.
type Event struct {
	Case      Case
	Phase     Phase
	Run, Runs int // PhaseRun: 1-based run number and count
	Gbps      float64
}

// RunResult is one TCP run: iperf3's numbers and the CPU seconds each
// daemon used over it.
type RunResult struct {
	IperfResult
	CPU map[string]float64 `json:"cpu_seconds,omitempty"` // process → seconds
}

// ProcResult is one daemon of a case.
type ProcResult struct {
	Name string `json:"name"` // "switchyard a", "wireguard-go b"
	// CPUPerGbit is the CPU seconds the process used per gigabit received,
	// over the runs.
	CPUPerGbit Summary `json:"cpu_s_per_gbit"`
	// PeakRSS is VmHWM at the end of the case, in bytes.
	PeakRSS int64 `json:"peak_rss_bytes"`
}

// ActorDrops are the counters of one actor of one daemon over the flood.
type ActorDrops struct {
	Daemon     string            `json:"daemon"`
	Actor      string            `json:"actor"`
	InPackets  uint64            `json:"in_packets"`
	OutPackets uint64            `json:"out_packets"`
	Drops      map[string]uint64 `json:"drops,omitempty"`
	HighWater  int64             `json:"mailbox_high_water_batches,omitempty"`
	Capacity   int64             `json:"mailbox_capacity_batches,omitempty"`
	// QueueDelay is the mailbox's queueing delay histogram
	// (stats.MailboxSnapshot.QueueDelay; after diffActor, of the batches
	// delivered in between), and WaitP50/WaitP99 its quantiles in ns
	// (stats.DelayQuantile: the bucket's upper bound).
	QueueDelay []uint64 `json:"queue_delay_counts,omitempty"`
	WaitP50    int64    `json:"queue_delay_p50_ns,omitempty"`
	WaitP99    int64    `json:"queue_delay_p99_ns,omitempty"`
}

// Dropped sums the actor's drops.
func (a ActorDrops) Dropped() uint64 {
	var n uint64
	for _, v := range a.Drops {
		n += v
	}
	return n
}

// FloodResult is the UDP flood of a case.
type FloodResult struct {
	Rate     string  `json:"rate"`       // iperf3 -b
	Len      int     `json:"len"`        // iperf3 -l
	Duration float64 `json:"duration_s"` // iperf3 -t
	IperfResult
	CPU    map[string]float64 `json:"cpu_seconds,omitempty"` // process → seconds over the flood
	Actors []ActorDrops       `json:"actors"`
}

// CaseResult is the outcome of one case.
type CaseResult struct {
	Case
	Runs  []RunResult  `json:"runs,omitempty"`
	Gbps  Summary      `json:"gbit_s"`
	Procs []ProcResult `json:"processes,omitempty"`
	Flood *FloodResult `json:"flood,omitempty"`
	// Latency is the RTT of each round, idle and loaded (Case.Latency).
	Latency *Latency `json:"latency,omitempty"`
}

// benchProc is a process whose CPU time and memory a case reports.
type benchProc struct {
	name   string
	pid    int
	daemon *Daemon // nil for wireguard-go
}

// RunCase builds a lab for c, measures it (o.Runs rounds) and removes the
// lab. It needs root and iperf3 (and wg for KindWireGuardGo).
func RunCase(ctx context.Context, c Case, o E2EOptions) (_ CaseResult, err error) {
	r, err := StartCase(ctx, c, o)
	if err != nil {
		return CaseResult{Case: c}, err
	}
	defer func() {
		if cerr := r.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	for range r.Rounds() {
		if err := r.Round(ctx); err != nil {
			return r.Result(), err
		}
	}
	return r.Result(), nil
}

// CaseRun is a case whose lab is up, between StartCase and Close: the
// harness runs the rounds of the cases of one comparison interleaved (A B
// A B …), each case in its own lab, so that all meet the same load.
type CaseRun struct {
	c      Case
	o      E2EOptions
	l      *Lab
	procs  []benchProc
	target netip.Addr
	stops  []func()
	res    CaseResult
	rounds int // done
}

// StartCase builds c's lab and starts what carries its traffic and the
// iperf3 server. On error everything it made is removed.
func StartCase(ctx context.Context, c Case, o E2EOptions) (_ *CaseRun, err error) {
	o.defaults()
	need := []string{"iperf3"}
	switch c.Kind {
	case KindOCRef:
		need = append(need, "ocserv", "ocpasswd", "openconnect")
	case KindOCClient:
		need = append(need, "ocserv", "ocpasswd")
	case KindOCServer:
		need = append(need, "ocpasswd", "openconnect")
	case KindOCPair:
		need = append(need, "ocpasswd")
	case KindOpenVPNRef, KindOpenVPNClient, KindOpenVPN:
		need = append(need, "openvpn")
	}
	if c.Kind == KindWireGuardGo {
		need = append(need, "wg")
		if o.WireGuardGo == "" {
			return nil, errors.New("no wireguard-go binary given")
		}
	}
	for _, tool := range need {
		if err := NeedTool(tool); err != nil {
			return nil, err
		}
	}
	o.Progress(Event{Case: c, Phase: PhaseSetup})
	l, err := New(ctx, Options{Binary: o.Binary, Tools: o.Tools})
	if err != nil {
		o.Progress(Event{Case: c, Phase: PhaseDone})
		return nil, err
	}
	r := &CaseRun{c: c, o: o, l: l, res: CaseResult{Case: c}}
	defer func() {
		if err != nil {
			_ = r.Close()
		}
	}()
	var more []func()
	r.procs, r.target, more, err = startCase(ctx, l, c, o)
	r.stops = append(r.stops, more...)
	if err != nil {
		return nil, err
	}
	if err := l.PingUntil(ctx, l.A, r.target, 10*time.Second); err != nil {
		return nil, err
	}
	stop, err := l.IperfServer(ctx, l.B, r.target)
	if err != nil {
		return nil, err
	}
	r.stops = append(r.stops, stop)
	return r, nil
}

// Rounds is how many rounds the case takes: 1 for a flood, o.Runs for the
// TCP runs.
func (r *CaseRun) Rounds() int {
	if r.c.Flood {
		return 1
	}
	return r.o.Runs
}

// Round measures the case once: the flood, or the idle pings (a latency
// case) and one TCP run with the loaded pings beside it.
func (r *CaseRun) Round(ctx context.Context) error {
	c, o, l := r.c, r.o, r.l
	r.rounds++
	if c.Flood {
		o.Progress(Event{Case: c, Phase: PhaseFlood})
		f, err := flood(ctx, l, r.target, r.procs, o)
		if err != nil {
			return err
		}
		r.res.Flood = f
		return nil
	}
	o.Progress(Event{Case: c, Phase: PhaseRun, Run: r.rounds, Runs: o.Runs})
	var loaded chan RTTSample
	var pingErr error
	if c.Latency {
		idle, err := l.PingRTTs(ctx, l.A, r.target, LatencyPings, LatencyInterval)
		if err != nil {
			return fmt.Errorf("run %d: idle ping: %w", r.rounds, err)
		}
		if r.res.Latency == nil {
			r.res.Latency = &Latency{}
		}
		r.res.Latency.Idle = append(r.res.Latency.Idle, idle)
		if n := loadedPings(o.Duration); n > 0 {
			loaded = make(chan RTTSample, 1)
			go func() {
				select {
				case <-time.After(LatencyWarmup):
				case <-ctx.Done():
				}
				s, err := l.PingRTTs(ctx, l.A, r.target, n, LatencyInterval)
				if err != nil {
					pingErr = err
				}
				loaded <- s
			}()
		}
	}
	run, err := measuredRun(ctx, l, r.target, r.procs, o, r.rounds == 1)
	if loaded != nil {
		s := <-loaded
		if err == nil && pingErr != nil {
			err = fmt.Errorf("loaded ping: %w", pingErr)
		}
		r.res.Latency.Loaded = append(r.res.Latency.Loaded, s)
	}
	if err != nil {
		return fmt.Errorf("run %d: %w", r.rounds, err)
	}
	r.res.Runs = append(r.res.Runs, run)
	return nil
}

// Result summarises the rounds so far: throughput, and per process the CPU
// per Gbit and the peak RSS.
func (r *CaseRun) Result() CaseResult {
	res := r.res
	if f := res.Flood; f != nil {
		res.Gbps = Summarize([]float64{f.Gbps})
	} else {
		var gbps []float64
		for _, run := range res.Runs {
			gbps = append(gbps, run.Gbps)
		}
		res.Gbps = Summarize(gbps)
	}
	res.Procs = nil
	for _, p := range r.procs {
		pr := ProcResult{Name: p.name}
		var per []float64
		for _, run := range res.Runs {
			per = append(per, CPUPerGbit(run.CPU[p.name], run.Bytes))
		}
		if f := res.Flood; f != nil {
			per = append(per, CPUPerGbit(f.CPU[p.name], f.Bytes))
		}
		pr.CPUPerGbit = Summarize(per)
		if m, err := ProcMemory(p.pid); err == nil {
			pr.PeakRSS = m.HWM
		} else {
			r.o.Log("%s: peak RSS: %v", p.name, err)
		}
		res.Procs = append(res.Procs, pr)
	}
	return res
}

// Close stops what the case started and removes its lab.
func (r *CaseRun) Close() error {
	for i := len(r.stops) - 1; i >= 0; i-- {
		r.stops[i]()
	}
	r.stops = nil
	err := r.l.Close()
	r.o.Progress(Event{Case: r.c, Phase: PhaseDone})
	return err
}

// startCase starts what carries c's traffic and returns the processes to
// measure, the address iperf3 targets in namespace b, and what to stop.
func startCase(ctx context.Context, l *Lab, c Case, o E2EOptions) (procs []benchProc, target netip.Addr, stops []func(), err error) {
	switch c.Kind {
	case KindVeth:
		return nil, l.B.Veth4, nil, nil
	case KindUDP:
		for _, s := range []*Side{l.A, l.B} {
			cfg := l.DefaultConfig(s)
			cfg.LogLevel, cfg.Batch, cfg.Rejects = "warn", c.Batch, nil
			if c.Policy != "" {
				cfg.Mailbox.Policy = c.Policy // every actor's: the protocols inherit it
			}
			if c.PoolBuffers > 0 {
				cfg.PoolBuffers = c.PoolBuffers
			}
			if c.OutOfProcess && (!c.OneSide || s == l.A) {
				cfg = OutOfProcessOver(cfg, c.Transport)
			}
			d, err := l.StartDaemon(ctx, s, cfg)
			if err != nil {
				return procs, target, nil, err
			}
			procs = append(procs, benchProc{name: "switchyard " + s.Label, pid: d.Pid(), daemon: d})
		}
		procs, err = withHosts(ctx, c, procs)
		return procs, l.B.TUN4, nil, err
	case KindWireGuard, KindWireGuardGo:
		return startWireGuardPair(ctx, l, c, o)
	case KindBare:
		for _, s := range [][2]*Side{{l.A, l.B}, {l.B, l.A}} {
			f, err := l.StartForwarder(ctx, s[0], s[1])
			if err != nil {
				return procs, target, stops, err
			}
			stops = append(stops, f.Stop)
			procs = append(procs, benchProc{name: "forward " + s[0].Label, pid: f.Pid()})
		}
		return procs, l.B.TUN4, stops, nil
	case KindOCRef, KindOCClient, KindOCServer, KindOCPair:
		return startOpenconnectPair(ctx, l, c)
	case KindOpenVPNRef, KindOpenVPNClient, KindOpenVPN:
		return startOpenVPNCase(ctx, l, c)
	case KindIPsecStrongSwan, KindIPsecSwitchyardStrongSwan, KindIPsecPair:
		procs, stops, err := startIPsecCase(ctx, l, c)
		return procs, l.B.TUN4, stops, err
	}
	return nil, target, nil, fmt.Errorf("case %s: unknown kind %d", c.Key, c.Kind)
}

// startWireGuardPair starts two WireGuard ends, switchyard daemons or
// wireguard-go binaries, each the other's peer.
func startWireGuardPair(ctx context.Context, l *Lab, c Case, o E2EOptions) (procs []benchProc, target netip.Addr, stops []func(), err error) {
	ka, err := NewWGKey()
	if err != nil {
		return nil, target, nil, err
	}
	kb, err := NewWGKey()
	if err != nil {
		return nil, target, nil, err
	}
	fa, err := l.WriteKeyFile("a.key", ka)
	if err != nil {
		return nil, target, nil, err
	}
	fb, err := l.WriteKeyFile("b.key", kb)
	if err != nil {
		return nil, target, nil, err
	}
	peers := map[*Side]WGPeer{
		l.A: {PublicKey: kb.Public, Endpoint: endpointOf(l.B)},
		l.B: {PublicKey: ka.Public, Endpoint: endpointOf(l.A)},
	}
	keys := map[*Side]string{l.A: fa, l.B: fb}
	for _, s := range []*Side{l.A, l.B} {
		if c.Kind == KindWireGuard {
			yaml := l.WireGuardYAML(s, keys[s], peers[s], "warn")
			if c.OutOfProcess {
				yaml = l.WireGuardOutOfProcessYAML(s, keys[s], peers[s], "warn")
			}
			d, err := l.StartDaemonYAML(ctx, s, yaml)
			if err != nil {
				return procs, target, stops, err
			}
			procs = append(procs, benchProc{name: "switchyard " + s.Label, pid: d.Pid(), daemon: d})
			continue
		}
		g, err := l.StartWireGuardGo(ctx, o.WireGuardGo, s, keys[s], peers[s])
		if err != nil {
			return procs, target, stops, err
		}
		stops = append(stops, g.Stop)
		procs = append(procs, benchProc{name: "wireguard-go " + s.Label, pid: g.cmd.Process.Pid})
	}
	procs, err = withHosts(ctx, c, procs)
	return procs, l.B.TUN4, stops, err
}

// hostStartTimeout (10 s) bounds the wait for a daemon's spawned host to
// appear: the daemon starts it right after its own start.
const hostStartTimeout = 10 * time.Second

// withHosts adds, for an out-of-process case, each daemon's spawned host to
// the processes measured ("switchyard host-a"): the CPU a case costs is
// both processes'.
func withHosts(ctx context.Context, c Case, procs []benchProc) ([]benchProc, error) {
	if !c.OutOfProcess {
		return procs, nil
	}
	for _, p := range procs {
		if p.daemon == nil || (c.OneSide && p.daemon.Side.Label != "a") {
			continue
		}
		pid, err := p.daemon.WaitHostPid(ctx, HostName, 0, hostStartTimeout)
		if err != nil {
			return procs, fmt.Errorf("%s: spawned host: %w", p.name, err)
		}
		procs = append(procs, benchProc{name: "switchyard host-" + p.daemon.Side.Label, pid: pid})
	}
	return procs, nil
}

func endpointOf(s *Side) netip.AddrPort { return netip.AddrPortFrom(s.Veth4, WGPort) }

// cpuOf reads the CPU seconds of every process.
func cpuOf(procs []benchProc) (map[string]float64, error) {
	m := make(map[string]float64, len(procs))
	for _, p := range procs {
		v, err := ProcCPU(p.pid)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.name, err)
		}
		m[p.name] = v
	}
	return m, nil
}

// measuredRun is one iperf3 TCP run from a to target with the CPU time of
// every process read before and after it.
func measuredRun(ctx context.Context, l *Lab, target netip.Addr, procs []benchProc, o E2EOptions, first bool) (RunResult, error) {
	var prof chan error
	if first && o.Profile != "" && len(procs) > 0 && procs[0].daemon != nil {
		prof = make(chan error, 1)
		go func() {
			secs := strconv.Itoa(max(1, int(o.Duration.Seconds())-2))
			_, _, err := l.Exec(ctx, l.A, "curl", "-sf", "-o", o.Profile,
				"http://"+l.A.Admin+"/debug/pprof/profile?seconds="+secs)
			prof <- err
		}()
	}
	before, err := cpuOf(procs)
	if err != nil {
		return RunResult{}, err
	}
	ir, err := l.IperfClient(ctx, l.A, target, o.Duration)
	if err != nil {
		return RunResult{}, err
	}
	after, err := cpuOf(procs)
	if err != nil {
		return RunResult{}, err
	}
	r := RunResult{IperfResult: ir}
	if len(procs) > 0 {
		r.CPU = make(map[string]float64, len(procs))
		for _, p := range procs {
			r.CPU[p.name] = after[p.name] - before[p.name]
		}
	}
	if prof != nil {
		if err := <-prof; err != nil {
			o.Log("profile: %v", err)
		} else {
			o.Log("profile of side a's daemon written to %s", o.Profile)
		}
	}
	return r, nil
}

// flood offers UDP above capacity from a to target and reads, per actor of
// every switchyard daemon, what the flood did to the counters.
func flood(ctx context.Context, l *Lab, target netip.Addr, procs []benchProc, o E2EOptions) (*FloodResult, error) {
	before := map[string]map[string]ActorDrops{}
	for _, p := range procs {
		if p.daemon == nil {
			continue
		}
		s, err := p.daemon.Stats(ctx)
		if err != nil {
			return nil, err
		}
		before[p.name] = actorCounters(p.name, s.Actors)
	}
	cpu0, err := cpuOf(procs)
	if err != nil {
		return nil, err
	}
	ir, err := l.IperfClient(ctx, l.A, target, o.FloodDuration,
		"-u", "-b", o.FloodRate, "-l", strconv.Itoa(o.FloodLen))
	if err != nil {
		return nil, err
	}
	cpu1, err := cpuOf(procs)
	if err != nil {
		return nil, err
	}
	fr := &FloodResult{Rate: o.FloodRate, Len: o.FloodLen, Duration: o.FloodDuration.Seconds(), IperfResult: ir,
		CPU: map[string]float64{}}
	for _, p := range procs {
		fr.CPU[p.name] = cpu1[p.name] - cpu0[p.name]
	}
	for _, p := range procs {
		if p.daemon == nil {
			continue
		}
		s, err := p.daemon.Quiesce(ctx, floodDrain)
		if err != nil {
			o.Log("%s did not settle after the flood: %v", p.name, err)
		}
		after := actorCounters(p.name, s.Actors)
		for _, a := range s.Actors {
			fr.Actors = append(fr.Actors, diffActor(before[p.name][a.Name], after[a.Name]))
		}
	}
	return fr, nil
}

// actorCounters turns a daemon's actor snapshots into ActorDrops by name.
func actorCounters(daemon string, actors []stats.Row) map[string]ActorDrops {
	m := make(map[string]ActorDrops, len(actors))
	for _, a := range actors {
		d := ActorDrops{Daemon: daemon, Actor: a.Name, InPackets: a.InPackets, OutPackets: a.OutPackets, Drops: map[string]uint64{}}
		for k, v := range a.Drops {
			d.Drops[k] = v
		}
		if a.Mailbox != nil {
			d.HighWater, d.Capacity = a.Mailbox.HighWaterBatches, a.Mailbox.Capacity
			d.QueueDelay = append([]uint64(nil), a.Mailbox.QueueDelay...)
		}
		m[a.Name] = d
	}
	return m
}

// diffActor is what happened to an actor between two readings: the
// counters' growth, the drop reasons that grew, and the later gauges.
func diffActor(before, after ActorDrops) ActorDrops {
	d := after
	d.InPackets -= before.InPackets
	d.OutPackets -= before.OutPackets
	d.Drops = map[string]uint64{}
	for k, v := range after.Drops {
		if n := v - before.Drops[k]; n > 0 {
			d.Drops[k] = n
		}
	}
	if len(after.QueueDelay) > 0 {
		d.QueueDelay = make([]uint64, len(after.QueueDelay))
		for i, v := range after.QueueDelay {
			if i < len(before.QueueDelay) && v >= before.QueueDelay[i] {
				v -= before.QueueDelay[i]
			}
			d.QueueDelay[i] = v
		}
		d.WaitP50, d.WaitP99 = stats.DelayQuantile(d.QueueDelay, 0.5), stats.DelayQuantile(d.QueueDelay, 0.99)
	}
	return d
}
