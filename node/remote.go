package node

// Out of process: the remote transport, the host links and the proxies of
// protocols that run on a protocol host (actors/remote).

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"

	"switchyard/actors/mailbox"
	"switchyard/actors/remote"
	"switchyard/protocols"
	"switchyard/stats"
)

// startRemote starts the transport and one host link per configured host.
// Without hosts it does nothing.
func (n *Node) startRemote() error {
	cfg := n.cfg
	if len(cfg.Hosts) == 0 {
		return nil
	}
	files := remote.TLSFiles{CA: cfg.Remote.TLS.CA, Cert: cfg.Remote.TLS.Cert, Key: cfg.Remote.TLS.Key}
	n.remoteStats = n.registry.Row("remote", "remote")
	guard := remote.NewGuard(n.remoteStats, n.log.Named("remote"))
	// Every stream between this daemon and its hosts carries a secret
	// (actors/remote/auth.go): remote.secret_file's, which hosts started
	// by hand read too, or, without mutual TLS, a fresh one that only the
	// spawned hosts receive. With TLS and no file, certificates
	// authenticate (a host started by hand could not know a fresh secret).
	secret := cfg.Remote.Secret
	if secret == "" && !files.Enabled() {
		var err error
		if secret, err = remote.NewSecret(); err != nil {
			return err
		}
	}
	t, err := remote.Start(n.system, cfg.Remote.Listen, remote.Security{TLS: files, Secret: secret}, guard)
	if err != nil {
		return err
	}
	n.transport = t
	n.log.Info("remote listening", zap.String("address", t.Address), zap.Bool("tls", files.Enabled()))

	exe := n.opts.Executable
	if exe == "" {
		if exe, err = os.Executable(); err != nil {
			return fmt.Errorf("find the switchyard binary for protocol hosts: %w", err)
		}
	}
	n.hostLinks = make(map[string]*actor.PID, len(cfg.Hosts))
	n.hostBindsLow = make(map[string]bool, len(cfg.Hosts))
	for _, h := range cfg.Hosts {
		shmDir := ""
		if h.UsesSHM() {
			if n.shmDir == "" {
				// Handover sockets live in a directory only this user can
				// enter (0700), made fresh for this daemon.
				if n.shmDir, err = os.MkdirTemp("", "switchyard-shm-"); err != nil {
					return fmt.Errorf("shared-memory runtime directory: %w", err)
				}
			}
			shmDir = n.shmDir
		}
		// A spawned host listens on a port of its own choosing, a new one
		// each incarnation, and reports it on the ready pipe: a connection
		// or a retry to an earlier incarnation can never reach it.
		listen := h.Listen
		if h.Spawn {
			listen = netip.AddrPortFrom(h.Listen.Addr(), 0)
		}
		cmd := []string{exe, "host", "--name", h.Name, "--listen", listen.String(),
			"--pool-buffers", strconv.Itoa(cfg.Batch.PoolBuffers), "--log-level", cfg.Log.Level}
		// A spawned host keeps no capability, or CAP_NET_BIND_SERVICE when
		// a protocol on it listens below 1024.
		if n.hostBindsLow[h.Name] = lowPortOn(h.Name, n.protocols) != nil; n.hostBindsLow[h.Name] {
			cmd = append(cmd, "--caps", "net_bind_service")
		}
		if files.Enabled() {
			cmd = append(cmd, "--tls-ca", files.CA, "--tls-cert", files.Cert, "--tls-key", files.Key)
		}
		hostStats := n.registry.Row("host/"+h.Name, "host")
		hostStats.SetState(stats.Restarting) // until it answers
		spec := remote.HostSpec{
			Name:    h.Name,
			Listen:  h.Listen.String(),
			Spawn:   h.Spawn,
			Command: cmd,
			Budget:  budgetOf(cfg.Supervision),
			Stats:   hostStats,
			Mirror:  &n.registry,
			Log:     n.log.Named("host"),
			SHMDir:  shmDir,
			Secret:  secret,
			Session: n.hostSession,
			Bad:     n.remoteStats,
		}
		pid, err := n.system.Root.SpawnNamed(actor.PropsFromProducer(remote.NewHostLink(spec)), "host/"+h.Name)
		if err != nil {
			return fmt.Errorf("spawn host link %q: %w", h.Name, err)
		}
		n.hostLinks[h.Name] = pid
	}
	return nil
}

// lowPortOn returns the first protocol on host that listens on a port below
// 1024 (privileged: it needs CAP_NET_BIND_SERVICE), or nil.
func lowPortOn(host string, ps []parsedProtocol) *parsedProtocol {
	for i, p := range ps {
		if p.cfg.Host != host {
			continue
		}
		if u, ok := p.settings.(protocols.Underlay); ok {
			for _, port := range u.ListenPorts() {
				if port < privilegedPorts {
					return &ps[i]
				}
			}
		}
	}
	return nil
}

// remoteProducer returns the actor standing in for a protocol that runs on
// a host: a link whose peer is the instance's receiver on the host, with a
// receiver here that hands the instance's inbound batches to the injector.
// st is the instance's counters (its mailbox counts In).
func (n *Node) remoteProducer(p parsedProtocol, st *stats.Counters, mb *mailbox.Mailbox) (actor.Producer, error) {
	link, ok := n.hostLinks[p.cfg.Host]
	if !ok {
		return nil, fmt.Errorf("protocol %q: host %q is not running", p.cfg.Name, p.cfg.Host)
	}
	cfg := n.Config()
	_, policy := mb.Capacity()
	capacity, _ := mb.Capacity()
	target, interval := mb.CoDel()
	inStats := n.registry.Row(p.cfg.Name+".in", "receiver")
	open := remote.Open{
		Name:          p.cfg.Name,
		Type:          p.cfg.Type,
		Settings:      p.cfg.Settings.YAML(),
		ConfigFile:    cfg.File,
		SettingsPath:  p.cfg.Settings.Path(),
		MaxBatch:      cfg.Batch.MaxPackets,
		Capacity:      capacity,
		Policy:        policy.String(),
		CoDelTarget:   int64(target),
		CoDelInterval: int64(interval),
		Window:        cfg.Remote.Window,
		MaxRestarts:   cfg.Supervision.MaxRestarts,
		Within:        int64(time.Duration(cfg.Supervision.Within)),
		Backoff:       int64(time.Duration(cfg.Supervision.Backoff)),
	}
	if h, _ := cfg.Host(p.cfg.Host); h.UsesSHM() {
		return remote.NewSHMLink(remote.SHMSpec{
			Name:     p.cfg.Name,
			Stats:    st,
			Host:     n.registry.Row(p.cfg.Name+".host", "shm"),
			In:       inStats,
			Bad:      n.remoteStats,
			Injector: n.injector,
			Pool:     n.pool,
			Policy:   policy,
			Log:      n.log.Named("shm"),
			OnStarted: func(ctx actor.Context) {
				ctx.Send(link, &remote.Attach{Proxy: ctx.Self(), Open: open})
			},
			OnStopping: func(ctx actor.Context) {
				ctx.Send(link, &remote.Detach{Name: p.cfg.Name})
			},
		}), nil
	}
	var recv *remote.Receiver
	return remote.NewLink(remote.LinkSpec{
		ID:       remote.AckPrefix + p.cfg.Name,
		Stats:    st,
		Host:     n.registry.Row(p.cfg.Name+".host", "grpc"),
		Bad:      n.remoteStats,
		Window:   cfg.Remote.Window,
		MaxBatch: cfg.Batch.MaxPackets,
		Policy:   policy,
		OnStarted: func(ctx actor.Context, _ *remote.Sender) {
			r, err := remote.NewReceiver(n.system, remote.ReceiverPrefix+p.cfg.Name, n.pool, n.injector, inStats, cfg.Batch.MaxPackets)
			if err != nil {
				panic(err) // the supervisor restarts the proxy after its backoff
			}
			recv = r
			o := open
			o.DaemonIn = remote.PIDRef{Address: r.PID().Address, ID: r.PID().Id}
			ctx.Send(link, &remote.Attach{Proxy: ctx.Self(), Open: o})
		},
		OnStopping: func(ctx actor.Context) {
			ctx.Send(link, &remote.Detach{Name: p.cfg.Name})
			if recv != nil {
				recv.Close()
				recv = nil
			}
		},
	}), nil
}
