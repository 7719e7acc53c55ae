//go:build !linux

package lab

import "syscall"

// ownGroupDyingWithUs: its own process group; PDEATHSIG is Linux's (the lab
// runs only there: Preflight).
func ownGroupDyingWithUs(syscall.Signal) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
