package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	protoactor "github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"

	"switchyard/actors/remote"
	"switchyard/config"
)

// runHost runs a protocol host: protocol instances in their own process,
// opened by a daemon over protoactor remote (README: Out of process).
func runHost(args []string) int {
	fs := flag.NewFlagSet("host", flag.ContinueOnError)
	listen := fs.String("listen", "", "ip:port to listen on (required; port 0: any free port); not loopback needs --tls-*")
	name := fs.String("name", "", "the host's name in the daemon's config (logs and process lists)")
	ca := fs.String("tls-ca", "", "PEM file of the CA that signs every peer's certificate (mutual TLS)")
	cert := fs.String("tls-cert", "", "PEM file of this host's certificate")
	key := fs.String("tls-key", "", "PEM file of this host's private key")
	poolBuffers := fs.Int("pool-buffers", config.Default().Batch.PoolBuffers,
		fmt.Sprintf("packet buffers in the host's pool, %d-%d", config.MinPoolBuffers, config.MaxPoolBuffers))
	capsFlag := fs.String("caps", "", "capabilities the host keeps: net_bind_service (for a protocol port below 1024) or none")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	readyFD := fs.Int("ready-fd", 0, "write a line to this file descriptor once listening (the daemon passes it)")
	secretFD := fs.Int("secret-fd", 0, "read the secret every daemon connection must carry from this file descriptor (the daemon passes it)")
	secretFile := fs.String("secret-file", "", "read the secret every daemon connection must carry from this file (mode 0600; the daemon's remote.secret_file)")
	pprofAddr := fs.String("pprof", "", "serve net/http/pprof on this loopback ip:port (profiling)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	addr, err := netip.ParseAddrPort(*listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "switchyard host: --listen: want ip:port, got %q\n", *listen)
		return 2
	}
	files := remote.TLSFiles{CA: *ca, Cert: *cert, Key: *key}
	if (*ca != "" || *cert != "" || *key != "") && !files.Enabled() {
		fmt.Fprintln(os.Stderr, "switchyard host: --tls-ca, --tls-cert and --tls-key go together")
		return 2
	}
	if *poolBuffers < config.MinPoolBuffers || *poolBuffers > config.MaxPoolBuffers {
		fmt.Fprintf(os.Stderr, "switchyard host: --pool-buffers must be between %d and %d, got %d\n",
			config.MinPoolBuffers, config.MaxPoolBuffers, *poolBuffers)
		return 2
	}
	keep, err := parseHostCaps(*capsFlag)
	if err != nil {
		fmt.Fprintf(os.Stderr, "switchyard host: --caps: %v\n", err)
		return 2
	}
	// Before it listens, the host keeps only what it was told to
	// (caps_linux.go): whatever it inherited, a daemon's or root's.
	caps, err := restrictCapabilities(keep)
	if err != nil {
		fmt.Fprintf(os.Stderr, "switchyard host: drop capabilities: %v\n", err)
		return 1
	}
	// After restrictCapabilities, which may re-execute the binary: the
	// secret is read once, by the image that runs.
	var secret string
	switch {
	case *secretFD > 0 && *secretFile != "":
		fmt.Fprintln(os.Stderr, "switchyard host: --secret-fd and --secret-file exclude each other")
		return 2
	case *secretFD > 0:
		if secret, err = remote.ReadSecretFD(*secretFD); err != nil {
			fmt.Fprintf(os.Stderr, "switchyard host: --secret-fd: %v\n", err)
			return 2
		}
	case *secretFile != "":
		if secret, err = config.ReadTokenFile(*secretFile, ""); err != nil {
			fmt.Fprintf(os.Stderr, "switchyard host: --secret-file: %v\n", err)
			return 2
		}
	case !files.Enabled():
		fmt.Fprintln(os.Stderr, "switchyard host: needs --secret-file (or --secret-fd) or --tls-*: "+
			"otherwise any local user could connect to its port and open instances on it")
		return 2
	}
	log, _, err := newLogger(*level)
	if err != nil {
		fmt.Fprintf(os.Stderr, "switchyard host: %v\n", err)
		return 2
	}
	defer func() { _ = log.Sync() }()
	logCapabilities(log, caps)
	setMemoryLimit(*poolBuffers)

	system := protoactor.NewActorSystemWithConfig(protoactor.Configure(
		protoactor.WithLoggerFactory(func(*protoactor.ActorSystem) *slog.Logger {
			return slog.New(remote.LogHandler(log.Core()))
		}),
	))
	h, err := remote.StartHost(remote.HostOptions{Listen: addr, Security: remote.Security{TLS: files, Secret: secret}, PoolBuffers: *poolBuffers, System: system, Log: log})
	if err != nil {
		fmt.Fprintf(os.Stderr, "switchyard host: %v\n", err)
		return 1
	}
	log.Info("protocol host listening", zap.String("host", *name), zap.String("address", h.Address()), zap.Bool("tls", files.Enabled()),
		zap.Int("pool_buffers", *poolBuffers))
	if *pprofAddr != "" {
		if err := servePprof(*pprofAddr); err != nil {
			fmt.Fprintf(os.Stderr, "switchyard host: --pprof: %v\n", err)
			h.Stop()
			return 2
		}
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	if *readyFD > 0 {
		f := os.NewFile(uintptr(*readyFD), "ready")
		_, _ = fmt.Fprintln(f, h.Address())
		_ = f.Close()
		exitWithParent(sigs) // a spawned host ends with its daemon (host_*.go)
	}
	sig := <-sigs
	signal.Stop(sigs)
	log.Info("stopping", zap.String("signal", sig.String()))
	h.Stop()
	system.Shutdown()
	log.Info("protocol host stopped")
	return 0
}

// servePprof serves the profiling endpoints on addr, which must be loopback.
func servePprof(addr string) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().IsLoopback() {
		return errors.New("want a loopback ip:port, got " + addr)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	go func() { _ = http.Serve(l, mux) }()
	return nil
}
