package main

// `switchyard-lab soak` (make soak): hours of an operator's life in minutes.
// Two daemons in namespaces; side a runs its udp tunnel `peer` on a spawned
// protocol host (shared memory by default), side b in process. While iperf3
// pushes a paced TCP stream a→b, the harness
//
//  1. reloads both daemons (SIGHUP) every --reload-every,
//  2. kills side a's host with SIGKILL every --kill-every,
//  3. stops side b's daemon (SIGSTOP) for --stop-for once, half way,
//  4. sends a sha256-checked TCP transfer a→b every --transfer-every,
//  5. samples every --sample-every: RSS, open fds, threads of both daemons
//     and the host; goroutines and heap in use of both daemons (/metrics);
//     the pool's outstanding buffers; every row's counters.
//
// At the end it lets the tunnel drain and checks:
//
//   - every transfer arrived intact;
//   - every row of both daemons holds in = out + dropped + queued exactly;
//   - conservation a→b, to the packet: what side a's daemon saw the host
//     complete (peer.host out) = what side b's tunnel received (peer.recv
//     in) + what the host's protocol dropped + UDP errors of the kernels
//     (a's send errors, b's receive errors): "uncounted" must be 0;
//   - each kill re-opened the instance exactly once;
//   - goroutines and fds of both daemons did not drift (the last samples
//     against the first, once the load stopped).
//
// b→a is reported but not checked to the packet: what sat in the killed
// host's socket buffer dies with the socket, and no counter anywhere can
// know it (the kernel drops a socket's queue silently on close).
//
// It writes soak.txt (the report), soak.json (every sample) and soak.png
// (RSS, goroutines and fds over time) into --out, and exits 1 when a check
// fails.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"switchyard/internal/lab"
	"switchyard/node"
	"switchyard/stats"
)

// Defaults and limits of the soak, each with its unit.
const (
	soakDuration      = 10 * time.Minute
	soakRate          = "400M"           // iperf3 -b: paced, so reloads and kills land under steady load
	soakReloadEvery   = 60 * time.Second // the operator reloads a minute
	soakKillEvery     = 60 * time.Second // ten kills in the default ten minutes
	soakTransferEvery = 2 * time.Minute
	soakTransferBytes = 100 << 20 // 100 MiB, sha256-checked
	soakStopFor       = 3 * time.Second
	soakSampleEvery   = 5 * time.Second
	soakDrain         = 3 * time.Second // after the load, before the final counters
	soakTransferPort  = 5301
	// soakDriftSlack (goroutines, fds) is the growth allowed between the
	// first and the last quiet sample: a few connections' worth.
	soakDriftSlack = 8
	// soakHostWait (15 s) bounds the wait for a new host after a kill.
	soakHostWait = 15 * time.Second
	// soakMaxBatch (packets) is the lab's batch size: the most a host can
	// have sent and not completed when it is killed.
	soakMaxBatch = 128
)

// soakSample is one sample of the processes.
type soakSample struct {
	T          float64                `json:"t_seconds"`
	RSS        map[string]int64       `json:"rss_bytes"`  // "a", "b", "host"
	FDs        map[string]int         `json:"fds"`        // "a", "b", "host"
	Threads    map[string]int         `json:"threads"`    // "a", "b", "host"
	Goroutines map[string]float64     `json:"goroutines"` // "a", "b"
	HeapInuse  map[string]float64     `json:"heap_inuse_bytes"`
	Pool       map[string]int         `json:"pool_outstanding_buffers"`
	PoolMade   map[string]int         `json:"pool_allocated_buffers"` // the high-water mark
	BufBytes   int                    `json:"buffer_bytes"`
	Rows       map[string][]stats.Row `json:"rows,omitempty"`
}

// soakEvent is something the harness did.
type soakEvent struct {
	T    float64 `json:"t_seconds"`
	What string  `json:"what"`
	OK   bool    `json:"ok"`
	Note string  `json:"note,omitempty"`
}

type soakReport struct {
	Settings  map[string]string `json:"settings"`
	Samples   []soakSample      `json:"samples"`
	Events    []soakEvent       `json:"events"`
	Checks    []soakCheck       `json:"checks"`
	Transfers int               `json:"transfers"`
	Kills     int               `json:"kills"`
	Opens     int               `json:"opens"`
	AtoB      map[string]uint64 `json:"a_to_b"`
	BtoA      map[string]uint64 `json:"b_to_a"`
	Iperf     string            `json:"iperf"`
}

type soakCheck struct {
	Name string `json:"name"`
	OK   bool   `json:"ok"`
	Got  string `json:"got"`
}

func runSoak(args []string) int {
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	duration := fs.Duration("duration", soakDuration, "how long the load runs")
	rate := fs.String("rate", soakRate, "iperf3 -b of the TCP load a→b")
	reloadEvery := fs.Duration("reload-every", soakReloadEvery, "SIGHUP both daemons this often (0: never)")
	killEvery := fs.Duration("kill-every", soakKillEvery, "SIGKILL side a's protocol host this often (0: never)")
	transferEvery := fs.Duration("transfer-every", soakTransferEvery, "a sha256-checked transfer a→b this often (0: none)")
	transferBytes := fs.Int64("transfer-bytes", soakTransferBytes, "bytes per transfer")
	stopFor := fs.Duration("stop-for", soakStopFor, "SIGSTOP side b's daemon this long, half way (0: never)")
	sampleEvery := fs.Duration("sample-every", soakSampleEvery, "sample the processes this often")
	transport := fs.String("transport", "shm", "how batches cross to side a's host: shm or grpc")
	poolBuffers := fs.Int("pool-buffers", 0, "batch.pool_buffers of both daemons (0: the default)")
	daemonBin := fs.String("daemon", "", "the switchyard binary (default: bin/switchyard beside this one)")
	out := fs.String("out", "bench/results/soak", "directory of soak.txt, soak.json, soak.png")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *transport != "shm" && *transport != "grpc" {
		fmt.Fprintln(os.Stderr, "switchyard-lab soak: --transport is shm or grpc")
		return 2
	}
	if *duration <= 0 || *sampleEvery <= 0 {
		fmt.Fprintln(os.Stderr, "switchyard-lab soak: --duration and --sample-every must be positive")
		return 2
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	s := &soak{
		duration: *duration, rate: *rate, reloadEvery: *reloadEvery, killEvery: *killEvery,
		transferEvery: *transferEvery, transferBytes: *transferBytes, stopFor: *stopFor,
		sampleEvery: *sampleEvery, transport: *transport, out: *out, poolBuffers: *poolBuffers,
	}
	rep, err := s.run(ctx, *daemonBin)
	if rep != nil {
		if werr := writeSoak(*out, rep); werr != nil {
			fmt.Fprintf(os.Stderr, "switchyard-lab soak: write the report: %v\n", werr)
			return 1
		}
		fmt.Printf("report: %s\n", filepath.Join(*out, "soak.txt"))
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "switchyard-lab soak: %v\n", err)
		return 1
	}
	for _, c := range rep.Checks {
		if !c.OK {
			return 1
		}
	}
	return 0
}

type soak struct {
	duration, reloadEvery, killEvery, transferEvery, stopFor, sampleEvery time.Duration
	rate, transport, out                                                  string
	transferBytes                                                         int64
	poolBuffers                                                           int

	l      *lab.Lab
	da, db *lab.Daemon
	start  time.Time
	mu     sync.Mutex
	rep    *soakReport
}

func (s *soak) since() float64 { return time.Since(s.start).Seconds() }

func (s *soak) event(what string, ok bool, note string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rep.Events = append(s.rep.Events, soakEvent{T: s.since(), What: what, OK: ok, Note: note})
	mark := "ok"
	if !ok {
		mark = "FAILED"
	}
	fmt.Printf("%7.1fs  %-10s %s %s\n", s.since(), what, mark, note)
}

func (s *soak) run(ctx context.Context, daemonBin string) (*soakReport, error) {
	if err := lab.Preflight(); err != nil {
		return nil, err
	}
	bin, err := lab.DaemonBinary(daemonBin)
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	if s.l, err = lab.New(ctx, lab.Options{Binary: bin, Tools: self}); err != nil {
		return nil, err
	}
	defer s.l.Close()
	defer func() {
		// The daemons' logs, for what the report does not say.
		for _, d := range []*lab.Daemon{s.da, s.db} {
			if d != nil {
				_ = os.MkdirAll(s.out, 0o755)
				_ = os.WriteFile(filepath.Join(s.out, d.Side.Label+".log"), []byte(d.Log()), 0o644)
			}
		}
	}()
	s.rep = &soakReport{Settings: map[string]string{
		"duration": s.duration.String(), "rate": s.rate, "reload_every": s.reloadEvery.String(),
		"kill_every": s.killEvery.String(), "transfer_every": s.transferEvery.String(),
		"transfer_bytes": strconv.FormatInt(s.transferBytes, 10), "stop_for": s.stopFor.String(),
		"transport": s.transport, "binary": bin, "pool_buffers": strconv.Itoa(s.poolBuffers),
	}}

	cfgA := lab.OutOfProcessOver(s.l.DefaultConfig(s.l.A), s.transport)
	cfgB := s.l.DefaultConfig(s.l.B)
	if s.poolBuffers > 0 {
		cfgA.PoolBuffers, cfgB.PoolBuffers = s.poolBuffers, s.poolBuffers
	}
	// Every kill is a restart: a budget the kills never exhaust.
	budget := 1000
	cfgA.Supervision.MaxRestarts = &budget
	if s.da, err = s.l.StartDaemon(ctx, s.l.A, cfgA); err != nil {
		return s.rep, err
	}
	if s.db, err = s.l.StartDaemon(ctx, s.l.B, cfgB); err != nil {
		return s.rep, err
	}
	if _, err := s.da.WaitStats(ctx, soakHostWait, func(sn node.Snapshot) bool {
		h, ok := lab.FindActor(sn, "host/"+lab.HostName)
		return ok && h.State == stats.Running.String()
	}); err != nil {
		return s.rep, fmt.Errorf("side a's host did not come up: %w\n%s", err, s.da.LogTail())
	}
	stopIperf, err := s.l.IperfServer(ctx, s.l.B, s.l.B.TUN4)
	if err != nil {
		return s.rep, err
	}
	defer stopIperf()
	udpA0, _ := procUDP(s.da.Pid())
	udpB0, _ := procUDP(s.db.Pid())
	s.start = time.Now()
	s.sample(ctx) // the idle baseline: before the load
	fmt.Printf("soak: %s of %s TCP a→b (%s), reload every %s, host kill every %s, transfer every %s, SIGSTOP b %s at half time\n",
		s.duration, s.rate, s.transport, s.reloadEvery, s.killEvery, s.transferEvery, s.stopFor)

	// The load.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r, err := s.l.IperfClient(ctx, s.l.A, s.l.B.TUN4, s.duration, "-b", s.rate)
		s.mu.Lock()
		if err != nil {
			s.rep.Iperf = "failed: " + err.Error()
		} else {
			s.rep.Iperf = fmt.Sprintf("%.3f Gbit/s over %s, %d retransmits", r.Gbps, s.duration, r.Retransmits)
		}
		s.mu.Unlock()
	}()

	// The operator.
	tick := func(d time.Duration) <-chan time.Time {
		if d <= 0 {
			return nil
		}
		return time.NewTicker(d).C
	}
	sampleC, reloadC, killC, transferC := tick(s.sampleEvery), tick(s.reloadEvery), tick(s.killEvery), tick(s.transferEvery)
	var stopC <-chan time.Time
	if s.stopFor > 0 {
		stopC = time.After(s.duration / 2)
	}
	end := time.After(s.duration)
	transferring := make(chan struct{}, 1)
loop:
	for {
		select {
		case <-ctx.Done():
			return s.rep, ctx.Err()
		case <-end:
			break loop
		case <-sampleC:
			s.sample(ctx)
		case <-reloadC:
			for _, d := range []*lab.Daemon{s.da, s.db} {
				err := syscall.Kill(d.Pid(), syscall.SIGHUP)
				s.event("reload", err == nil, d.Side.Label)
			}
		case <-killC:
			s.kill(ctx)
		case <-stopC:
			s.stopB()
		case <-transferC:
			select {
			case transferring <- struct{}{}:
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer func() { <-transferring }()
					s.transfer(ctx)
				}()
			default:
				s.event("transfer", false, "skipped: the previous one still runs")
			}
		}
	}
	wg.Wait()
	// One last transfer on the quiet tunnel, so even a short soak checks one.
	if s.transferEvery > 0 && s.rep.Transfers == 0 {
		s.transfer(ctx)
	}
	time.Sleep(soakDrain)
	s.sample(ctx)
	s.finish(ctx, udpA0, udpB0)
	return s.rep, nil
}

// kill kills side a's host and waits for its successor.
func (s *soak) kill(ctx context.Context) {
	pid, err := s.da.HostPid(lab.HostName)
	if err != nil {
		s.event("kill", false, err.Error())
		return
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		s.event("kill", false, err.Error())
		return
	}
	t0 := time.Now()
	next, err := s.da.WaitHostPid(ctx, lab.HostName, pid, soakHostWait)
	s.mu.Lock()
	s.rep.Kills++
	s.mu.Unlock()
	if err != nil {
		s.event("kill", false, fmt.Sprintf("host %d: no successor: %v", pid, err))
		return
	}
	s.event("kill", true, fmt.Sprintf("host %d → %d in %d ms", pid, next, time.Since(t0).Milliseconds()))
}

// stopB stops side b's daemon for stopFor.
func (s *soak) stopB() {
	err := syscall.Kill(s.db.Pid(), syscall.SIGSTOP)
	if err == nil {
		time.Sleep(s.stopFor)
		err = syscall.Kill(s.db.Pid(), syscall.SIGCONT)
	}
	s.event("sigstop", err == nil, fmt.Sprintf("b for %s", s.stopFor))
}

func (s *soak) transfer(ctx context.Context) {
	t, err := s.l.TCPTransfer(ctx, s.l.A, s.l.B, soakTransferPort, s.transferBytes, 0)
	s.mu.Lock()
	s.rep.Transfers++
	s.mu.Unlock()
	switch {
	case err != nil:
		s.event("transfer", false, err.Error())
	case !t.Match():
		s.event("transfer", false, fmt.Sprintf("sent %d bytes %s, received %d bytes %s", t.Sent.Bytes, t.Sent.SHA256[:12], t.Received.Bytes, t.Received.SHA256))
	default:
		s.event("transfer", true, fmt.Sprintf("%d MiB intact (sha256 %s…), %.2f Gbit/s", t.Sent.Bytes>>20, t.Sent.SHA256[:12], t.Gbps()))
	}
}

// sample records one sample of every process.
func (s *soak) sample(ctx context.Context) {
	sm := soakSample{T: s.since(), RSS: map[string]int64{}, FDs: map[string]int{}, Threads: map[string]int{},
		Goroutines: map[string]float64{}, HeapInuse: map[string]float64{}, Pool: map[string]int{}, PoolMade: map[string]int{}, Rows: map[string][]stats.Row{}}
	pids := map[string]int{"a": s.da.Pid(), "b": s.db.Pid()}
	if h, err := s.da.HostPid(lab.HostName); err == nil {
		pids["host"] = h
	}
	for name, pid := range pids {
		if m, err := lab.ProcMemory(pid); err == nil {
			sm.RSS[name] = m.RSS
		}
		if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
			sm.FDs[name] = len(ents)
		}
		if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid)); err == nil {
			sm.Threads[name] = len(ents)
		}
	}
	for _, d := range []*lab.Daemon{s.da, s.db} {
		name := d.Side.Label
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if m, err := s.metrics(sctx, d); err == nil {
			sm.Goroutines[name] = m["go_goroutines"]
			sm.HeapInuse[name] = m["go_memstats_heap_inuse_bytes"]
		}
		if snap, err := d.Stats(sctx); err == nil {
			sm.Pool[name] = snap.Pool.OutstandingBuffers
			sm.PoolMade[name] = snap.Pool.AllocatedBuffers
			sm.BufBytes = snap.Pool.BufferBytes
			sm.Rows[name] = snap.Actors
		}
		cancel()
	}
	s.mu.Lock()
	s.rep.Samples = append(s.rep.Samples, sm)
	s.mu.Unlock()
}

// metrics fetches the daemon's /metrics (curl in its namespace) and returns
// the unlabelled samples.
func (s *soak) metrics(ctx context.Context, d *lab.Daemon) (map[string]float64, error) {
	out, _, err := s.l.Exec(ctx, d.Side, "curl", "-sf", "http://"+d.Side.Admin+"/metrics")
	if err != nil {
		return nil, err
	}
	return parseMetrics(bytes.NewReader(out)), nil
}

// parseMetrics returns the samples without labels of a Prometheus text
// exposition.
func parseMetrics(r io.Reader) map[string]float64 {
	m := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' || strings.ContainsRune(line, '{') {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			m[name] = v
		}
	}
	return m
}

// udpCounters are a namespace's UDP counters (/proc/PID/net/snmp shows the
// namespace of PID).
type udpCounters struct {
	InErrors, RcvbufErrors, SndbufErrors, NoPorts uint64
}

func procUDP(pid int) (udpCounters, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/snmp", pid))
	if err != nil {
		return udpCounters{}, err
	}
	return parseSNMPUDP(b)
}

// parseSNMPUDP reads the two "Udp:" lines of /proc/net/snmp.
func parseSNMPUDP(b []byte) (udpCounters, error) {
	var names, values []string
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "Udp: ") {
			continue
		}
		if names == nil {
			names = strings.Fields(line)[1:]
		} else {
			values = strings.Fields(line)[1:]
		}
	}
	if names == nil || len(values) != len(names) {
		return udpCounters{}, errors.New("no Udp lines in /proc/net/snmp")
	}
	var c udpCounters
	for i, n := range names {
		v, _ := strconv.ParseUint(values[i], 10, 64)
		switch n {
		case "InErrors":
			c.InErrors = v
		case "RcvbufErrors":
			c.RcvbufErrors = v
		case "SndbufErrors":
			c.SndbufErrors = v
		case "NoPorts":
			c.NoPorts = v
		}
	}
	return c, nil
}

// finish takes the final counters and runs the checks.
func (s *soak) finish(ctx context.Context, udpA0, udpB0 udpCounters) {
	check := func(name string, ok bool, format string, args ...any) {
		s.rep.Checks = append(s.rep.Checks, soakCheck{Name: name, OK: ok, Got: fmt.Sprintf(format, args...)})
	}
	sa, errA := s.da.Quiesce(ctx, 30*time.Second)
	sb, errB := s.db.Quiesce(ctx, 30*time.Second)
	if errA != nil || errB != nil {
		check("quiesce", false, "a: %v, b: %v", errA, errB)
		return
	}
	udpA, _ := procUDP(s.da.Pid())
	udpB, _ := procUDP(s.db.Pid())

	failed := 0
	for _, e := range s.rep.Events {
		if !e.OK {
			failed++
		}
	}
	check("every reload, kill, stop and transfer succeeded", failed == 0, "%d events, %d failed", len(s.rep.Events), failed)

	// Every row: in = out + dropped + queued.
	var broken []string
	for _, snap := range []node.Snapshot{sa, sb} {
		for _, r := range snap.Actors {
			if strings.HasPrefix(r.Name, lab.HostName+"/") {
				// A host's own rows, mirrored from its last report: a
				// killed incarnation's freeze mid-flight. The daemon's
				// exact view of the crossing is peer.host.
				continue
			}
			if r.InPackets != r.OutPackets+r.DroppedTotal()+r.Queued() {
				broken = append(broken, fmt.Sprintf("%s/%s: in %d ≠ out %d + dropped %d + queued %d", snap.Node, r.Name, r.InPackets, r.OutPackets, r.DroppedTotal(), r.Queued()))
			}
		}
	}
	check("every row: in = out + dropped + queued", len(broken) == 0, "%d rows broken %v", len(broken), broken)

	// a→b to the packet. The daemon knows exactly what it handed over and
	// what the host completed; the rest is host_lost. A host killed after
	// its sendmmsg and before the completion reached the ring sent packets
	// that are counted host_lost too: those are "overcounted", at most a
	// batch per kill. "Uncounted" — lost and counted nowhere — must be 0.
	host, _ := lab.FindActor(sa, "peer.host")
	hosted, _ := lab.FindActor(sa, lab.HostName+"/peer")
	recvB, _ := lab.FindActor(sb, "peer.recv")
	kernel := (udpA.SndbufErrors - udpA0.SndbufErrors) + (udpB.RcvbufErrors - udpB0.RcvbufErrors) + (udpB.InErrors - udpB0.InErrors)
	lostHost := host.Drops[stats.HostLost.String()]
	arrivedOrCounted := int64(recvB.InPackets + hosted.DroppedTotal() + kernel)
	reallyLost := int64(host.InPackets) - arrivedOrCounted // handed over, never arrived, not dropped by a counter
	uncounted := reallyLost - int64(lostHost)
	s.rep.AtoB = map[string]uint64{
		"handed_to_host": host.InPackets, "completed_by_host": host.OutPackets, "host_lost": lostHost,
		"host_protocol_dropped": hosted.DroppedTotal(), "kernel_udp_errors": kernel, "received_by_b": recvB.InPackets,
		"uncounted": uint64(max(uncounted, 0)), "overcounted": uint64(max(-uncounted, 0)),
	}
	check("a→b: every packet handed to the host arrived or was counted", uncounted <= 0,
		"handed %d = received by b %d + host protocol drops %d + kernel UDP errors %d + lost %d; host_lost %d: uncounted %d",
		host.InPackets, recvB.InPackets, hosted.DroppedTotal(), kernel, reallyLost, lostHost, max(uncounted, 0))
	bound := int64(s.rep.Kills) * soakMaxBatch
	check("a→b: host_lost overcounts at most a batch per kill", -uncounted <= bound,
		"%d packets counted host_lost arrived anyway (sent, then killed before completing); bound %d", max(-uncounted, 0), bound)

	// b→a, reported.
	sentB, _ := lab.FindActor(sb, "peer")
	recvHost, _ := lab.FindActor(sa, lab.HostName+"/peer.recv")
	s.rep.BtoA = map[string]uint64{
		"sent_by_b": sentB.OutPackets, "received_by_host": recvHost.InPackets,
		"a_no_port": udpA.NoPorts - udpA0.NoPorts, "a_rcvbuf_errors": udpA.RcvbufErrors - udpA0.RcvbufErrors,
		"b_sndbuf_errors": udpB.SndbufErrors - udpB0.SndbufErrors,
	}

	// One open per kill, plus the first.
	s.rep.Opens = strings.Count(s.da.Log(), `protocol instance open	{"protocol": "peer"`)
	check("one re-open per kill", s.rep.Opens == s.rep.Kills+1, "%d kills, %d opens of peer", s.rep.Kills, s.rep.Opens)

	// No drift: the first sample (before the load) against the last (after it).
	if n := len(s.rep.Samples); n >= 2 {
		first, last := s.rep.Samples[0], s.rep.Samples[n-1]
		for _, p := range []string{"a", "b"} {
			g0, g1 := first.Goroutines[p], last.Goroutines[p]
			check("goroutines of "+p+" flat", g1 <= g0+soakDriftSlack, "%.0f → %.0f", g0, g1)
			f0, f1 := first.FDs[p], last.FDs[p]
			check("fds of "+p+" flat", f1 <= f0+soakDriftSlack, "%d → %d", f0, f1)
			// Readers hold their receive batches while idle: the baseline.
			check("pool of "+p+" back to idle", last.Pool[p] <= first.Pool[p],
				"%d buffers outstanding idle before the load, %d after the drain", first.Pool[p], last.Pool[p])
		}
	}
	if s.transferEvery > 0 {
		check("transfers intact", s.rep.Transfers > 0 && failed == 0, "%d transfers", s.rep.Transfers)
	}
}

// writeSoak writes soak.txt, soak.json and soak.png into dir.
func writeSoak(dir string, rep *soakReport) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(rep, "", " ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "soak.json"), b, 0o644); err != nil {
		return err
	}
	var w bytes.Buffer
	renderSoak(&w, rep)
	if err := os.WriteFile(filepath.Join(dir, "soak.txt"), w.Bytes(), 0o644); err != nil {
		return err
	}
	os.Stdout.Write(w.Bytes())
	if len(rep.Samples) >= 2 {
		return soakPlot(rep, filepath.Join(dir, "soak.png"))
	}
	return nil
}
