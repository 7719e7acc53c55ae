package main

// Capabilities: what the daemon and the protocol hosts keep (issue 12,
// finding 9). The restriction itself is Linux's (caps_linux.go); this file
// holds the sets and the parsing of /proc/PID/status, which tests use on
// any system.

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Capability numbers (linux/capability.h).
const (
	capSetpcap        = 8
	capNetBindService = 10
	capNetAdmin       = 12
)

// capSet is a set of capabilities, one bit each.
type capSet uint64

func capsOf(caps ...int) capSet {
	var s capSet
	for _, c := range caps {
		s |= 1 << c
	}
	return s
}

func (s capSet) has(c int) bool { return s&(1<<c) != 0 }

// capNames names the capabilities the daemon and hosts deal with.
var capNames = map[int]string{capSetpcap: "cap_setpcap", capNetBindService: "cap_net_bind_service", capNetAdmin: "cap_net_admin"}

// String names the set: "cap_net_admin,cap_net_bind_service", "none", or
// the hex mask of /proc/PID/status for anything else.
func (s capSet) String() string {
	if s == 0 {
		return "none"
	}
	var names []string
	rest := s
	for c := 0; c < 64; c++ {
		if name, ok := capNames[c]; ok && s.has(c) {
			names = append(names, name)
			rest &^= 1 << c
		}
	}
	if rest != 0 {
		return fmt.Sprintf("%016x", uint64(s))
	}
	return strings.Join(names, ",")
}

// Capabilities a process keeps once it has restricted itself.
var (
	// daemonCaps: CAP_NET_ADMIN for the TUN, its addresses and routes (also
	// on reload) and the protocol sockets' firewall mark; CAP_NET_BIND_SERVICE
	// for a protocol port below 1024, also when a protocol restarts.
	daemonCaps = capsOf(capNetAdmin, capNetBindService)
	// hostCaps are what `host --caps` may name.
	hostCaps = map[string]capSet{"net_bind_service": capsOf(capNetBindService)}
)

// parseHostCaps parses `host --caps`: a comma-separated list of hostCaps
// names, or "" for none.
func parseHostCaps(list string) (capSet, error) {
	var s capSet
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		c, ok := hostCaps[name]
		if !ok {
			return 0, fmt.Errorf("unknown capability %q (a host may keep: net_bind_service)", name)
		}
		s |= c
	}
	return s, nil
}

// procCaps are the capability sets of one /proc/PID/status.
type procCaps struct {
	Inh, Prm, Eff, Bnd, Amb capSet
}

func (p procCaps) String() string {
	return fmt.Sprintf("effective %s, permitted %s, inheritable %s, ambient %s, bounding %s", p.Eff, p.Prm, p.Inh, p.Amb, p.Bnd)
}

// within reports whether p holds nothing beyond keep in the sets that give
// a capability, now or to what it executes: permitted, effective, ambient.
// (The bounding set limits what an exec may gain; the inheritable set gives
// nothing by itself, and nothing at all under no_new_privs.)
func (p procCaps) within(keep capSet) bool {
	return (p.Prm|p.Eff|p.Amb)&^keep == 0
}

// parseProcStatus reads the Cap* lines of a /proc/PID/status.
func parseProcStatus(r io.Reader) (procCaps, error) {
	var p procCaps
	fields := map[string]*capSet{"CapInh:": &p.Inh, "CapPrm:": &p.Prm, "CapEff:": &p.Eff, "CapBnd:": &p.Bnd, "CapAmb:": &p.Amb}
	seen := 0
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), "\t")
		dst, want := fields[key]
		if !ok || !want {
			continue
		}
		v, err := strconv.ParseUint(strings.TrimSpace(val), 16, 64)
		if err != nil {
			return procCaps{}, fmt.Errorf("%s %q: %w", key, val, err)
		}
		*dst = capSet(v)
		seen++
	}
	if err := sc.Err(); err != nil {
		return procCaps{}, err
	}
	if seen != len(fields) {
		return procCaps{}, fmt.Errorf("found %d of the %d Cap* lines", seen, len(fields))
	}
	return p, nil
}

// readProcCaps reads the capability sets of a /proc status file.
func readProcCaps(path string) (procCaps, error) {
	f, err := os.Open(path)
	if err != nil {
		return procCaps{}, err
	}
	defer f.Close()
	p, err := parseProcStatus(f)
	if err != nil {
		return procCaps{}, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// hasNetAdmin reports whether this process has CAP_NET_ADMIN in its
// effective set: a non-root daemon started by systemd with
// AmbientCapabilities=CAP_NET_ADMIN (deploy/switchyard.service) has it.
func hasNetAdmin() bool {
	p, err := readProcCaps("/proc/self/status")
	return err == nil && p.Eff.has(capNetAdmin)
}
