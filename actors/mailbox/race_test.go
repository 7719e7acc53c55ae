//go:build race

package mailbox

// raceEnabled: under -race sync.Pool drops items at random, so batch
// headers are reallocated and allocation counts are not meaningful.
const raceEnabled = true
