//go:build !linux

package main

import (
	"errors"
	"os"
)

// canRun reports, in one line, why this process cannot run the daemon:
// outside Linux, creating a utun or tun device takes root.
func canRun() error {
	if os.Geteuid() != 0 {
		return errors.New("run needs root to create a TUN device; try sudo")
	}
	return nil
}
