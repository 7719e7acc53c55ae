//go:build !linux

package remote

import "syscall"

// hostProcAttr: a spawned host runs in its own process group. PDEATHSIG is
// Linux's: elsewhere the host watches its parent and exits when the daemon
// is gone (cmd/switchyard, host).
func hostProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
