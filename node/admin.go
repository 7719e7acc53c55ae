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
	"sync"
	"time"

	"go.uber.org/zap"

	"switchyard/config"
	"switchyard/stats"
)

// Admin is the node's HTTP admin endpoint: GET /stats serves the Snapshot as
// JSON, GET /metrics the Prometheus metrics (metrics.go).
//
// Safety: it listens on loopback unless the config says otherwise, and a
// listener that is not loopback needs a bearer token (admin.token_file),
// which every request must then carry. A token, once configured, guards
// every path, loopback or not. Connections are bounded in number
// (AdminMaxConns) and in time (limits.go), and a 401 closes its connection.
type Admin struct {
	srv *http.Server
	ln  net.Listener
}

// ErrAdminNeedsToken is returned by ServeAdmin for an address that is not
// loopback when the config has no admin token.
var ErrAdminNeedsToken = errors.New("a non-loopback admin endpoint needs admin.token_file")

// AdminListener is the admin endpoint's bound socket and token, before it
// serves.
type AdminListener struct {
	ln    net.Listener
	token string
}

// ListenAdmin binds addr for the admin endpoint of cfg, whose token
// (admin.token, or admin.token_file read now) it keeps. The daemon binds it
// before it creates the TUN, so that a daemon whose admin port is taken
// fails before it touches the system.
func ListenAdmin(cfg *config.Config, addr string) (*AdminListener, error) {
	token := cfg.Admin.Token
	if token == "" && cfg.Admin.TokenFile != "" { // a config built in code
		var err error
		if token, err = config.ReadTokenFile(cfg.Admin.TokenFile, cfg.File); err != nil {
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
	return &AdminListener{ln: ln, token: token}, nil
}

// Close releases a listener that will not serve.
func (l *AdminListener) Close() error { return l.ln.Close() }

// ServeAdmin listens on addr and serves the admin endpoint until Close:
// ListenAdmin with the node's config, then Serve.
func (n *Node) ServeAdmin(addr string, version string, extra ...func(mux *http.ServeMux)) (*Admin, error) {
	l, err := ListenAdmin(n.cfg, addr)
	if err != nil {
		return nil, err
	}
	return n.Serve(l, version, extra...), nil
}

// Serve serves the admin endpoint on l until Close. extra registers more
// handlers (the daemon adds POST /reload). The bearer token is the one l
// read; a reload does not change it.
func (n *Node) Serve(l *AdminListener, version string, extra ...func(mux *http.ServeMux)) *Admin {
	ln, token := l.ln, l.token
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
	a := &Admin{srv: &http.Server{
		Handler:           h,
		ReadHeaderTimeout: AdminReadTimeout,
		ReadTimeout:       AdminRequestTimeout,
		WriteTimeout:      AdminWriteTimeout,
		IdleTimeout:       AdminIdleTimeout,
		MaxHeaderBytes:    AdminMaxHeaderBytes,
		ErrorLog:          zap.NewStdLog(n.log.Named("admin")),
	}, ln: ln}
	limited := newLimitListener(ln, AdminMaxConns, n.log.Named("admin"))
	go func() {
		if err := a.srv.Serve(limited); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("admin endpoint stopped", zap.Error(err))
		}
	}()
	n.log.Info("admin endpoint listening", zap.String("addr", ln.Addr().String()), zap.Bool("token", token != ""))
	return a
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
			w.Header().Set("Connection", "close") // a client without the token gets no kept-alive connection
			http.Error(w, "401 unauthorized: send Authorization: Bearer <token> (the daemon's admin.token_file)",
				http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// limitListener holds at most max connections at once: a connection past
// the cap is closed as soon as it is accepted, and logged at most once a
// stats.LogInterval with the count.
type limitListener struct {
	net.Listener
	slots   chan struct{}
	log     *zap.Logger
	refused stats.LogLimiter
}

func newLimitListener(ln net.Listener, max int, log *zap.Logger) *limitListener {
	return &limitListener{Listener: ln, slots: make(chan struct{}, max), log: log}
}

// Accept returns the next connection that fits under the cap.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.slots <- struct{}{}:
			return &limitConn{Conn: c, slots: l.slots}, nil
		default:
			_ = c.Close()
			l.refused.Event(l.log, "admin endpoint: connection refused, at the connection cap", c.RemoteAddr().String(), 1,
				fmt.Errorf("%d connections open", cap(l.slots)))
		}
	}
}

// limitConn gives its slot back when it is closed, once.
type limitConn struct {
	net.Conn
	slots chan struct{}
	once  sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { <-c.slots })
	return err
}

// Addr is the address the endpoint listens on.
func (a *Admin) Addr() string { return a.ln.Addr().String() }

// Close stops the endpoint.
func (a *Admin) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return a.srv.Shutdown(ctx)
}
