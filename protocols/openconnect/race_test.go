//go:build race

package openconnect

const raceEnabled = true
