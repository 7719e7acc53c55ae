package main

import (
	"errors"
	"fmt"
	"os"
)

// canRun reports, in one line, why this process cannot run the daemon.
func canRun() error {
	if os.Geteuid() != 0 && !hasNetAdmin() {
		return errors.New("run needs root (or CAP_NET_ADMIN) to create a TUN device; try sudo")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return fmt.Errorf("no TUN support: /dev/net/tun is missing (%v); load the tun module", err)
	}
	return nil
}
