package wireguard

// Outbound flow (router → peer), in the actor's Receive:
//
//  1. *actor.Started creates the actor-fed TUN (tun.go), the filtering bind
//     (bind.go) and a device.Device on them, configures it through UAPI
//     (IpcSet), brings it up and reports EventUp.
//  2. The router sends a *packet.Batch; the actor takes ownership.
//  3. Packets that are not IP (malformed), too large for the device's
//     buffers (malformed) or whose destination no peer's allowed IPs cover
//     (no_peer) are dropped and counted — the device would drop them without
//     a word.
//  4. The rest go to the feed; the device's TUN reader copies them out
//     (counted out there), encrypts them and sends them to their peers.
//  5. *actor.Stopping and *actor.Restarting close the device, which closes
//     the TUN and the bind and waits for the device's goroutines; what was
//     still in the feed is counted as stopped.

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gaissmai/bart"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"

	"switchyard/packet"
	"switchyard/protocols"
	"switchyard/protocols/udpbind"
	"switchyard/stats"
)

// wgActor is one wireguard protocol instance.
type wgActor struct {
	name     string
	set      Settings
	env      protocols.Env
	maxBatch int

	allowed *bart.Lite // the union of every peer's allowed IPs

	newBind func() conn.Bind // udpbind.New, or a test's
	dev     atomic.Pointer[device.Device]
	tun     *feedTUN
}

func newWGActor(name string, set Settings, env protocols.Env) *wgActor {
	if env.Log == nil {
		env.Log = zap.NewNop()
	}
	maxBatch := env.MaxBatch
	if maxBatch <= 0 || maxBatch > packet.MaxBatch {
		maxBatch = packet.MaxBatch
	}
	allowed := new(bart.Lite)
	for _, p := range set.Peers {
		for _, pfx := range p.AllowedIPs {
			allowed.Insert(pfx)
		}
	}
	return &wgActor{
		name:     name,
		set:      set,
		env:      env,
		maxBatch: maxBatch,
		allowed:  allowed,
		newBind: func() conn.Bind {
			return udpbind.New(udpbind.Options{Stats: env.FromNetwork})
		},
	}
}

// Receive implements actor.Actor.
func (a *wgActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *packet.Batch:
		a.send(msg)
	case *actor.Started:
		a.start()
	case *actor.Stopping:
		a.stop()
		a.env.ToNetwork.SetInfo(nil)
	case *actor.Restarting:
		a.stop()
	}
}

// start creates, configures and brings up the device. A failure panics, so
// the supervisor logs it, counts a restart and retries after its backoff.
func (a *wgActor) start() {
	t := newFeedTUN(a.name, &a.env, a.maxBatch)
	bind := &filterBind{Bind: a.newBind(), stats: a.env.FromNetwork}
	dev := device.NewDevice(t, bind, newDeviceLogger(a.env.Log))
	if err := dev.IpcSet(a.uapi()); err != nil {
		dev.Close()
		panic(fmt.Errorf("wireguard %s: configure: %w", a.name, err))
	}
	if err := dev.Up(); err != nil {
		dev.Close()
		panic(fmt.Errorf("wireguard %s: up (listen_port %d): %w", a.name, a.set.ListenPort, err))
	}
	t.up()
	a.tun = t
	a.dev.Store(dev)
	a.env.ToNetwork.SetInfo(a.info)
	a.env.Log.Info("wireguard up", zap.String("instance", a.name),
		zap.Stringer("public_key", PublicKey(a.set.PrivateKey)),
		zap.Int("listen_port", int(a.listenPort(dev))),
		zap.Int("peers", len(a.set.Peers)))
}

// uapi renders the settings as a wireguard-go UAPI set operation.
func (a *wgActor) uapi() string {
	var b strings.Builder
	line := func(k, v string) { b.WriteString(k); b.WriteByte('='); b.WriteString(v); b.WriteByte('\n') }
	line("private_key", hex.EncodeToString(a.set.PrivateKey[:]))
	if a.set.ListenPort != 0 {
		line("listen_port", strconv.Itoa(int(a.set.ListenPort)))
	}
	if a.env.Mark != 0 {
		line("fwmark", strconv.FormatUint(uint64(a.env.Mark), 10))
	}
	line("replace_peers", "true")
	for _, p := range a.set.Peers {
		line("public_key", hex.EncodeToString(p.PublicKey[:]))
		if !p.PresharedKey.IsZero() {
			line("preshared_key", hex.EncodeToString(p.PresharedKey[:]))
		}
		if p.Endpoint.IsValid() {
			line("endpoint", p.Endpoint.String())
		}
		line("persistent_keepalive_interval", strconv.Itoa(int(p.PersistentKeepalive/time.Second)))
		line("replace_allowed_ips", "true")
		for _, pfx := range p.AllowedIPs {
			line("allowed_ip", pfx.String())
		}
	}
	return b.String()
}

// listenPort reads the port the device bound (the kernel's choice when the
// settings leave it out).
func (a *wgActor) listenPort(dev *device.Device) uint16 {
	text, err := dev.IpcGet()
	if err != nil {
		return a.set.ListenPort
	}
	for _, l := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(l, "listen_port="); ok {
			p, _ := strconv.Atoi(v)
			return uint16(p)
		}
	}
	return a.set.ListenPort
}

// send takes ownership of b: it drops what the device could not send and
// queues the rest for the device's TUN reader.
func (a *wgActor) send(b *packet.Batch) {
	if a.tun == nil {
		// Not started (the last start failed): nothing can be sent.
		a.env.ToNetwork.Drop(stats.SendError, b.Len())
		b.Release()
		return
	}
	noPeer, malformed := 0, 0
	b.Filter(func(pkt []byte) bool {
		dst, ok := packet.Destination(pkt)
		switch {
		case !ok || len(pkt) > maxPacket:
			malformed++
			return false
		case !a.allowed.Contains(dst):
			noPeer++
			return false
		}
		return true
	})
	a.env.ToNetwork.Drop(stats.Malformed, malformed)
	a.env.ToNetwork.Drop(NoPeer, noPeer)
	if b.Len() == 0 {
		b.Release()
		return
	}
	a.tun.push(b)
}

// stop closes the device (which closes the TUN and the bind and waits for
// its goroutines) and counts what was left in the feed. Calling it twice is
// harmless.
func (a *wgActor) stop() {
	dev := a.dev.Swap(nil)
	if dev != nil {
		dev.Close()
	}
	if a.tun != nil {
		a.tun.Close()
		a.tun.drain()
		a.tun = nil
	}
}

// PeerInfo is one peer's state as `switchyard stats --json` shows it.
type PeerInfo struct {
	PublicKey     string     `json:"public_key"`
	Endpoint      string     `json:"endpoint,omitempty"`
	LastHandshake *time.Time `json:"last_handshake"` // null: never
	RxBytes       uint64     `json:"rx_bytes"`
	TxBytes       uint64     `json:"tx_bytes"`
}

// Info is the instance's state in stats.
type Info struct {
	PublicKey  string     `json:"public_key"`
	ListenPort int        `json:"listen_port"`
	Peers      []PeerInfo `json:"peers"`
}

// Gauges implements stats.MetricsInfo: per peer, the Unix time of its last
// handshake (0 before the first) and, once there was one, its age.
func (in Info) Gauges() []stats.Gauge { return in.gaugesAt(time.Now()) }

func (in Info) gaugesAt(now time.Time) []stats.Gauge {
	out := make([]stats.Gauge, 0, 2*len(in.Peers))
	for _, p := range in.Peers {
		labels := map[string]string{"peer": p.PublicKey}
		ts := 0.0
		if p.LastHandshake != nil && !p.LastHandshake.IsZero() {
			ts = float64(p.LastHandshake.UnixNano()) / 1e9
			out = append(out, stats.Gauge{
				Name:   "wireguard_peer_handshake_age_seconds",
				Help:   "Seconds since the peer's last completed handshake (absent before the first).",
				Labels: labels,
				Value:  now.Sub(*p.LastHandshake).Seconds(),
			})
		}
		out = append(out, stats.Gauge{
			Name:   "wireguard_peer_last_handshake_timestamp_seconds",
			Help:   "Unix time of the peer's last completed handshake; 0 before the first.",
			Labels: labels,
			Value:  ts,
		})
	}
	return out
}

// info reads the device's peers through UAPI. It runs off the data path,
// on every stats snapshot, and is safe for concurrent use.
func (a *wgActor) info() any {
	dev := a.dev.Load()
	if dev == nil {
		return nil
	}
	text, err := dev.IpcGet()
	if err != nil {
		return nil
	}
	return parseIpcGet(text)
}

// parseIpcGet turns the text of a UAPI get operation into Info. The
// private key in it is skipped.
func parseIpcGet(text string) Info {
	var in Info
	var p *PeerInfo
	var hsSec, hsNsec int64
	flush := func() {
		if p == nil {
			return
		}
		if hsSec != 0 || hsNsec != 0 {
			t := time.Unix(hsSec, hsNsec).UTC()
			p.LastHandshake = &t
		}
		in.Peers = append(in.Peers, *p)
		p, hsSec, hsNsec = nil, 0, 0
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		switch k {
		case "private_key":
			var key Key
			if b, err := hex.DecodeString(v); err == nil && len(b) == len(key) {
				copy(key[:], b)
				in.PublicKey = PublicKey(key).String()
			}
		case "listen_port":
			in.ListenPort, _ = strconv.Atoi(v)
		case "public_key":
			flush()
			p = &PeerInfo{}
			if b, err := hex.DecodeString(v); err == nil {
				var key Key
				copy(key[:], b)
				p.PublicKey = key.String()
			}
		}
		if p == nil {
			continue
		}
		switch k {
		case "endpoint":
			p.Endpoint = v
		case "last_handshake_time_sec":
			hsSec, _ = strconv.ParseInt(v, 10, 64)
		case "last_handshake_time_nsec":
			hsNsec, _ = strconv.ParseInt(v, 10, 64)
		case "rx_bytes":
			p.RxBytes, _ = strconv.ParseUint(v, 10, 64)
		case "tx_bytes":
			p.TxBytes, _ = strconv.ParseUint(v, 10, 64)
		}
	}
	flush()
	if in.Peers == nil {
		in.Peers = []PeerInfo{}
	}
	return in
}

// newDeviceLogger routes wireguard-go's log through zap: errors as warnings
// and verbose lines at debug, at most deviceLogBurst lines per stats.LogInterval
// (the device logs some events per packet).
func newDeviceLogger(log *zap.Logger) *device.Logger {
	lim := &stats.LogLimiter{}
	l := &device.Logger{
		Verbosef: device.DiscardLogf,
		Errorf: func(format string, args ...any) {
			if ok, n := lim.Allow(deviceLogBurst); ok {
				log.Warn("wireguard-go: "+fmt.Sprintf(format, args...), zap.Int("suppressed_before", n))
			}
		},
	}
	if log.Core().Enabled(zapcore.DebugLevel) {
		l.Verbosef = func(format string, args ...any) {
			if ok, n := lim.Allow(deviceLogBurst); ok {
				log.Debug("wireguard-go: "+fmt.Sprintf(format, args...), zap.Int("suppressed_before", n))
			}
		}
	}
	return l
}
