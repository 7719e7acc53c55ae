//go:build !linux

package ipsec

import (
	"errors"
	"net"
)

func setMark(c *net.UDPConn, mark uint32) error {
	return errors.New("firewall marks are a Linux feature")
}
