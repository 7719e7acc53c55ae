package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"switchyard/config"
	"switchyard/node"
	"switchyard/packet"
)

func runDaemon(args []string) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	file := fs.String("c", "", "config file (default: the embedded default config)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var cfg *config.Config
	if *file == "" {
		cfg = config.Default()
	} else {
		var err error
		if cfg, err = config.Load(*file); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	if err := canRun(); err != nil {
		fmt.Fprintf(os.Stderr, "switchyard: %v\n", err)
		return 1
	}
	// Least privilege before anything else: the daemon executes itself
	// again with only CAP_NET_ADMIN and CAP_NET_BIND_SERVICE (caps_linux.go).
	caps, err := restrictCapabilities(daemonCaps)
	if err != nil {
		fmt.Fprintf(os.Stderr, "switchyard: drop capabilities: %v\n", err)
		return 1
	}
	log, level, err := newLogger(cfg.Log.Level)
	if err != nil {
		fmt.Fprintf(os.Stderr, "switchyard: %v\n", err)
		return 1
	}
	defer func() { _ = log.Sync() }()
	logCapabilities(log, caps)
	if limit, set := setMemoryLimit(cfg.Batch.PoolBuffers); set {
		log.Info("memory limit for the Go runtime", zap.Int64("bytes", limit),
			zap.String("why", "packet pool bound + runtime headroom; GOMEMLIMIT overrides"))
	}

	n, err := node.New(cfg, node.Options{Log: log, Level: &level})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// The admin port first: a daemon that cannot serve fails before it
	// creates its TUN and routes.
	adminLn, err := node.ListenAdmin(cfg, cfg.Admin.Listen.String())
	if err != nil {
		log.Error("start refused", zap.Error(err))
		fmt.Fprintf(os.Stderr, "switchyard: %v\n", err)
		return 1
	}
	if err := n.Start(); err != nil {
		_ = adminLn.Close()
		log.Error("start failed", zap.Error(err))
		fmt.Fprintf(os.Stderr, "switchyard: %v\n", err)
		return 1
	}
	reload := func(trigger string) node.Result { return reloadConfig(n, *file, trigger, log) }
	admin := n.Serve(adminLn, versionString(), func(mux *http.ServeMux) {
		mux.HandleFunc("POST /reload", func(w http.ResponseWriter, r *http.Request) {
			res := reload("POST /reload")
			w.Header().Set("Content-Type", "application/json")
			if !res.Applied {
				w.WriteHeader(http.StatusUnprocessableEntity)
			}
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			_ = enc.Encode(res)
		})
	})

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	for {
		sig := <-sigs
		if sig == syscall.SIGHUP {
			reload("SIGHUP")
			continue
		}
		log.Info("stopping", zap.String("signal", sig.String()))
		break
	}
	signal.Stop(sigs)
	_ = admin.Close()
	n.Stop()
	return 0
}

// reloadConfig re-reads the daemon's config file (-c) and reloads the node
// with it. With the embedded default config there is nothing new to read:
// the default is reloaded as it is and the Result says so. Node.Reload logs
// the changes; a file that does not load or parse is logged here.
func reloadConfig(n *node.Node, file, trigger string, log *zap.Logger) node.Result {
	log.Info("reload requested", zap.String("trigger", trigger), zap.String("file", file))
	if file == "" {
		res, _ := n.Reload(config.Default())
		res.Note = "the daemon runs the embedded default config (no -c): there is no file to re-read, so nothing changes"
		log.Info("reload: " + res.Note)
		return res
	}
	cfg, err := config.Load(file)
	if err != nil {
		res := node.Refused(file, err)
		log.Warn("reload refused; the running config keeps serving",
			zap.String("file", file), zap.Strings("errors", res.Errors))
		return res
	}
	res, _ := n.Reload(cfg)
	return res
}

// logCapabilities logs what restrictCapabilities found and kept.
func logCapabilities(log *zap.Logger, r capReport) {
	if r.Note != "" {
		log.Info("capabilities: "+r.Note, zap.Stringer("held", r.After))
		return
	}
	log.Info("capabilities restricted", zap.Stringer("before", r.Before), zap.Stringer("after", r.After))
}

// newLogger builds the daemon's logger and returns its level, which a
// reload changes.
func newLogger(level string) (*zap.Logger, zap.AtomicLevel, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, zap.AtomicLevel{}, fmt.Errorf("log.level: %w", err)
	}
	zc := zap.NewProductionConfig()
	zc.Level = zap.NewAtomicLevelAt(lvl)
	zc.Encoding = "console"
	zc.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	zc.Sampling = nil
	log, err := zc.Build()
	return log, zc.Level, err
}

// setMemoryLimit gives the garbage collector a soft limit of the pool's
// bound plus node.RuntimeHeadroomBytes, unless GOMEMLIMIT is set. Pool buffers are live
// heap, so the default GOGC alone would let garbage grow as large as the
// pool again before collecting.
func setMemoryLimit(poolBuffers int) (int64, bool) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return 0, false
	}
	limit := int64(poolBuffers)*packet.BufferBytes + node.RuntimeHeadroomBytes
	debug.SetMemoryLimit(limit)
	return limit, true
}
