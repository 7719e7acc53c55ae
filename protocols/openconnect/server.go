package openconnect

import (
	"fmt"

	"github.com/asynkron/protoactor-go/actor"

	"switchyard/config"
	"switchyard/protocols"
)

// ServerSettings are the settings of a server instance.
type ServerSettings struct{}

func parseServer(s config.Settings, base string, raw *rawSettings, fail failFunc) ServerSettings {
	fail("mode", "server mode is not implemented yet")
	return ServerSettings{}
}

func newServerActor(name string, set ServerSettings, env protocols.Env) actor.Actor {
	panic(fmt.Sprintf("openconnect %s: server mode is not implemented", name))
}
