package remote

// Sessions of instances that run on a protocol host (protocols.Session):
//
//  1. On the host, an instance's Env.Session sends a sessionReport to the
//     host actor (any goroutine, never waiting). The host actor sends it on,
//     as a SESSION envelope (msgpack SessionReport), to the daemon that
//     opened the instance — only while that instance is the one it runs
//     under the name (a report of a replaced instance is dropped). A new
//     incarnation of the instance (the host's supervisor restarted it)
//     reports the zero Session first.
//  2. On the daemon, the host link decodes it: bounded (MaxSessionBytes,
//     MaxSessionAddrs, MaxSessionRoutes), every prefix valid, for an
//     instance attached and opened on this link; anything else is counted
//     as malformed on the remote row (HostSpec.Bad) and dropped. A good
//     report goes to HostSpec.Session, which applies it as in process.
//  3. When the host goes down (its process exited, its connection was
//     lost), the link reports the zero Session for each of its instances.

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/vmihailenco/msgpack/v5"

	"switchyard/actors/remote/wire"
	"switchyard/protocols"
	"switchyard/stats"
)

// Bounds of a session report.
const (
	// MaxSessionAddrs (16 prefixes) bounds the addresses one session
	// reports: a VPN peer assigns one or two (IPv4, IPv6).
	MaxSessionAddrs = 16
	// MaxSessionRoutes (1024 prefixes) bounds the routes one session
	// reports: gateways push tens, AnyConnect's own limit is about 200
	// split-include entries.
	MaxSessionRoutes = 1024
	// MaxSessionBytes (64 KiB) bounds a SESSION envelope's payload: 1040
	// prefixes of at most 43 characters plus the name fit in it.
	MaxSessionBytes = 64 << 10
)

// SessionReport is an instance's session on the wire (host → daemon).
// Prefixes travel as text ("10.0.0.2/24"); empty lists are the zero
// Session.
type SessionReport struct {
	Name   string   `msgpack:"name"`
	Addrs  []string `msgpack:"addrs,omitempty"`
	Routes []string `msgpack:"routes,omitempty"`
}

// sessionReport is an instance's Env.Session call, for the host actor.
type sessionReport struct {
	in *instance
	s  protocols.Session
}

// reportSession (host actor) sends r's session to the daemon that owns its
// instance, if the instance still runs.
func (a *hostActor) reportSession(ctx actor.Context, r *sessionReport) {
	if cur, ok := a.instances[r.in.name]; !ok || cur != r.in {
		return // closed or replaced: the daemon cleared it
	}
	env, err := encodeSession(r.in.name, r.s)
	if err != nil {
		a.h.registry.Row("remote", "remote").Drop(stats.Oversized, 1)
		a.h.log.Error("encode session report: not sent")
		return
	}
	ctx.Send(r.in.owner, env)
}

// encodeSession returns the SESSION envelope of s, refusing one past the
// bounds (a protocol reports what it was given: it should not be).
func encodeSession(name string, s protocols.Session) (*wire.Envelope, error) {
	if len(s.Addrs) > MaxSessionAddrs || len(s.Routes) > MaxSessionRoutes {
		return nil, fmt.Errorf("session of %q: %d addresses, %d routes: more than %d, %d",
			name, len(s.Addrs), len(s.Routes), MaxSessionAddrs, MaxSessionRoutes)
	}
	r := SessionReport{Name: name}
	for _, p := range s.Addrs {
		r.Addrs = append(r.Addrs, p.String())
	}
	for _, p := range s.Routes {
		r.Routes = append(r.Routes, p.String())
	}
	env, err := encodeControl(wire.Kind_SESSION, r)
	if err == nil && len(env.Payload) > MaxSessionBytes {
		err = fmt.Errorf("session of %q: %d bytes, more than %d", name, len(env.Payload), MaxSessionBytes)
	}
	return env, err
}

// errSession is a SESSION envelope that does not decode or breaks a bound.
var errSession = errors.New("bad session report")

// decodeSession decodes and checks a SESSION envelope.
func decodeSession(env *wire.Envelope) (string, protocols.Session, error) {
	var s protocols.Session
	if len(env.Payload) > MaxSessionBytes {
		return "", s, fmt.Errorf("%w: %d bytes", errSession, len(env.Payload))
	}
	var r SessionReport
	if err := msgpack.Unmarshal(env.Payload, &r); err != nil {
		return "", s, fmt.Errorf("%w: %v", errSession, err)
	}
	if r.Name == "" || len(r.Addrs) > MaxSessionAddrs || len(r.Routes) > MaxSessionRoutes {
		return "", s, fmt.Errorf("%w: name %q, %d addresses, %d routes", errSession, r.Name, len(r.Addrs), len(r.Routes))
	}
	parse := func(in []string) ([]netip.Prefix, error) {
		var out []netip.Prefix
		for _, t := range in {
			p, err := netip.ParsePrefix(t)
			if err != nil {
				return nil, fmt.Errorf("%w: %v", errSession, err)
			}
			out = append(out, p)
		}
		return out, nil
	}
	var err error
	if s.Addrs, err = parse(r.Addrs); err != nil {
		return "", protocols.Session{}, err
	}
	if s.Routes, err = parse(r.Routes); err != nil {
		return "", protocols.Session{}, err
	}
	return r.Name, s, nil
}

// session (host link) takes a SESSION envelope from the host.
func (l *hostLink) session(env *wire.Envelope) {
	name, s, err := decodeSession(env)
	if err != nil {
		l.badSession(err)
		return
	}
	if a, ok := l.insts[name]; !ok || !a.opened || l.state == hostDown {
		return // not (or no longer) this link's: cleared already
	}
	if l.sessions == nil {
		l.sessions = map[string]bool{}
	}
	if s.IsZero() {
		delete(l.sessions, name)
	} else {
		l.sessions[name] = true
	}
	if l.spec.Session != nil {
		l.spec.Session(name, s)
	}
}

func (l *hostLink) badSession(err error) {
	if l.spec.Bad != nil {
		l.spec.Bad.Drop(stats.Malformed, 1)
	}
	l.sessLog.Event(l.spec.Log, "bad session report from protocol host", l.spec.Name, 1, err)
}

// endSessions reports the zero Session for every instance that has one:
// the host that ran them is gone.
func (l *hostLink) endSessions() {
	for name := range l.sessions {
		if l.spec.Session != nil {
			l.spec.Session(name, protocols.Session{})
		}
	}
	clear(l.sessions)
}
