package main

import (
	"fmt"
	"syscall"
)

// sendToDevice writes each packet to the device as if it came in on it,
// through an AF_PACKET socket (tun-inject).
func sendToDevice(ifindex int, dev string, pkts [][]byte) error {
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_DGRAM, 0)
	if err != nil {
		return fmt.Errorf("packet socket: %w", err)
	}
	defer syscall.Close(fd)
	for i, p := range pkts {
		proto := uint16(syscall.ETH_P_IP)
		if p[0]>>4 == 6 {
			proto = syscall.ETH_P_IPV6
		}
		sa := &syscall.SockaddrLinklayer{Protocol: htons(proto), Ifindex: ifindex}
		if err := syscall.Sendto(fd, p, 0, sa); err != nil {
			return fmt.Errorf("packet %d: sendto %s: %w", i, dev, err)
		}
	}
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
