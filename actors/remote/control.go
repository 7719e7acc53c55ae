package remote

// Control messages between a daemon and a protocol host. They travel as
// msgpack in an envelope's payload, like batches, and are rare (one per
// instance and connection, and a stats report a second).

import (
	"github.com/asynkron/protoactor-go/actor"
	"github.com/vmihailenco/msgpack/v5"

	"switchyard/actors/remote/wire"
	"switchyard/stats"
)

// Well-known actor ids.
const (
	// HostActorID is the id of a host's control actor: the daemon sends
	// OPEN and CLOSE to PID{Address: host listen, Id: HostActorID}.
	HostActorID = "switchyard-host"
	// ReceiverPrefix + instance name is a link receiver's id, on both sides.
	ReceiverPrefix = "sy-in/"
	// AckPrefix + instance name is a link ack process's id, on both sides.
	AckPrefix = "sy-ack/"
)

// PIDRef is a PID on the wire.
type PIDRef struct {
	Address string `msgpack:"a"`
	ID      string `msgpack:"i"`
}

func refOf(p *actor.PID) PIDRef { return PIDRef{p.Address, p.Id} }

// PID returns the PID.
func (r PIDRef) PID() *actor.PID { return actor.NewPID(r.Address, r.ID) }

// Open asks a host to run one protocol instance for the daemon that sends
// it. An Open for a name the host already runs replaces that instance.
type Open struct {
	Name         string `msgpack:"name"`
	Type         string `msgpack:"type"`
	Settings     []byte `msgpack:"settings"`      // the settings block as YAML
	ConfigFile   string `msgpack:"config_file"`   // for error messages
	SettingsPath string `msgpack:"settings_path"` // "protocols[1].settings"
	MaxBatch     int    `msgpack:"max_batch"`
	Capacity     int    `msgpack:"capacity"` // the instance's mailbox, batches
	Policy       string `msgpack:"policy"`
	// CoDelTarget and CoDelInterval (ns) are the codel policy's settings
	// (mailbox.target, mailbox.interval); 0: the defaults.
	CoDelTarget   int64 `msgpack:"codel_target_ns,omitempty"`
	CoDelInterval int64 `msgpack:"codel_interval_ns,omitempty"`
	Window        int   `msgpack:"window"`
	MaxRestarts   int   `msgpack:"max_restarts"`
	Within        int64 `msgpack:"within_ns"`
	Backoff       int64 `msgpack:"backoff_ns"`
	// DaemonIn is the daemon's receiver for this instance's inbound batches
	// (transport grpc).
	DaemonIn PIDRef `msgpack:"daemon_in"`
	// SHMSocket and SHMNonce, with transport shm: the host dials the
	// daemon's handover socket, presents the nonce and receives the
	// instance's shared-memory region (shm.Dial).
	SHMSocket string `msgpack:"shm_socket,omitempty"`
	SHMNonce  string `msgpack:"shm_nonce,omitempty"`
}

// Opened answers an Open: the host's receiver for the instance's outbound
// batches, or why the instance could not start.
type Opened struct {
	Name  string `msgpack:"name"`
	In    PIDRef `msgpack:"in"`
	Error string `msgpack:"error,omitempty"`
	// Region names the shared-memory region the host attached (transport
	// shm): the daemon hands the region to its link only if it is the one
	// it created for this OPEN.
	Region string `msgpack:"region,omitempty"`
}

// Report is a host's counters.
type Report struct {
	Actors []stats.Row `msgpack:"actors"`
}

func encodeControl(kind wire.Kind, v any) (*wire.Envelope, error) {
	b, err := msgpack.Marshal(v)
	if err != nil {
		return nil, err
	}
	return &wire.Envelope{Kind: kind, Payload: b}, nil
}

func decodeControl(env *wire.Envelope, v any) error {
	return msgpack.Unmarshal(env.Payload, v)
}
