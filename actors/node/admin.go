package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"go.uber.org/zap"
)

// AdminReadTimeout (5 s) bounds how long the admin endpoint waits for a
// request's headers, so a stalled client cannot hold a connection forever.
const AdminReadTimeout = 5 * time.Second

// Admin is the node's HTTP admin endpoint: GET /stats serves the Snapshot as
// JSON.
type Admin struct {
	srv *http.Server
	ln  net.Listener
}

// ServeAdmin listens on addr and serves the admin endpoint until Close.
// extra registers more handlers (the daemon adds POST /reload).
func (n *Node) ServeAdmin(addr string, version string, extra ...func(mux *http.ServeMux)) (*Admin, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		s := n.Stats()
		s.Version = version
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(s)
	})
	// Profiling for operators: the endpoint is loopback unless configured
	// otherwise.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	for _, register := range extra {
		register(mux)
	}
	a := &Admin{srv: &http.Server{Handler: mux, ReadHeaderTimeout: AdminReadTimeout}, ln: ln}
	go func() {
		if err := a.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("admin endpoint stopped", zap.Error(err))
		}
	}()
	n.log.Info("admin endpoint listening", zap.String("addr", ln.Addr().String()))
	return a, nil
}

// Addr is the address the endpoint listens on.
func (a *Admin) Addr() string { return a.ln.Addr().String() }

// Close stops the endpoint.
func (a *Admin) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return a.srv.Shutdown(ctx)
}
