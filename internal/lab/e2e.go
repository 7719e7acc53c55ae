package lab

// The end-to-end cases of `make bench` (`switchyard bench e2e`): iperf3
// between two namespaces over
//
//  1. the veth alone — the kernel's ceiling on this machine;
//  2. two wireguard-go binaries — the reference a user would pick instead;
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
	KindVeth        CaseKind = iota // iperf3 straight over the veth: the ceiling
	KindWireGuardGo                 // two wireguard-go binaries: the reference
	KindUDP                         // two switchyard daemons, udp protocol
	KindWireGuard                   // two switchyard daemons, wireguard protocol
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
}

// Cases are the end-to-end cases, in report order: each out-of-process
// case right after its in-process reference, so both meet the same load.
func Cases() []Case {
	return []Case{
		{Key: "veth", Label: "kernel veth alone (ceiling)", Kind: KindVeth},
		{Key: "wireguard-go", Label: "wireguard-go pair (reference)", Kind: KindWireGuardGo},
		{Key: "udp-b128", Label: "switchyard udp, in-process, batch 128", Kind: KindUDP, Batch: 128},
		{Key: "udp-oop-b128", Label: "switchyard udp, out of process (shm), batch 128", Kind: KindUDP, Batch: 128,
			OutOfProcess: true, InProcess: "udp-b128"},
		{Key: "udp-oop1-b128", Label: "switchyard udp, out of process (shm) on side a only, batch 128", Kind: KindUDP, Batch: 128,
			OutOfProcess: true, OneSide: true, InProcess: "udp-b128"},
		{Key: "udp-grpc-b128", Label: "switchyard udp, out of process (grpc), batch 128", Kind: KindUDP, Batch: 128,
			OutOfProcess: true, Transport: "grpc", InProcess: "udp-b128"},
		{Key: "udp-grpc1-b128", Label: "switchyard udp, out of process (grpc) on side a only, batch 128", Kind: KindUDP, Batch: 128,
			OutOfProcess: true, OneSide: true, Transport: "grpc", InProcess: "udp-b128"},
		{Key: "udp-b1", Label: "switchyard udp, in-process, batch 1", Kind: KindUDP, Batch: 1},
		{Key: "udp-oop-b1", Label: "switchyard udp, out of process (shm), batch 1", Kind: KindUDP, Batch: 1,
			OutOfProcess: true, InProcess: "udp-b1"},
		{Key: "udp-grpc-b1", Label: "switchyard udp, out of process (grpc), batch 1: one message per packet", Kind: KindUDP, Batch: 1,
			OutOfProcess: true, Transport: "grpc", InProcess: "udp-b1"},
		{Key: "wireguard-b128", Label: "switchyard wireguard, in-process, batch 128", Kind: KindWireGuard, Batch: 128},
		{Key: "wireguard-oop-b128", Label: "switchyard wireguard, out of process (shm), batch 128", Kind: KindWireGuard, Batch: 128,
			OutOfProcess: true, InProcess: "wireguard-b128"},
		{Key: "ipsec-strongswan", Label: "strongSwan ↔ strongSwan, kernel-libipsec, PSK, AES-GCM-256 (reference)", Kind: KindIPsecStrongSwan},
		{Key: "ipsec-sy-strongswan", Label: "switchyard ipsec ↔ strongSwan, PSK, AES-GCM-256", Kind: KindIPsecSwitchyardStrongSwan},
		{Key: "ipsec-b128", Label: "switchyard ipsec pair, in-process, batch 128, PSK, AES-GCM-256", Kind: KindIPsecPair, Batch: 128},
		{Key: "udp-flood", Label: "switchyard udp, in-process, batch 128, UDP flood", Kind: KindUDP, Batch: 128, Flood: true},
	}
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
}

// benchProc is a process whose CPU time and memory a case reports.
type benchProc struct {
	name   string
	pid    int
	daemon *Daemon // nil for wireguard-go
}

// RunCase builds a lab for c, measures it and removes the lab. It needs
// root and iperf3 (and wg for KindWireGuardGo).
func RunCase(ctx context.Context, c Case, o E2EOptions) (_ CaseResult, err error) {
	o.defaults()
	res := CaseResult{Case: c}
	need := []string{"iperf3"}
	if c.Kind == KindWireGuardGo {
		need = append(need, "wg")
		if o.WireGuardGo == "" {
			return res, errors.New("no wireguard-go binary given")
		}
	}
	for _, tool := range need {
		if err := NeedTool(tool); err != nil {
			return res, err
		}
	}
	o.Progress(Event{Case: c, Phase: PhaseSetup})
	l, err := New(ctx, Options{Binary: o.Binary, Tools: o.Tools})
	if err != nil {
		return res, err
	}
	var stops []func()
	defer func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
		if cerr := l.Close(); cerr != nil && err == nil {
			err = cerr
		}
		o.Progress(Event{Case: c, Phase: PhaseDone})
	}()

	procs, target, more, err := startCase(ctx, l, c, o)
	stops = append(stops, more...)
	if err != nil {
		return res, err
	}
	if err := l.PingUntil(ctx, l.A, target, 10*time.Second); err != nil {
		return res, err
	}
	stop, err := l.IperfServer(ctx, l.B, target)
	if err != nil {
		return res, err
	}
	stops = append(stops, stop)

	if c.Flood {
		o.Progress(Event{Case: c, Phase: PhaseFlood})
		if res.Flood, err = flood(ctx, l, target, procs, o); err != nil {
			return res, err
		}
		res.Gbps = Summarize([]float64{res.Flood.Gbps})
	} else {
		var gbps []float64
		for i := range o.Runs {
			o.Progress(Event{Case: c, Phase: PhaseRun, Run: i + 1, Runs: o.Runs})
			r, err := measuredRun(ctx, l, target, procs, o, i == 0)
			if err != nil {
				return res, fmt.Errorf("run %d: %w", i+1, err)
			}
			res.Runs = append(res.Runs, r)
			gbps = append(gbps, r.Gbps)
		}
		res.Gbps = Summarize(gbps)
	}
	for _, p := range procs {
		pr := ProcResult{Name: p.name}
		var per []float64
		for _, r := range res.Runs {
			per = append(per, CPUPerGbit(r.CPU[p.name], r.Bytes))
		}
		if f := res.Flood; f != nil {
			per = append(per, CPUPerGbit(f.CPU[p.name], f.Bytes))
		}
		pr.CPUPerGbit = Summarize(per)
		if m, err := ProcMemory(p.pid); err == nil {
			pr.PeakRSS = m.HWM
		} else {
			o.Log("%s: peak RSS: %v", p.name, err)
		}
		res.Procs = append(res.Procs, pr)
	}
	return res, nil
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
	return d
}
