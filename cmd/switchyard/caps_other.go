//go:build !linux

package main

// capReport is what restrictCapabilities found and did.
type capReport struct {
	Before, After procCaps
	// Note says why nothing was restricted, when nothing was.
	Note string
}

// restrictCapabilities does nothing outside Linux: capabilities are
// Linux's. The daemon runs as root there; see README, Security.
func restrictCapabilities(capSet) (capReport, error) {
	return capReport{Note: "capabilities are Linux-only; nothing restricted"}, nil
}
