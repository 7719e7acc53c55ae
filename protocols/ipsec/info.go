package ipsec

// Per-SA statistics for GET /stats (`info`), `switchyard stats` and the
// Prometheus gauges. The IKE goroutine publishes a snapshot of what was
// negotiated whenever it changes; the live counters (packets, bytes) are
// read from the ESP SAs' atomics at snapshot time, off the data path.

import (
	"fmt"
	"net/netip"
	"time"

	"switchyard/protocols/ipsec/esp"
	"switchyard/stats"
)

// Info is the instance's `info` in /stats.
type Info struct {
	Mode         string         `json:"mode"`
	State        string         `json:"state"` // connecting, established, down
	Peer         netip.Addr     `json:"peer"`
	IKE          *IKEInfo       `json:"ike,omitempty"`
	Child        *ChildInfo     `json:"child,omitempty"`
	VIP          netip.Addr     `json:"vip,omitzero"`
	Established  uint64         `json:"established"`
	AuthFailures uint64         `json:"auth_failures"`
	Failures     uint64         `json:"failures"`
	Retransmits  uint64         `json:"retransmits"`
	BadMessages  uint64         `json:"bad_ike_messages"`
	QueueFull    uint64         `json:"ike_queue_full"` // on the IKE port; on 4500 see the drops
	CookiesSent  uint64         `json:"cookies_sent"`
	ChildRekeys  uint64         `json:"child_rekeys"`
	IKERekeys    uint64         `json:"ike_rekeys"`
	Routes       []netip.Prefix `json:"routes,omitempty"`
}

// IKEInfo is the IKE SA.
type IKEInfo struct {
	SPIi      string    `json:"spi_i"`
	SPIr      string    `json:"spi_r"`
	Initiator bool      `json:"initiator"`
	Algorithm string    `json:"algorithm"`
	Since     time.Time `json:"since"`
}

// ChildInfo is the CHILD SA.
type ChildInfo struct {
	SPIIn      string    `json:"spi_in"`
	SPIOut     string    `json:"spi_out"`
	Algorithm  string    `json:"algorithm"`
	ESN        bool      `json:"esn"`
	Since      time.Time `json:"since"`
	InPackets  uint64    `json:"in_packets"`
	InBytes    uint64    `json:"in_bytes"`
	OutPackets uint64    `json:"out_packets"`
	OutBytes   uint64    `json:"out_bytes"`

	in  *esp.Inbound
	out *esp.Outbound
}

// saSnapshot is what the IKE goroutine publishes.
type saSnapshot struct {
	state  string
	ike    *IKEInfo
	child  *ChildInfo
	vip    netip.Addr
	routes []netip.Prefix
}

// snapshot publishes sa's state (nil: none) for Info.
func (c *controller) snapshot(sa *ikeSA) {
	s := &saSnapshot{state: "connecting"}
	if sa == nil {
		s.state = "down"
	}
	if sa != nil && sa.state == stateEstablished {
		s.state = "established"
		s.ike = &IKEInfo{SPIi: fmt.Sprintf("%016x", sa.spii), SPIr: fmt.Sprintf("%016x", sa.spir), Initiator: sa.initiator,
			Algorithm: fmt.Sprintf("%s/%s/%s", encrName(sa.prop.Encr, sa.prop.KeyLen), prfName(sa.prop.PRF), dhName(sa.prop.DH)),
			Since:     sa.established}
		s.vip = sa.vip
		if ch := sa.child; ch != nil {
			s.child = &ChildInfo{SPIIn: fmt.Sprintf("%08x", ch.in.SPI), SPIOut: fmt.Sprintf("%08x", ch.out.SPI),
				Algorithm: encrName(ch.prop.Encr, ch.prop.KeyLen), ESN: ch.esn, Since: ch.since, in: ch.in, out: ch.out}
			s.routes = ch.remote
		}
	}
	c.a.snap.Store(s)
}

// info is the SetInfo function of the instance.
func (a *ipsecActor) info() any {
	in := Info{Mode: a.set.Mode, State: "down", Peer: a.set.Remote,
		Established: a.ike.Established.Load(), AuthFailures: a.ike.AuthFailures.Load(), Failures: a.ike.Failures.Load(),
		Retransmits: a.ike.Retransmits.Load(), BadMessages: a.ike.BadMessages.Load(), QueueFull: a.ike.QueueFull.Load(), CookiesSent: a.ike.CookiesSent.Load(),
		ChildRekeys: a.ike.ChildRekeys.Load(), IKERekeys: a.ike.IKERekeys.Load()}
	if s := a.snap.Load(); s != nil {
		in.State, in.IKE, in.VIP, in.Routes = s.state, s.ike, s.vip, s.routes
		if s.child != nil {
			ch := *s.child
			ch.InPackets, ch.InBytes = ch.in.Packets(), ch.in.Bytes()
			ch.OutPackets, ch.OutBytes = ch.out.Seq(), ch.out.Bytes()
			in.Child = &ch
		}
	}
	return in
}

// Gauges implements stats.MetricsInfo.
func (in Info) Gauges() []stats.Gauge {
	up := 0.0
	if in.State == "established" {
		up = 1
	}
	g := []stats.Gauge{
		{Name: "ipsec_sa_up", Help: "1 when the IKE SA and its CHILD SA are established.", Value: up},
		{Name: "ipsec_auth_failures", Help: "IKE authentications refused (either way) since the instance started.", Value: float64(in.AuthFailures)},
		{Name: "ipsec_rekeys", Help: "Rekeys since the instance started, by SA kind.", Labels: map[string]string{"sa": "child"}, Value: float64(in.ChildRekeys)},
		{Name: "ipsec_rekeys", Help: "Rekeys since the instance started, by SA kind.", Labels: map[string]string{"sa": "ike"}, Value: float64(in.IKERekeys)},
	}
	if ch := in.Child; ch != nil {
		for _, d := range []struct {
			dir           string
			packets, byts uint64
		}{{"in", ch.InPackets, ch.InBytes}, {"out", ch.OutPackets, ch.OutBytes}} {
			l := map[string]string{"direction": d.dir}
			g = append(g,
				stats.Gauge{Name: "ipsec_child_sa_packets", Help: "Packets on the current CHILD SA.", Labels: l, Value: float64(d.packets)},
				stats.Gauge{Name: "ipsec_child_sa_bytes", Help: "Inner bytes on the current CHILD SA.", Labels: l, Value: float64(d.byts)})
		}
		g = append(g, stats.Gauge{Name: "ipsec_child_sa_age_seconds", Help: "Seconds since the current CHILD SA was established.",
			Value: time.Since(ch.Since).Seconds()})
	}
	return g
}
