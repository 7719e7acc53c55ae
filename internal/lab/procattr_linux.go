package lab

import "syscall"

// ownGroupDyingWithUs: the process gets its own process group and sig when
// the process that started it dies.
func ownGroupDyingWithUs(sig syscall.Signal) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: sig}
}
