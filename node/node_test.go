package node

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"switchyard/config"
	"switchyard/packet"
	"switchyard/packet/packettest"
	_ "switchyard/protocols/udp"
	"switchyard/stats"
)

// freePort returns a UDP port on 127.0.0.1 that is free right now.
func freePort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// loopConfig routes 10.90.0.0/24 to a udp protocol whose peer is itself, so
// every packet read from the device comes back to it through the injector.
func loopConfig(t *testing.T, port int) *config.Config {
	t.Helper()
	yaml := fmt.Sprintf(`
node: {name: loop}
tun: {name: sytest0, mtu: 1420, addresses: [10.90.0.1/24, "fd90::1/64"], install_routes: false}
batch: {max_packets: 128, pool_buffers: 1024}
mailbox: {capacity: 1024, policy: drop_newest}
supervision: {max_restarts: 3, within: 10s, backoff: 10ms}
routes:
  - {prefix: 10.90.0.0/24, to: self}
  - {prefix: 10.66.0.0/16, action: reject}
  - {prefix: 10.67.0.0/16, action: drop}
protocols:
  - name: self
    type: udp
    settings: {listen: "127.0.0.1:%d", peer: "127.0.0.1:%d"}
`, port, port)
	cfg, err := config.Parse("loop.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func actorByName(s Snapshot, name string) stats.Row {
	for _, a := range s.Actors {
		if a.Name == name {
			return a
		}
	}
	return stats.Row{}
}

func TestNodeLoopsPacketsThroughUDP(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dev := packettest.New(64)
	n, err := New(loopConfig(t, freePort(t)), Options{Device: dev})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}

	const count = 500
	src, dst := [4]byte{10, 90, 0, 1}, [4]byte{10, 90, 0, 2}
	var sent []string
	for i := 0; i < count; i++ {
		p := packettest.IPv4(src, dst, 100+i%1300, []byte(fmt.Sprintf("packet-%04d", i)))
		sent = append(sent, string(p))
		dev.Inject(p)
	}
	// Malformed, no route, drop route and reject route.
	dev.Inject([]byte{0x45, 0, 0}, packettest.IPv4(src, [4]byte{192, 0, 2, 1}, 60, nil),
		packettest.IPv4(src, [4]byte{10, 67, 0, 1}, 60, nil), packettest.IPv4(src, [4]byte{10, 66, 0, 1}, 60, nil))

	deadline := time.Now().Add(5 * time.Second)
	for len(dev.Written()) < count+1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	got := dev.Written()
	n.Stop()

	// The ICMP error for the rejected packet is written too, in any order
	// relative to the looped packets.
	var looped []string
	icmp := 0
	for _, p := range got {
		if len(p) > 9 && p[9] == 1 {
			icmp++
			continue
		}
		looped = append(looped, string(p))
	}
	if icmp != 1 {
		t.Errorf("ICMP errors written = %d, want 1", icmp)
	}
	if len(looped) != count {
		t.Fatalf("packets back through the loop = %d, want %d; stats: %+v", len(looped), count, n.Stats().Actors)
	}
	for i := range sent {
		if looped[i] != sent[i] {
			t.Fatalf("packet %d differs or is out of order", i)
		}
	}

	s := n.Stats()
	rt := actorByName(s, "router")
	for reason, want := range map[string]uint64{"malformed": 1, "no_route": 1, "route_drop": 1, "rejected": 1} {
		if got := rt.Drops[reason]; got != want {
			t.Errorf("router drops[%s] = %d, want %d", reason, got, want)
		}
	}
	for _, a := range s.Actors {
		if got, want := a.InPackets, a.OutPackets+a.DroppedTotal()+a.Queued(); got != want {
			t.Errorf("%s: in %d != out %d + dropped %d + queued %d", a.Name, a.InPackets, a.OutPackets, a.DroppedTotal(), a.Queued())
		}
	}
	if got, want := actorByName(s, "self").OutPackets, uint64(count); got != want {
		t.Errorf("self out = %d, want %d", got, want)
	}
	if err := n.Pool().CheckLeaks(); err != nil {
		t.Error(err)
	}
}

func TestCheckReportsUnknownProtocolType(t *testing.T) {
	cfg, err := config.Parse("x.yaml", []byte(`
routes: [{prefix: 10.0.0.0/8, to: p}]
protocols:
  - name: p
    type: carrier-pigeon
`))
	if err != nil {
		t.Fatal(err)
	}
	err = Check(cfg)
	if err == nil {
		t.Fatal("Check accepted an unknown protocol type")
	}
	if got, want := err.Error(), `x.yaml:5:11: protocols[0].type: unknown protocol type "carrier-pigeon"`; !strings.HasPrefix(got, want) {
		t.Fatalf("error = %q, want prefix %q", got, want)
	}
}

func TestMemoryBound(t *testing.T) {
	cfg, err := config.Parse("m.yaml", []byte(`
batch: {pool_buffers: 1024}
hosts:
  - {name: h, listen: "127.0.0.1:7100", spawn: true}
  - {name: g, listen: "127.0.0.1:7101", spawn: true, transport: grpc}
protocols:
  - {name: a, type: udp, host: h, settings: {listen: "127.0.0.1:7000", peer: "127.0.0.1:7001"}}
  - {name: b, type: udp, host: g, settings: {listen: "127.0.0.1:7002", peer: "127.0.0.1:7003"}}
routes:
  - {prefix: 10.1.0.0/16, to: a}
  - {prefix: 10.2.0.0/16, to: b}
`))
	if err != nil {
		t.Fatal(err)
	}
	m := MemoryBound(cfg)
	pool := int64(1024) * packet.BufferBytes
	if m.PoolBytes != pool || m.Hosts != 2 || m.Regions != 1 {
		t.Errorf("pool %d, hosts %d, regions %d; want %d, 2, 1 (one instance over shm)", m.PoolBytes, m.Hosts, m.Regions, pool)
	}
	if want := 3*(pool+RuntimeHeadroomBytes) + m.RegionBytes; m.Total() != want {
		t.Errorf("total %d, want %d", m.Total(), want)
	}
}
