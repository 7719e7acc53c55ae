package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"switchyard/actors/node"
	"switchyard/config"
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
	log, err := newLogger(cfg.Log.Level)
	if err != nil {
		fmt.Fprintf(os.Stderr, "switchyard: %v\n", err)
		return 1
	}
	defer func() { _ = log.Sync() }()

	n, err := node.New(cfg, node.Options{Log: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := n.Start(); err != nil {
		log.Error("start failed", zap.Error(err))
		fmt.Fprintf(os.Stderr, "switchyard: %v\n", err)
		return 1
	}
	admin, err := n.ServeAdmin(cfg.Admin.Listen.String(), versionString())
	if err != nil {
		n.Stop()
		fmt.Fprintf(os.Stderr, "switchyard: %v\n", err)
		return 1
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	sig := <-sigs
	log.Info("stopping", zap.String("signal", sig.String()))
	signal.Stop(sigs)
	_ = admin.Close()
	n.Stop()
	return 0
}

// canRun reports, in one line, why this process cannot run the daemon.
func canRun() error {
	if os.Geteuid() != 0 {
		return errors.New("run needs root (or CAP_NET_ADMIN) to create a TUN device; try sudo")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return fmt.Errorf("no TUN support: /dev/net/tun is missing (%v); load the tun module", err)
	}
	return nil
}

func newLogger(level string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	zc := zap.NewProductionConfig()
	zc.Level = zap.NewAtomicLevelAt(lvl)
	zc.Encoding = "console"
	zc.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	zc.Sampling = nil
	return zc.Build()
}
