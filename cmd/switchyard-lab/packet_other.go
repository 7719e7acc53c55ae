//go:build !linux

package main

import "errors"

// sendToDevice needs Linux's AF_PACKET sockets.
func sendToDevice(int, string, [][]byte) error {
	return errors.New("tun-inject needs Linux (AF_PACKET sockets)")
}
