package lab

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"switchyard/node"
	"switchyard/stats"
)

// ErrStopped is returned by Stop for a daemon that was already stopped.
var ErrStopped = errors.New("daemon already stopped")

// Daemon is a `switchyard run` process inside one namespace.
type Daemon struct {
	Side    *Side
	Config  string // the config file
	LogPath string // its stdout and stderr

	lab     *Lab
	cmd     *exec.Cmd
	logFile *os.File
	exited  chan struct{} // closed when the process has been waited for
	exit    int           // exit code, -1 when killed by a signal
	waitErr error

	stopOnce sync.Once
	stopped  bool
}

// StartDaemon writes c as side's config file and starts `switchyard run`
// in side's namespace, logging to a file in the lab's directory. It returns
// once the admin endpoint answers, or with an error quoting the log when the
// process exits or DaemonStartTimeout passes first.
func (l *Lab) StartDaemon(ctx context.Context, side *Side, c Config) (*Daemon, error) {
	return l.StartDaemonYAML(ctx, side, l.YAML(side, c))
}

// StartDaemonYAML is StartDaemon with the config given as YAML text (for
// configs the lab's Config does not describe, such as WireGuard's).
func (l *Lab) StartDaemonYAML(ctx context.Context, side *Side, yaml string) (*Daemon, error) {
	l.mu.Lock()
	n := len(l.daemons)
	l.mu.Unlock()
	base := fmt.Sprintf("%s-%d", side.Label, n)
	cfgPath := filepath.Join(l.Dir, base+".yaml")
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o644); err != nil {
		return nil, fmt.Errorf("lab: write config: %w", err)
	}
	logPath := filepath.Join(l.Dir, base+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("lab: daemon log: %w", err)
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		logFile.Close()
		return nil, errors.New("lab: closed")
	}
	// Not CommandContext: the daemon outlives the call; Stop and Close end
	// it with SIGTERM so that it shuts down cleanly.
	cmd := exec.Command("ip", "netns", "exec", side.NS, l.Binary, "run", "-c", cfgPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group (a Ctrl-C reaches only the demo, which stops the
	// daemons in order); SIGTERM if the demo or test process dies.
	cmd.SysProcAttr = ownGroupDyingWithUs(syscall.SIGTERM)
	d := &Daemon{Side: side, Config: cfgPath, LogPath: logPath, lab: l, cmd: cmd, logFile: logFile, exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		l.mu.Unlock()
		logFile.Close()
		return nil, fmt.Errorf("lab: start daemon in %s: %w", side.NS, err)
	}
	l.daemons = append(l.daemons, d)
	l.mu.Unlock()
	go d.wait()

	deadline := time.NewTimer(DaemonStartTimeout)
	defer deadline.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, CommandTimeout)
		_, err := d.Stats(pctx)
		cancel()
		if err == nil {
			return d, nil
		}
		select {
		case <-d.exited:
			return nil, fmt.Errorf("daemon in %s exited with code %d before its admin endpoint answered; log:\n%s",
				side.NS, d.exit, d.LogTail())
		case <-deadline.C:
			_, _ = d.Stop()
			return nil, fmt.Errorf("daemon in %s: admin endpoint %s did not answer within %v (last error: %v); log:\n%s",
				side.NS, side.Admin, DaemonStartTimeout, err, d.LogTail())
		case <-ctx.Done():
			_, _ = d.Stop()
			return nil, ctx.Err()
		case <-time.After(PollInterval):
		}
	}
}

func (d *Daemon) wait() {
	d.waitErr = d.cmd.Wait()
	d.exit = d.cmd.ProcessState.ExitCode()
	d.logFile.Close()
	close(d.exited)
}

// Pid is the daemon's process id (`ip netns exec` execs the binary, so it
// is the daemon itself).
func (d *Daemon) Pid() int { return d.cmd.Process.Pid }

// Alive reports whether the process is still running.
func (d *Daemon) Alive() bool {
	select {
	case <-d.exited:
		return false
	default:
		return true
	}
}

// Stop sends SIGTERM, waits up to DaemonStopTimeout, then SIGKILL. It
// returns the exit code (-1 after a signal); a second call returns
// ErrStopped.
func (d *Daemon) Stop() (int, error) {
	first := false
	d.stopOnce.Do(func() { first = true })
	if !first {
		<-d.exited
		return d.exit, ErrStopped
	}
	if d.Alive() {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-d.exited:
	case <-time.After(DaemonStopTimeout):
		_ = d.cmd.Process.Kill()
		<-d.exited
		return d.exit, fmt.Errorf("daemon in %s did not stop within %v of SIGTERM; killed", d.Side.NS, DaemonStopTimeout)
	}
	return d.exit, nil
}

// Exited is closed when the process has exited.
func (d *Daemon) Exited() <-chan struct{} { return d.exited }

// ExitCode is the exit code once Exited is closed (-1 after a signal).
func (d *Daemon) ExitCode() int { return d.exit }

// Log returns the daemon's log so far.
func (d *Daemon) Log() string {
	b, _ := os.ReadFile(d.LogPath)
	return string(b)
}

// LogTail returns the end of the daemon's log.
func (d *Daemon) LogTail() string {
	b, _ := os.ReadFile(d.LogPath)
	return tail(b, LogTailBytes)
}

// Stats fetches GET /stats through `switchyard stats --json` run in the
// daemon's namespace.
func (d *Daemon) Stats(ctx context.Context) (node.Snapshot, error) {
	out, _, err := d.lab.Exec(ctx, d.Side, d.lab.CLI, "stats", "--json", "--admin", d.Side.Admin)
	if err != nil {
		return node.Snapshot{}, err
	}
	var s node.Snapshot
	if err := json.Unmarshal(out, &s); err != nil {
		return node.Snapshot{}, fmt.Errorf("stats of %s: %w", d.Side.NS, err)
	}
	return s, nil
}

// StatsText returns the table `switchyard stats` prints for the daemon.
func (d *Daemon) StatsText(ctx context.Context) (string, error) {
	out, _, err := d.lab.Exec(ctx, d.Side, d.lab.CLI, "stats", "--admin", d.Side.Admin)
	return string(out), err
}

// Memory is a process's resident memory, in bytes.
type Memory struct {
	RSS int64 // VmRSS: resident now
	HWM int64 // VmHWM: the peak resident size
}

// Memory reads the daemon's resident memory from /proc.
func (d *Daemon) Memory() (Memory, error) { return ProcMemory(d.Pid()) }

// ProcMemory reads VmRSS and VmHWM of pid from /proc/PID/status.
func ProcMemory(pid int) (Memory, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Memory{}, err
	}
	defer f.Close()
	var m Memory
	found := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "VmRSS" && key != "VmHWM") {
			continue
		}
		f := strings.Fields(val) // "123456 kB"
		if len(f) != 2 || f[1] != "kB" {
			return Memory{}, fmt.Errorf("/proc/%d/status: %s: unexpected %q", pid, key, val)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return Memory{}, fmt.Errorf("/proc/%d/status: %s: %w", pid, key, err)
		}
		if key == "VmRSS" {
			m.RSS = kb << 10
		} else {
			m.HWM = kb << 10
		}
		found++
	}
	if err := sc.Err(); err != nil {
		return Memory{}, err
	}
	if found != 2 {
		return Memory{}, fmt.Errorf("/proc/%d/status: VmRSS or VmHWM missing", pid)
	}
	return m, nil
}

// WaitStats polls the daemon's stats until ok accepts a snapshot, and
// returns it; after timeout it returns the last snapshot with an error.
func (d *Daemon) WaitStats(ctx context.Context, timeout time.Duration, ok func(node.Snapshot) bool) (node.Snapshot, error) {
	deadline := time.Now().Add(timeout)
	var last node.Snapshot
	var lastErr error
	for {
		s, err := d.Stats(ctx)
		if err == nil {
			last, lastErr = s, nil
			if ok(s) {
				return s, nil
			}
		} else {
			lastErr = err
		}
		if time.Now().After(deadline) {
			if lastErr != nil {
				return last, fmt.Errorf("stats of %s: condition not met within %v: %w", d.Side.NS, timeout, lastErr)
			}
			return last, fmt.Errorf("stats of %s: condition not met within %v", d.Side.NS, timeout)
		}
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-time.After(PollInterval):
		}
	}
}

// Quiesce waits until two snapshots PollInterval apart show the same
// counters and empty mailboxes (traffic has stopped and drained), and
// returns the second.
func (d *Daemon) Quiesce(ctx context.Context, timeout time.Duration) (node.Snapshot, error) {
	var prev *node.Snapshot
	return d.WaitStats(ctx, timeout, func(s node.Snapshot) bool {
		defer func() { prev = &s }()
		if prev == nil || len(prev.Actors) != len(s.Actors) {
			return false
		}
		for i, a := range s.Actors {
			p := prev.Actors[i]
			if a.Mailbox != nil && a.Mailbox.DepthBatches != 0 {
				return false
			}
			if a.InPackets != p.InPackets || a.OutPackets != p.OutPackets || a.DroppedTotal() != p.DroppedTotal() {
				return false
			}
		}
		return true
	})
}

// FindActor returns the counters of the actor named name in s.
func FindActor(s node.Snapshot, name string) (stats.Row, bool) {
	for _, a := range s.Actors {
		if a.Name == name {
			return a, true
		}
	}
	return stats.Row{}, false
}
