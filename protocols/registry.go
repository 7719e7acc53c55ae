// Package protocols is the registry of protocol implementations. Each
// protocol lives in its own folder (protocols/udp, protocols/wireguard, …),
// registers itself in init with Register, and is chosen by the `type` of a
// `protocols:` entry in the config.
//
// A protocol instance is a protoactor actor. Its contract:
//
//  1. It receives *packet.Batch messages from the router and takes ownership
//     of each: it sends the packets on its transport and releases the batch
//     (or drops and counts them, then releases). Env.ToNetwork counts them out.
//  2. On *actor.Started it opens its transport and starts its reader
//     goroutines; readers receive datagrams in batches into pooled buffers,
//     turn them into IP packets and Send a *packet.Batch to Env.Injector
//     (ownership passes), counting on Env.FromNetwork.
//  3. On *actor.Stopping and *actor.Restarting it closes the transport and
//     waits for its readers to exit, so a restart never leaks a socket or a
//     goroutine.
//
// Construction (Info.New) has no side effects: nothing is opened until the
// actor starts, so a config can be checked without touching the system.
package protocols

import (
	"fmt"
	"net/netip"
	"sort"
	"sync"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"

	"switchyard/config"
	"switchyard/packet"
	"switchyard/stats"
)

// Info describes one protocol implementation.
type Info struct {
	// Name is the protocol's type name in the config (`type: udp`).
	Name string
	// Parse decodes and validates an instance's settings block. It is pure
	// and fast; errors carry the config path and file:line:col (use
	// config.Settings.Decode and config.Settings.Errorf).
	Parse func(s config.Settings) (any, error)
	// New returns the actor for one instance, given the value Parse
	// returned. It must not open anything: that happens on *actor.Started.
	New func(inst Instance) actor.Actor
}

// Instance is what a protocol actor is given when it is created.
type Instance struct {
	Name     string // the instance name from the config ("peer-b")
	Settings any    // what Info.Parse returned
	Env      Env
}

// Env connects a protocol instance to the rest of the node.
type Env struct {
	// System is the actor system; reader goroutines send with System.Root.
	System *actor.ActorSystem
	// Injector receives inbound batches; sending one passes its ownership.
	Injector *actor.PID
	// Pool supplies buffers and batch headers.
	Pool *packet.Pool
	// ToNetwork counts the outbound stage (router → protocol → network):
	// the actor's mailbox counts In and mailbox drops on these counters; the
	// protocol counts Out (what it handed to its transport) and its own
	// drops. Its stats row is the instance's name ("peer-b").
	ToNetwork *stats.Counters
	// FromNetwork counts the inbound stage (network → protocol →
	// injector): In for what the transport received, Out for what went to
	// the injector, and drops. Its stats row is "<name>.recv".
	FromNetwork *stats.Counters
	// MaxBatch is the most packets per batch the node is configured for
	// (batch.max_packets, ≤ packet.MaxBatch).
	MaxBatch int
	// Log is the instance's logger. Per-packet problems must be
	// rate-limited or counted, never logged one line per packet.
	Log *zap.Logger
	// Mark is the firewall mark (SO_MARK) the instance sets on its sockets;
	// 0 sets none. The daemon marks its protocols' sockets so that a full
	// tunnel's policy rules send their own datagrams around the tunnel
	// (node/routes.go). Setting a mark needs CAP_NET_ADMIN.
	Mark uint32
	// Session, when set, is told about the instance's session: called with
	// what the peer assigned when a session comes up or changes, and with
	// the zero Session when it ends. Any goroutine may call it; it must not
	// be called per packet. Use ReportSession, which allows a nil Session.
	Session func(Session)
}

// Session is what a protocol's peer gave this end when a session came up:
// the tunnel addresses it assigned (openconnect's X-CSTP-Address, OpenVPN's
// pushed ifconfig, an IKEv2 virtual IP) and the routes to send into this
// instance (pushed routes, IKEv2 traffic selectors), already filtered by the
// instance's own settings (`accept_routes`). The node adds Addrs to its TUN
// and routes Routes to the instance, and removes both when the session ends
// or the instance stops. The zero Session means "no session".
type Session struct {
	Addrs  []netip.Prefix
	Routes []netip.Prefix
}

// IsZero reports whether s is the zero Session (no session).
func (s Session) IsZero() bool { return len(s.Addrs) == 0 && len(s.Routes) == 0 }

// ReportSession passes s to e.Session when it is set.
func (e Env) ReportSession(s Session) {
	if e.Session != nil {
		e.Session(s)
	}
}

// Underlay is implemented by the parsed settings of a protocol whose
// transport talks to fixed remote addresses or listens on fixed ports. The
// node refuses a route that would capture an endpoint (the protocol's own
// datagrams would loop into the TUN), and gives a protocol host
// CAP_NET_BIND_SERVICE only when one of its ports is below 1024.
type Underlay interface {
	// Endpoints are the remote addresses the transport sends to, as
	// configured (a peer that roams to another address is not known here).
	Endpoints() []netip.AddrPort
	// ListenPorts are the local ports the transport binds; 0 (the kernel
	// chooses) is left out.
	ListenPorts() []uint16
}

var (
	mu       sync.RWMutex
	registry = map[string]Info{}
)

// Register adds a protocol. It is called from init and panics on a
// duplicate or incomplete Info, which is a programming error.
func Register(info Info) {
	if info.Name == "" || info.Parse == nil || info.New == nil {
		panic(fmt.Sprintf("protocols: incomplete registration %+v", info))
	}
	mu.Lock()
	defer mu.Unlock()
	if _, dup := registry[info.Name]; dup {
		panic(fmt.Sprintf("protocols: %q registered twice", info.Name))
	}
	registry[info.Name] = info
}

// Lookup returns the protocol registered under name.
func Lookup(name string) (Info, bool) {
	mu.RLock()
	defer mu.RUnlock()
	info, ok := registry[name]
	return info, ok
}

// Names lists the registered protocol names, sorted.
func Names() []string {
	mu.RLock()
	defer mu.RUnlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
