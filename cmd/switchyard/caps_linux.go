package main

// Least privilege: a process restricts itself to the capabilities it keeps
// by executing itself again.
//
//  1. Capabilities belong to threads, and a Go program has several: capset
//     or PR_CAPBSET_DROP in place would change one thread and leave the
//     others everything. So the change is made on one locked thread that
//     then executes the binary again; the new image starts with that one
//     thread, and every thread it makes inherits its sets.
//  2. On that thread, with CAP_SETPCAP: securebits NOROOT and NOROOT_LOCKED
//     (uid 0 gains no capability from an exec: not this process's own
//     re-execution, not the protocol hosts it starts), and the bounding set
//     reduced to what is kept.
//  3. Permitted, effective and inheritable become what is kept (capset; a
//     seccomp filter that forbids it, as systemd's ~@privileged does, leaves
//     the inheritable set as it was, which gives nothing under
//     no_new_privs); the ambient set is cleared and raised to it: the
//     permitted and effective sets after an exec that gains nothing from
//     the file are the ambient set.
//  4. no_new_privs: no later exec regains anything through a setuid or
//     file-capability binary.
//  5. execve(/proc/self/exe) with the same arguments and a marker in the
//     environment (pid and the sets before). The new image finds the
//     marker, checks that it holds nothing beyond what it keeps, and
//     reports before and after; it removes the marker, so the processes it
//     starts restrict themselves in turn.

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// capsEnv marks a process that executed itself to drop capabilities.
const capsEnv = "SWITCHYARD_CAPS_RESTRICTED"

// Securebits (linux/securebits.h).
const (
	secbitNoroot       = 1 << 0
	secbitNorootLocked = 1 << 1
)

// capReport is what restrictCapabilities found and did.
type capReport struct {
	Before, After procCaps
	// Note says why nothing was restricted, when nothing was.
	Note string
}

// restrictCapabilities makes this process hold at most keep, in every
// thread, by executing itself again (see the top of this file); it returns
// only in the re-executed image, or when there is nothing to do or nothing
// it can do (Note says why).
func restrictCapabilities(keep capSet) (capReport, error) {
	marker, marked := os.LookupEnv(capsEnv)
	_ = os.Unsetenv(capsEnv) // the processes this one starts restrict themselves
	runtime.LockOSThread()
	cur, err := readProcCaps("/proc/thread-self/status")
	if err != nil {
		runtime.UnlockOSThread()
		return capReport{}, err
	}
	if pid, before, ok := parseCapsMarker(marker); marked && ok && pid == os.Getpid() {
		runtime.UnlockOSThread()
		if !cur.within(keep) {
			return capReport{}, fmt.Errorf("still holds %s after restricting itself to %s", cur, keep)
		}
		return capReport{Before: before, After: cur}, nil
	}
	canSetpcap := cur.Eff.has(capSetpcap)
	if cur.within(keep) && (cur.Bnd&^keep == 0 || !canSetpcap) {
		runtime.UnlockOSThread()
		return capReport{Before: cur, After: cur, Note: "nothing to drop"}, nil
	}
	secure, err := unix.PrctlRetInt(unix.PR_GET_SECUREBITS, 0, 0, 0, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return capReport{}, fmt.Errorf("read securebits: %w", err)
	}
	if os.Geteuid() == 0 && !canSetpcap && secure&secbitNoroot == 0 {
		runtime.UnlockOSThread()
		return capReport{Before: cur, After: cur,
			Note: "uid 0 without CAP_SETPCAP: an exec would give the bounding set back, so nothing is dropped"}, nil
	}
	// From here on the thread stays locked: it executes the binary.
	if canSetpcap {
		if err := unix.Prctl(unix.PR_SET_SECUREBITS, uintptr(secure|secbitNoroot|secbitNorootLocked), 0, 0, 0); err != nil {
			return capReport{}, fmt.Errorf("set securebits noroot: %w", err)
		}
		if err := dropBounding(cur.Bnd &^ keep); err != nil {
			return capReport{}, err
		}
	}
	k := keep & cur.Prm
	if err := setCaps(k); err != nil {
		// A seccomp filter may forbid capset (systemd's
		// SystemCallFilter=~@privileged, deploy/switchyard.service). The
		// exec below recomputes permitted and effective from the ambient
		// set anyway; capset is needed only to let the ambient set hold
		// what the inheritable set lacks.
		if k&^cur.Inh != 0 {
			return capReport{}, err
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return capReport{}, fmt.Errorf("clear the ambient set: %w", err)
	}
	for c := 0; c < 64; c++ {
		if k.has(c) {
			if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, uintptr(c), 0, 0); err != nil {
				return capReport{}, fmt.Errorf("raise capability %d in the ambient set: %w", c, err)
			}
		}
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return capReport{}, fmt.Errorf("set no_new_privs: %w", err)
	}
	env := append(os.Environ(), capsEnv+"="+capsMarker(os.Getpid(), cur))
	err = syscall.Exec("/proc/self/exe", os.Args, env)
	return capReport{}, fmt.Errorf("execute itself with %s: %w", k, err)
}

// dropBounding removes drop from the bounding set (CAP_SETPCAP).
func dropBounding(drop capSet) error {
	for c := 0; c < 64; c++ {
		if drop.has(c) {
			if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
				return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
			}
		}
	}
	return nil
}

// setCaps sets this thread's permitted, effective and inheritable sets.
func setCaps(s capSet) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	for i := range data {
		w := uint32(s >> (32 * i))
		data[i] = unix.CapUserData{Effective: w, Permitted: w, Inheritable: w}
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset %s: %w", s, err)
	}
	return nil
}

// capsMarker is capsEnv's value: the pid and the five sets before, in hex.
func capsMarker(pid int, p procCaps) string {
	return fmt.Sprintf("%d:%x:%x:%x:%x:%x", pid, uint64(p.Inh), uint64(p.Prm), uint64(p.Eff), uint64(p.Bnd), uint64(p.Amb))
}

func parseCapsMarker(s string) (pid int, p procCaps, ok bool) {
	f := strings.Split(s, ":")
	if len(f) != 6 {
		return 0, procCaps{}, false
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil {
		return 0, procCaps{}, false
	}
	for i, dst := range []*capSet{&p.Inh, &p.Prm, &p.Eff, &p.Bnd, &p.Amb} {
		v, err := strconv.ParseUint(f[i+1], 16, 64)
		if err != nil {
			return 0, procCaps{}, false
		}
		*dst = capSet(v)
	}
	return pid, p, true
}
