//go:build race

package config

// raceEnabled: the race detector makes the parser several times slower, so
// parse-time bounds mean nothing under -race.
const raceEnabled = true
