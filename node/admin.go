package node

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"strings"
	"time"

	"go.uber.org/zap"

	"switchyard/config"
)

// AdminReadTimeout (5 s) bounds how long the admin endpoint waits for a
// request's headers, so a stalled client cannot hold a connection forever.
const AdminReadTimeout = 5 * time.Second

// Admin is the node's HTTP admin endpoint: GET /stats serves the Snapshot as
// JSON, GET /metrics the Prometheus metrics (metrics.go).
//
// Safety: it listens on loopback unless the config says otherwise, and a
// listener that is not loopback needs a bearer token (admin.token_file),
// which every request must then carry. A token, once configured, guards
// every path, loopback or not.
type Admin struct {
	srv *http.Server
	ln  net.Listener
}

// ErrAdminNeedsToken is returned by ServeAdmin for an address that is not
// loopback when the config has no admin token.
var ErrAdminNeedsToken = errors.New("a non-loopback admin endpoint needs admin.token_file")

// ServeAdmin listens on addr and serves the admin endpoint until Close.
// extra registers more handlers (the daemon adds POST /reload). The bearer
// token is the config's admin.token (read from admin.token_file) as of
// Start; a reload does not change it.
func (n *Node) ServeAdmin(addr string, version string, extra ...func(mux *http.ServeMux)) (*Admin, error) {
	token := n.cfg.Admin.Token
	if token == "" && n.cfg.Admin.TokenFile != "" { // a config built in code
		var err error
		if token, err = config.ReadTokenFile(n.cfg.Admin.TokenFile, n.cfg.File); err != nil {
			return nil, fmt.Errorf("admin.token_file: %w", err)
		}
	}
	ap, err := netip.ParseAddrPort(addr)
	if err == nil && !ap.Addr().Unmap().IsLoopback() && token == "" {
		return nil, fmt.Errorf("admin listen %s: %w", addr, ErrAdminNeedsToken)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin listen %s: %w", addr, err)
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && !tcp.IP.IsLoopback() && token == "" {
		ln.Close()
		return nil, fmt.Errorf("admin listen %s: %w", addr, ErrAdminNeedsToken)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metricsHandler(n.MetricsRegistry(version), n.log))
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
	var h http.Handler = mux
	if token != "" {
		h = requireBearer(token, mux)
	}
	a := &Admin{srv: &http.Server{Handler: h, ReadHeaderTimeout: AdminReadTimeout}, ln: ln}
	go func() {
		if err := a.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("admin endpoint stopped", zap.Error(err))
		}
	}()
	n.log.Info("admin endpoint listening", zap.String("addr", ln.Addr().String()), zap.Bool("token", token != ""))
	return a, nil
}

// requireBearer answers 401 to a request without `Authorization: Bearer
// <token>`. The comparison takes the same time whatever the guess: both
// sides are hashed first, so not even the token's length leaks.
func requireBearer(token string, next http.Handler) http.Handler {
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, got, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		sum := sha256.Sum256([]byte(strings.TrimSpace(got)))
		if !ok || !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="switchyard"`)
			http.Error(w, "401 unauthorized: send Authorization: Bearer <token> (the daemon's admin.token_file)",
				http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Addr is the address the endpoint listens on.
func (a *Admin) Addr() string { return a.ln.Addr().String() }

// Close stops the endpoint.
func (a *Admin) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return a.srv.Shutdown(ctx)
}
