package node

import (
	"time"

	"switchyard/actors/remote"
)

// Limits of the admin endpoint (admin.go). It serves a few operators and a
// scraper, so every bound is small; a client that holds connections open
// without finishing requests is cut off, and one past the cap is refused.
const (
	// AdminReadTimeout (5 s) bounds how long the endpoint waits for a
	// request's headers, from the moment the connection is accepted or the
	// previous response was sent; also the /metrics handler's timeout.
	AdminReadTimeout = 5 * time.Second

	// AdminRequestTimeout (10 s) bounds reading a whole request, body
	// included (POST /reload has none worth the name).
	AdminRequestTimeout = 10 * time.Second

	// AdminIdleTimeout (30 s) is how long a kept-alive connection may wait
	// for its next request: `switchyard top` asks every second.
	AdminIdleTimeout = 30 * time.Second

	// AdminWriteTimeout (2 min) bounds writing a response. It is long
	// because /debug/pprof/profile and /trace stream for the seconds asked
	// (30 by default), and pprof refuses a duration above it.
	AdminWriteTimeout = 2 * time.Minute

	// AdminMaxHeaderBytes (16 KiB) bounds a request's headers.
	AdminMaxHeaderBytes = 16 << 10

	// AdminMaxConns (64 connections) is how many connections the endpoint
	// holds at once; one past it is closed as soon as it is accepted.
	AdminMaxConns = 64
)

// privilegedPorts (1024) is the first port a process may bind without
// CAP_NET_BIND_SERVICE: a protocol host gets the capability only for a
// protocol that listens below it.
const privilegedPorts = 1024

// Bounds of one protocol session (session.go), the same in process and out:
// MaxSessionAddrs (16 prefixes) addresses and MaxSessionRoutes (1024
// prefixes) routes; the rest is dropped and counted as session_truncated.
const (
	MaxSessionAddrs  = remote.MaxSessionAddrs
	MaxSessionRoutes = remote.MaxSessionRoutes
)
