package actors

import "time"

// Limits of the actors. Every number has its unit and its reason.
const (
	// ReadErrorBackoff (10 ms) is how long a reader goroutine pauses after a
	// read error that is not a shutdown, so a broken device cannot spin a core.
	ReadErrorBackoff = 10 * time.Millisecond
)
