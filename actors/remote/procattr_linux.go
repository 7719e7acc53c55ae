package remote

import "syscall"

// hostProcAttr: a spawned host runs in its own process group and dies with
// the daemon, however the daemon ends (PDEATHSIG).
func hostProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}
