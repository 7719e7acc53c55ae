//go:build !linux && !darwin && !freebsd

package node

import (
	"errors"
	"runtime"

	"golang.zx2c4.com/wireguard/tun"
)

const (
	marksSockets     = false
	connectedSubnets = false
)

var lookupRoute lookupFunc

// createTUN: a TUN the node creates itself is supported on Linux, macOS and
// FreeBSD.
func createTUN(string, int) (tun.Device, string, error) {
	return nil, "", errors.New("creating a TUN device is supported on linux, darwin and freebsd, not " + runtime.GOOS)
}

func newTunControl(string) (tunControl, error) {
	return nil, errors.New("TUN addresses and routes are supported on linux, darwin and freebsd, not " + runtime.GOOS)
}
