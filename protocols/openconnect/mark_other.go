//go:build !linux

package openconnect

import "syscall"

// markControl: no SO_MARK here (the node sets no mark either).
func markControl(uint32) func(network, address string, c syscall.RawConn) error { return nil }
