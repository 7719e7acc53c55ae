// Package protocoltest holds protocols that exist only for tests. They are
// compiled into the switchyard binary only with the build tag testprotocols
// (cmd/switchyard/testprotocols.go), never into a release.
//
// Both wrap the udp protocol: they carry packets to the far side exactly like
// `type: udp` (same listen/peer settings, same inbound path), and add one
// misbehaviour on the outbound path:
//
//   - slow sleeps `delay` on every batch before sending it, so it is slower
//     than any offered load and its mailbox fills up (the overload test).
//
//   - panicky panics on a batch that holds a packet containing `marker`, so
//     its supervisor must restart it (the fault test).
//
//     protocols:
//
//   - name: peer
//     type: slow            # or panicky
//     settings:
//     listen: 10.91.0.1:7000
//     peer: 10.91.0.2:7000
//     delay: 2ms          # slow only; default 2ms
//     marker: SWITCHYARD-PANIC   # panicky only; the default
package protocoltest

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"switchyard/config"
	"switchyard/packet"
	"switchyard/protocols"
	_ "switchyard/protocols/udp" // the transport both protocols wrap
)

// Defaults of the settings.
const (
	// DefaultDelay (2 ms) is slow's sleep per batch: at one packet per batch
	// (unsegmented UDP from the TUN) it passes at most 500 packets/s.
	DefaultDelay = 2 * time.Millisecond
	// DefaultMarker is the byte string that makes panicky panic.
	DefaultMarker = "SWITCHYARD-PANIC"
)

func init() {
	protocols.Register(protocols.Info{Name: "slow", Parse: parseSlow, New: newSlow})
	protocols.Register(protocols.Info{Name: "panicky", Parse: parsePanicky, New: newPanicky})
}

// SlowSettings is a parsed slow settings block.
type SlowSettings struct {
	Delay time.Duration // sleep per batch
	UDP   any           // what the udp protocol's Parse returned
}

// PanickySettings is a parsed panicky settings block.
type PanickySettings struct {
	Marker []byte // a packet containing it makes the actor panic
	UDP    any    // what the udp protocol's Parse returned
}

// Endpoints and ListenPorts implement protocols.Underlay with the udp
// settings inside.
func (s SlowSettings) Endpoints() []netip.AddrPort    { return underlay(s.UDP).Endpoints() }
func (s SlowSettings) ListenPorts() []uint16          { return underlay(s.UDP).ListenPorts() }
func (s PanickySettings) Endpoints() []netip.AddrPort { return underlay(s.UDP).Endpoints() }
func (s PanickySettings) ListenPorts() []uint16       { return underlay(s.UDP).ListenPorts() }
func underlay(udp any) protocols.Underlay {
	if u, ok := udp.(protocols.Underlay); ok {
		return u
	}
	return noUnderlay{}
}

type noUnderlay struct{}

func (noUnderlay) Endpoints() []netip.AddrPort { return nil }
func (noUnderlay) ListenPorts() []uint16       { return nil }

type rawSlow struct {
	Listen string          `yaml:"listen"`
	Peer   string          `yaml:"peer"`
	Delay  config.Duration `yaml:"delay"`
}

type rawPanicky struct {
	Listen string `yaml:"listen"`
	Peer   string `yaml:"peer"`
	Marker string `yaml:"marker"`
}

func parseSlow(s config.Settings) (any, error) {
	raw := rawSlow{Delay: config.Duration(DefaultDelay)}
	if err := s.Decode(&raw); err != nil {
		return nil, err
	}
	udp, err := parseUDP(s, raw.Listen, raw.Peer)
	if err != nil {
		return nil, err
	}
	return SlowSettings{Delay: time.Duration(raw.Delay), UDP: udp}, nil
}

func parsePanicky(s config.Settings) (any, error) {
	raw := rawPanicky{Marker: DefaultMarker}
	if err := s.Decode(&raw); err != nil {
		return nil, err
	}
	if raw.Marker == "" {
		return nil, config.Errors{s.Errorf("marker", "must not be empty")}
	}
	udp, err := parseUDP(s, raw.Listen, raw.Peer)
	if err != nil {
		return nil, err
	}
	return PanickySettings{Marker: []byte(raw.Marker), UDP: udp}, nil
}

// parseUDP validates listen and peer with the udp protocol's own Parse, on a
// block holding just those two keys, and moves its errors to the positions of
// the keys in the real block.
func parseUDP(s config.Settings, listen, peer string) (any, error) {
	info, ok := protocols.Lookup("udp")
	if !ok {
		return nil, errors.New("protocoltest: the udp protocol is not registered")
	}
	var y strings.Builder
	if listen != "" {
		fmt.Fprintf(&y, "listen: %s\n", strconv.Quote(listen))
	}
	if peer != "" {
		fmt.Fprintf(&y, "peer: %s\n", strconv.Quote(peer))
	}
	us, err := config.NewSettings(s.Pos().File, s.Path(), []byte(y.String()))
	if err != nil {
		return nil, err
	}
	v, err := info.Parse(us)
	if err == nil {
		return v, nil
	}
	var ce config.Errors
	if !errors.As(err, &ce) {
		return nil, err
	}
	out := make(config.Errors, 0, len(ce))
	for _, e := range ce {
		field := strings.TrimPrefix(strings.TrimPrefix(e.Path, s.Path()), ".")
		out = append(out, s.Errorf(field, "%s", e.Msg))
	}
	return nil, out
}

// udpActor builds the wrapped udp actor for inst with the udp settings.
func udpActor(inst protocols.Instance, udp any) actor.Actor {
	info, ok := protocols.Lookup("udp")
	if !ok {
		panic("protocoltest: the udp protocol is not registered")
	}
	inst.Settings = udp
	return info.New(inst)
}

// slow sleeps before handing every batch to its udp actor.
type slow struct {
	delay time.Duration
	inner actor.Actor
}

func newSlow(inst protocols.Instance) actor.Actor {
	set, ok := inst.Settings.(SlowSettings)
	if !ok {
		panic(fmt.Sprintf("slow %s: settings of type %T, want protocoltest.SlowSettings", inst.Name, inst.Settings))
	}
	return &slow{delay: set.Delay, inner: udpActor(inst, set.UDP)}
}

// Receive sleeps on a batch, then delegates every message to udp (which takes
// ownership of the batch).
func (s *slow) Receive(ctx actor.Context) {
	if _, ok := ctx.Message().(*packet.Batch); ok {
		time.Sleep(s.delay)
	}
	s.inner.Receive(ctx)
}

// panicky panics on a batch with a marked packet, before udp sees it, so the
// batch is still in hand and the supervision wrapper drops it as crashed.
type panicky struct {
	name   string
	marker []byte
	inner  actor.Actor
}

func newPanicky(inst protocols.Instance) actor.Actor {
	set, ok := inst.Settings.(PanickySettings)
	if !ok {
		panic(fmt.Sprintf("panicky %s: settings of type %T, want protocoltest.PanickySettings", inst.Name, inst.Settings))
	}
	return &panicky{name: inst.Name, marker: set.Marker, inner: udpActor(inst, set.UDP)}
}

// Receive panics on a marked batch and otherwise delegates to udp.
func (p *panicky) Receive(ctx actor.Context) {
	if b, ok := ctx.Message().(*packet.Batch); ok {
		for i := range b.Len() {
			if bytes.Contains(b.Packet(i), p.marker) {
				panic(fmt.Sprintf("panicky %s: packet %d of the batch carries the marker %q", p.name, i, p.marker))
			}
		}
	}
	p.inner.Receive(ctx)
}
