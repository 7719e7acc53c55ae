package openconnect

// The connection manager of a client, one goroutine per instance:
//
//  1. Without a cookie, log in (login.go). A refused login is counted
//     (auth_failures), logged at most once a second, and retried after a
//     pause that doubles up to reconnectMax.
//  2. CONNECT with the cookie (session.go). A 4xx means the cookie is no
//     longer good: forget it and log in afresh; so do cookieRetries 5xx in
//     a row (ocserv answers 503 to a cookie it has forgotten).
//  3. Tell the actor the session is up and the node what the gateway
//     assigned (Env.ReportSession: addresses, and the pushed routes with
//     accept_routes), run it until it breaks or the instance stops, then
//     report the zero Session and tell the actor it is down.
//  4. After a break, reconnect with the same cookie (ocserv keeps a
//     session's cookie valid for cookie-timeout after a disconnection); after
//     the gateway ended the session (DISCONNECT/TERMINATE), log in afresh.

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"

	"switchyard/protocols"
)

type manager struct {
	a *clientActor
}

func (m *manager) run(ctx context.Context) {
	a := m.a
	cookie := ""
	refused := 0 // CONNECTs refused in a row with this cookie
	pause := reconnectMin
	backoff := func() bool {
		ok := sleepCtx(ctx, pause)
		pause = min(2*pause, reconnectMax)
		return ok
	}
	for ctx.Err() == nil {
		if cookie == "" {
			c, err := a.login(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				m.failed(err)
				if !backoff() {
					return
				}
				continue
			}
			cookie, refused = c, 0
		}
		if a.testHooks != nil && a.testHooks.cookie != nil {
			cookie = a.testHooks.cookie(cookie)
		}
		s, err := a.connect(ctx, cookie)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, errConnectRefused) {
				refused++
			}
			if errors.Is(err, errCookieRejected) || refused >= cookieRetries {
				cookie = ""
			}
			m.failed(err)
			if !backoff() {
				return
			}
			continue
		}
		pause, refused = reconnectMin, 0
		// The actor hears of the session before the stats say connected:
		// a batch sent by whoever saw "connected" queues behind sessionUp.
		a.env.System.Root.Send(a.self, &sessionUp{s: s})
		a.info.update(func(c *clientState) {
			c.state, c.since, c.tunnel, c.lastError = "connected", time.Now(), s.tunnel, ""
			c.channel, c.tlsCipher, c.dtlsCipher = "cstp", s.tlsCipher, ""
		})
		a.env.Log.Info("openconnect session up", zap.String("instance", a.name),
			zap.Stringer("address", s.tunnel.Address), zap.Int("routes", len(s.tunnel.SplitInclude)),
			zap.Int("mtu", s.tunnel.MTU), zap.Bool("dtls_offered", s.tunnel.HasDTLS()))
		// The node puts the assigned addresses on its TUN and routes the
		// pushed routes here (accept_routes), until the zero Session.
		a.env.ReportSession(a.set.session(&s.tunnel))
		if a.testHooks != nil && a.testHooks.onSession != nil {
			a.testHooks.onSession(s)
		}
		s.run(ctx)
		a.env.ReportSession(protocols.Session{})
		a.env.System.Root.Send(a.self, &sessionDown{s: s})
		if ctx.Err() != nil {
			return
		}
		err = s.cause()
		if s.ended.Load() {
			cookie = ""
		}
		a.info.update(func(c *clientState) {
			c.state, c.lastError, c.channel = "reconnecting", err.Error(), ""
			c.reconnects++
		})
		a.env.Log.Warn("openconnect session ended, reconnecting", zap.String("instance", a.name),
			zap.Bool("fresh_login", cookie == ""), zap.Error(err))
		if !sleepCtx(ctx, reconnectMin) {
			return
		}
	}
}

// failed records a failed login or CONNECT.
func (m *manager) failed(err error) {
	a := m.a
	refused := errors.Is(err, errAuthFailed)
	a.info.update(func(c *clientState) {
		c.lastError = err.Error()
		if refused {
			c.state = "auth_failed"
			c.authFailures++
		} else {
			c.state = "connecting"
		}
	})
	if refused {
		a.authLog.Event(a.env.Log, "openconnect login refused", a.name, 1, err)
	} else {
		a.authLog.Event(a.env.Log, "openconnect connect failed", a.name, 1, err)
	}
}

// sleepCtx waits d or until ctx ends; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
