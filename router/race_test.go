//go:build race

package router

// raceEnabled: under -race sync.Pool drops items at random, so batch
// headers are reallocated and allocation counts are not meaningful.
const raceEnabled = true
