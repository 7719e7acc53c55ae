package lab

import "time"

// Limits of the lab. Every number has its unit and its reason.
const (
	// CommandTimeout (10 s) bounds one short `ip` or helper command: they
	// take milliseconds, so ten seconds means something is stuck.
	CommandTimeout = 10 * time.Second

	// DaemonStartTimeout (20 s) is how long StartDaemon waits for the admin
	// endpoint to answer. A race-enabled binary on a busy 2-core machine
	// takes a few seconds to start; twenty leave room without hiding a hang.
	DaemonStartTimeout = 20 * time.Second

	// DaemonStopTimeout (10 s) is how long Stop waits after SIGTERM before
	// it sends SIGKILL. A clean stop (drain, close the TUN, log the final
	// counters) takes well under a second.
	DaemonStopTimeout = 10 * time.Second

	// PollInterval (100 ms) is the pause between two polls of a daemon's
	// admin endpoint.
	PollInterval = 100 * time.Millisecond

	// SuffixBytes (3 bytes, 6 hex digits) is the random part of the names of
	// one lab: "sy-a-3f9c1e" (11 bytes) stays within the 15-byte limit of
	// Linux interface names, which the veths reuse.
	SuffixBytes = 3

	// LogTailBytes (4 KiB) is how much of a daemon's log an error quotes.
	LogTailBytes = 4 << 10
)
