package stage

import "time"

// Limits of the stages. Every number has its unit and its reason.
const (
	// SpawnTimeout (5 s) bounds how long a caller waits for the protocol
	// supervisor to spawn or stop a child: it answers in its next turn, so
	// only a wedged actor system takes this long.
	SpawnTimeout = 5 * time.Second
)
