package main

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// capNetAdmin is CAP_NET_ADMIN's bit in the capability sets
// (linux/capability.h).
const capNetAdmin = 12

// hasNetAdmin reports whether this process has CAP_NET_ADMIN in its
// effective set: a non-root daemon started by systemd with
// AmbientCapabilities=CAP_NET_ADMIN (deploy/switchyard.service) has it.
func hasNetAdmin() bool {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return false
	}
	defer f.Close()
	return netAdminIn(bufio.NewScanner(f))
}

// netAdminIn reads the CapEff line of a /proc/PID/status.
func netAdminIn(sc *bufio.Scanner) bool {
	for sc.Scan() {
		hex, ok := strings.CutPrefix(sc.Text(), "CapEff:")
		if !ok {
			continue
		}
		caps, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
		return err == nil && caps&(1<<capNetAdmin) != 0
	}
	return false
}
