package stage

import (
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"

	"switchyard/stats"
)

// Target is one forwarding destination of the router: a protocol instance.
type Target struct {
	Name  string
	PID   *actor.PID
	Stats *stats.Counters // the protocol's outbound counters
	down  atomic.Bool
}

// SetDown marks the target as stopped for good (its routes drop as
// protocol_down) or up again.
func (t *Target) SetDown(down bool) { t.down.Store(down) }

// Down reports whether the target is stopped for good.
func (t *Target) Down() bool { return t.down.Load() }
