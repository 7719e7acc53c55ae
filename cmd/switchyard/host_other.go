//go:build !linux

package main

import (
	"os"
	"syscall"
	"time"
)

// parentPoll (1 s) is how often a spawned host checks that its daemon is
// still its parent.
const parentPoll = time.Second

// exitWithParent: without PDEATHSIG, a spawned host watches its parent and
// stops as on SIGTERM once the daemon is gone (it is re-parented).
func exitWithParent(sigs chan<- os.Signal) {
	parent := os.Getppid()
	go func() {
		for range time.Tick(parentPoll) {
			if os.Getppid() != parent {
				sigs <- syscall.SIGTERM
				return
			}
		}
	}()
}
