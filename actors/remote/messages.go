package remote

import (
	"fmt"

	"github.com/asynkron/protoactor-go/actor"

	"switchyard/actors/remote/wire"
)

// unwrap returns the envelope a remote message carries and its sender.
func unwrap(m any) (*wire.Envelope, *actor.PID) {
	switch v := m.(type) {
	case *wire.Envelope:
		return v, nil
	case *actor.MessageEnvelope:
		env, _ := v.Message.(*wire.Envelope)
		return env, v.Sender
	}
	return nil, nil
}

func errDuplicate(id string) error {
	return fmt.Errorf("remote: process id %q already registered", id)
}
