package config

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"time"
	"unicode/utf8"
)

// Validate checks a config built or changed in code; Parse already ran the
// same checks. It is pure and fast. Errors point at the Pos fields
// (Route.Pos, Protocol.Pos, Protocol.HostPos, Host.Pos, Remote.Pos) where
// they are known, else at File.
func (c *Config) Validate() error {
	if errs := c.validate(nil); len(errs) > 0 {
		return errs.sorted()
	}
	return nil
}

// checker collects validation errors.
type checker struct {
	file string
	p    *positions
	errs Errors
}

// errorf reports a problem with the value at path; fallback is its position
// when there is no parsed file.
func (k *checker) errorf(path string, fallback Position, format string, args ...any) {
	if k.p.skip(path) {
		return // decoding has said what is wrong with it
	}
	if fallback.File == "" {
		fallback.File = k.file
	}
	k.errs = append(k.errs, &Error{Pos: k.p.at(path, fallback), Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (c *Config) validate(p *positions) Errors {
	k := &checker{file: c.File, p: p}
	none := Position{}

	if !validNodeName(c.Node.Name) {
		k.errorf("node.name", none, "must match [A-Za-z0-9][A-Za-z0-9._-]* and be at most %d bytes, got %s",
			MaxNodeName, quoteShort(c.Node.Name))
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		k.errorf("log.level", none, "must be debug, info, warn or error, got %s", quoteShort(c.Log.Level))
	}
	if !c.Admin.Listen.IsValid() {
		k.errorf("admin.listen", none, "must be ip:port, got %q", c.Admin.Listen.String())
	} else if !c.Admin.IsLoopback() && c.Admin.TokenFile == "" {
		k.errorf("admin.listen", none, "%s is not a loopback address: anyone who reaches it could read "+
			"the stats and profiles, so it needs admin.token_file (a bearer token); or listen on 127.0.0.1",
			c.Admin.Listen.Addr())
	}
	c.validateRemote(k)
	c.validateListeners(k)
	c.validateTUN(k)

	if n := c.Batch.MaxPackets; n < 1 || n > MaxBatchPackets {
		k.errorf("batch.max_packets", none, "must be between 1 and %d, got %d", MaxBatchPackets, n)
	}
	if n := c.Batch.PoolBuffers; n < MinPoolBuffers || n > MaxPoolBuffers {
		k.errorf("batch.pool_buffers", none, "must be between %d and %d, got %d", MinPoolBuffers, MaxPoolBuffers, n)
	}
	checkMailbox(k, "mailbox", none, c.Mailbox, nil)

	if n := c.Supervision.MaxRestarts; n < 0 {
		k.errorf("supervision.max_restarts", none, "must not be negative, got %d", n)
	}
	if d := c.Supervision.Within; d <= 0 {
		k.errorf("supervision.within", none, "must be greater than 0, got %s", d)
	}
	if d := c.Supervision.Backoff; d < 0 {
		k.errorf("supervision.backoff", none, "must not be negative, got %s", d)
	} else if msg := restartRateProblem(c.Supervision); msg != "" {
		k.errorf("supervision.backoff", none, "%s", msg)
	}

	names := c.validateProtocols(k)
	c.validateRoutes(k, names)
	return k.errs
}

// validateRemote checks remote: and hosts:. Any listener that is not on a
// loopback address needs mutual TLS, since whoever reaches it could inject
// and read packets.
func (c *Config) validateRemote(k *checker) {
	r := c.Remote
	if r.TLS != (TLS{}) && !r.TLS.Enabled() {
		for _, f := range []struct{ key, value string }{{"ca", r.TLS.CA}, {"cert", r.TLS.Cert}, {"key", r.TLS.Key}} {
			if f.value == "" {
				k.errorf("remote.tls."+f.key, r.Pos, "required: mutual TLS needs remote.tls.ca, remote.tls.cert and remote.tls.key")
			}
		}
	}
	needTLS := func(path string, pos Position, ap netip.AddrPort) {
		if !ap.Addr().Unmap().IsLoopback() && !r.TLS.Enabled() {
			k.errorf(path, pos, "%s is not a loopback address: mutual TLS required "+
				"(set remote.tls.ca, remote.tls.cert and remote.tls.key)", ap)
		}
	}
	if !r.Listen.IsValid() {
		k.errorf("remote.listen", r.Pos, "must be ip:port, got %q", r.Listen.String())
	} else if msg := remoteAddrProblem(r.Listen); msg != "" {
		k.errorf("remote.listen", r.Pos, "%s", msg)
	} else {
		needTLS("remote.listen", r.Pos, r.Listen)
	}
	if n := r.Window; n < 1 || n > MaxRemoteWindow {
		k.errorf("remote.window", r.Pos, "must be between 1 and %d batches, got %d", MaxRemoteWindow, n)
	}

	if len(c.Hosts) > MaxHosts {
		k.errorf("hosts", Position{}, "%d hosts, at most %d are allowed", len(c.Hosts), MaxHosts)
	}
	names := map[string]int{}
	listens := map[netip.AddrPort]int{}
	for i, h := range c.Hosts {
		path := indexPath("hosts", i)
		if !h.Spawn && h.IsLoopback() && !r.TLS.Enabled() && r.SecretFile == "" {
			k.errorf(path+".spawn", h.Pos, "a host the daemon does not spawn needs remote.secret_file (start the host "+
				"with --secret-file of the same file) or remote.tls: otherwise any local user can connect to its port "+
				"and open instances on it")
		}
		switch {
		case h.Name == "":
			k.errorf(path+".name", h.Pos, "required")
		case !validProtocolName(h.Name):
			k.errorf(path+".name", h.Pos, "must match [a-z0-9][a-z0-9._-]* and be at most %d bytes, got %s",
				MaxProtocolName, quoteShort(h.Name))
		}
		if h.Name != "" {
			if j, dup := names[h.Name]; dup {
				k.errorf(path+".name", h.Pos, "duplicate host name %q (first at %s)",
					h.Name, k.whereOr(indexPath("hosts", j)+".name", path+".name", c.Hosts[j].Pos))
			} else {
				names[h.Name] = i
			}
		}
		switch h.Transport {
		case TransportSHM:
			if h.Listen.IsValid() && !h.SameMachine() {
				k.errorf(path+".transport", h.Pos, "shm needs the host on this machine (spawn: true, or a loopback listen address), got listen %s", h.Listen)
			}
		case TransportGRPC, "": // "": the default, see Host.Transport
		default:
			k.errorf(path+".transport", h.Pos, "must be shm or grpc, got %s", quoteShort(h.Transport))
		}
		ap := netip.AddrPortFrom(h.Listen.Addr().Unmap(), h.Listen.Port())
		switch {
		case !h.Listen.IsValid():
			k.errorf(path+".listen", h.Pos, "required: the ip:port the host listens on")
			continue
		case h.Listen.Port() == 0:
			k.errorf(path+".listen", h.Pos, "port must be 1-65535, got 0: the daemon dials this address, so it must know the port")
		case r.Listen.IsValid() && ap == netip.AddrPortFrom(r.Listen.Addr().Unmap(), r.Listen.Port()):
			k.errorf(path+".listen", h.Pos, "%s is remote.listen, the daemon's own listener", h.Listen)
		default:
			if msg := remoteAddrProblem(h.Listen); msg != "" {
				k.errorf(path+".listen", h.Pos, "%s", msg)
				continue
			}
		}
		if j, dup := listens[ap]; dup {
			k.errorf(path+".listen", h.Pos, "duplicate listen address %s (first at %s)",
				h.Listen, k.whereOr(indexPath("hosts", j)+".listen", path+".listen", c.Hosts[j].Pos))
		} else {
			listens[ap] = i
		}
		needTLS(path+".listen", h.Pos, h.Listen)
	}
}

// remoteAddrProblem says why a protoactor remote address (remote.listen,
// hosts[].listen) cannot be used, or "". protoactor's remote joins host and
// port as "host:port" without brackets, so an IPv6 listener fails to start
// ("too many colons in address") and its PIDs cannot be dialled.
func remoteAddrProblem(ap netip.AddrPort) string {
	switch a := ap.Addr(); {
	case a.Is4In6():
		return fmt.Sprintf("%s is an IPv4-mapped IPv6 address; write it as %s", ap, netip.AddrPortFrom(a.Unmap(), ap.Port()))
	case a.Is6():
		return fmt.Sprintf("%s is an IPv6 address: protoactor remote addresses are host:port without brackets, "+
			"so it fails with \"too many colons\"; use an IPv4 address such as 127.0.0.1", ap)
	}
	return ""
}

// validateListeners checks that the TCP listeners of this machine do not
// take one port twice: admin.listen, remote.listen and the listen address
// of every host that runs here (spawned, or on a loopback address). Two of
// them overlap when they have the same port and the same address, or one
// is a wildcard of the other's family ("::" is both families: Go listens
// dual-stack). Equal addresses among hosts and between a host and
// remote.listen are reported by validateRemote already.
func (c *Config) validateListeners(k *checker) {
	type listener struct {
		path string
		pos  Position
		ap   netip.AddrPort
		host bool
	}
	ls := []listener{{"admin.listen", Position{}, c.Admin.Listen, false}, {"remote.listen", c.Remote.Pos, c.Remote.Listen, false}}
	for i, h := range c.Hosts {
		if h.Spawn || h.IsLoopback() {
			ls = append(ls, listener{indexPath("hosts", i) + ".listen", h.Pos, h.Listen, true})
		}
	}
	for j, b := range ls {
		for _, a := range ls[:j] {
			if !listenersOverlap(a.ap, b.ap) || b.host && (a.host || a.path == "remote.listen") && a.ap.Addr().Unmap() == b.ap.Addr().Unmap() {
				continue
			}
			k.errorf(b.path, b.pos, "%s takes the port of %s %s: both listen on this machine", b.ap, a.path, a.ap)
			break
		}
	}
}

// listenersOverlap reports whether two TCP listeners would take one port.
func listenersOverlap(a, b netip.AddrPort) bool {
	if !a.IsValid() || !b.IsValid() || a.Port() == 0 || a.Port() != b.Port() {
		return false
	}
	x, y := a.Addr().Unmap(), b.Addr().Unmap()
	wildcard := func(w, o netip.Addr) bool { return w.IsUnspecified() && (w.Is6() || o.Is4()) }
	return x == y || wildcard(x, y) || wildcard(y, x)
}

func (c *Config) validateTUN(k *checker) {
	none := Position{}
	if msg := ifNameProblem(c.TUN.Name); msg != "" {
		k.errorf("tun.name", none, "%s, got %s", msg, quoteShort(c.TUN.Name))
	}
	hasV6 := false
	first := map[netip.Addr]int{}
	for i, a := range c.TUN.Addresses {
		path := indexPath("tun.addresses", i)
		switch {
		case !a.IsValid():
			k.errorf(path, none, "invalid address prefix %q", a.String())
			continue
		case a.Addr().Is4In6():
			k.errorf(path, none, "%s is an IPv4-mapped IPv6 address, which the kernel would add as IPv6; write %s",
				a, netip.PrefixFrom(a.Addr().Unmap(), max(a.Bits()-96, 0)))
			continue
		case a.Addr().IsUnspecified() || a.Addr().IsMulticast():
			k.errorf(path, none, "%s cannot be an interface address", a.Addr())
		}
		if a.Addr().Is6() {
			hasV6 = true
		}
		if j, dup := first[a.Addr()]; dup {
			k.errorf(path, none, "duplicate address %s (first at %s)", a.Addr(), k.where(indexPath("tun.addresses", j), path))
			continue
		}
		first[a.Addr()] = i
	}
	// The kernel takes IPv6 off an interface whose MTU is below the IPv6
	// minimum, and then refuses IPv6 routes into it ("no such device").
	v6Route := -1
	for i, r := range c.Routes {
		if c.TUN.InstallRoutes && r.Prefix.IsValid() && r.Prefix.Addr().Is6() {
			v6Route = i
			break
		}
	}
	switch mtu := c.TUN.MTU; {
	case mtu < MinMTU || mtu > MaxMTU:
		k.errorf("tun.mtu", none, "must be between %d and %d, got %d", MinMTU, MaxMTU, mtu)
	case hasV6 && mtu < MinMTUIPv6:
		k.errorf("tun.mtu", none, "must be at least %d with an ipv6 address in tun.addresses, got %d", MinMTUIPv6, mtu)
	case v6Route >= 0 && mtu < MinMTUIPv6:
		k.errorf("tun.mtu", none, "must be at least %d with an ipv6 route installed into the tun (routes[%d], %s), got %d; "+
			"or set tun.install_routes: false", MinMTUIPv6, v6Route, c.Routes[v6Route].Prefix, mtu)
	}
}

// where names the place of first, the first of two duplicates, for
// "first at" notes: "line 12", or the path itself for a config built in
// code.
func (k *checker) where(first, second string) string {
	if k.p.root() == nil {
		return first
	}
	return firstAt(k.p.at(first, Position{}), k.p.at(second, Position{}))
}

// checkMailbox validates a mailbox: the top-level one (inherit nil) or a
// protocol's, whose keys come from the top-level mailbox (inherit) unless
// the entry sets them. An inherited value was checked at the top level; a
// key the entry sets is checked even when it equals the inherited one.
func checkMailbox(k *checker, path string, pos Position, m Mailbox, inherit *Mailbox) {
	own := func(key string, differs bool) bool {
		switch {
		case inherit == nil:
			return true
		case k.p.root() != nil:
			return present(k.p.doc, k.p.root(), path+"."+key)
		}
		return differs // a config built in code
	}
	if n := m.Capacity; own("capacity", inherit != nil && n != inherit.Capacity) && (n < 1 || n > MaxMailboxCapacity) {
		k.errorf(path+".capacity", pos, "must be between 1 and %d batches, got %d", MaxMailboxCapacity, n)
	}
	if own("policy", inherit != nil && m.Policy != inherit.Policy) && m.Policy != PolicyDropNewest && m.Policy != PolicyDropOldest && m.Policy != PolicyCoDel {
		k.errorf(path+".policy", pos, "must be %s, %s or %s, got %s", PolicyDropNewest, PolicyDropOldest, PolicyCoDel, quoteShort(m.Policy))
	}
	ownInterval := own("interval", inherit != nil && m.Interval != inherit.Interval)
	if ownInterval && (m.Interval <= 0 || m.Interval > MaxCoDelInterval) {
		k.errorf(path+".interval", pos, "must be above 0 and at most %v, got %v", MaxCoDelInterval, m.Interval)
		return
	}
	if own("target", inherit != nil && m.Target != inherit.Target) || ownInterval {
		switch {
		case m.Target <= 0:
			k.errorf(path+".target", pos, "must be above 0, got %v", m.Target)
		case m.Target > m.Interval:
			k.errorf(path+".target", pos, "must be at most the interval (%v), got %v", m.Interval, m.Target)
		}
	}
}

// restartRateProblem says why a restart budget lets a failing actor restart
// faster than MaxRestartRate times a second, or "". A budget allows at
// most max_restarts restarts within its window and at most one per
// backoff, so the rule is: backoff at least 1s/MaxRestartRate, or
// max_restarts at most MaxRestartRate per second of within. Without it, a
// protocol that fails at once on start (a port taken, a bad key) restarts
// in a busy loop: 0s of backoff and a budget of a million took a core and
// wrote 23 MB of logs in 6 s.
func restartRateProblem(s Supervision) string {
	minBackoff := time.Second / MaxRestartRate
	within := time.Duration(s.Within)
	if time.Duration(s.Backoff) >= minBackoff || within <= 0 || s.MaxRestarts <= 0 {
		return ""
	}
	rate := float64(s.MaxRestarts) / within.Seconds()
	if rate <= MaxRestartRate {
		return ""
	}
	most := int64(within.Seconds() * MaxRestartRate)
	return fmt.Sprintf("backoff %s with max_restarts %d within %s lets a failing actor restart %.0f times a second; "+
		"a restart budget must bound the rate to %d a second: make backoff at least %s, or max_restarts at most %d",
		s.Backoff, s.MaxRestarts, s.Within, rate, MaxRestartRate, minBackoff, most)
}

// validateProtocols checks the protocol entries and returns the line of
// each name.
func (c *Config) validateProtocols(k *checker) map[string]int {
	if len(c.Protocols) > MaxProtocols {
		k.errorf("protocols", Position{}, "%d protocols, at most %d are allowed", len(c.Protocols), MaxProtocols)
	}
	names := map[string]int{}
	for i, p := range c.Protocols {
		path := indexPath("protocols", i)
		switch {
		case p.Name == "":
			k.errorf(path+".name", p.Pos, "required")
		case !validProtocolName(p.Name):
			k.errorf(path+".name", p.Pos, "must match [a-z0-9][a-z0-9._-]* and be at most %d bytes, got %s",
				MaxProtocolName, quoteShort(p.Name))
		}
		if p.Name != "" {
			if j, dup := names[p.Name]; dup {
				k.errorf(path+".name", p.Pos, "duplicate protocol name %q (first at %s)",
					p.Name, k.whereOr(indexPath("protocols", j)+".name", path+".name", c.Protocols[j].Pos))
			} else {
				names[p.Name] = i
			}
		}
		if p.Type == "" {
			k.errorf(path+".type", p.Pos, "required")
		}
		if p.Host != "" {
			if _, ok := c.Host(p.Host); !ok {
				known := make([]string, len(c.Hosts))
				for j, h := range c.Hosts {
					known[j] = h.Name
				}
				k.errorf(path+".host", p.HostPos, "unknown host %q (hosts: %v)", p.Host, known)
			}
		}
		checkMailbox(k, path+".mailbox", p.Pos, p.Mailbox, &c.Mailbox)
	}
	return names
}

// whereOr is where, with the first's position for configs built in code.
func (k *checker) whereOr(first, second string, pos Position) string {
	if k.p.root() == nil && pos.Line > 0 {
		return fmt.Sprintf("line %d", pos.Line)
	}
	return k.where(first, second)
}

func (c *Config) validateRoutes(k *checker, protocols map[string]int) {
	if len(c.Routes) > MaxRoutes {
		k.errorf("routes", Position{}, "%d routes, at most %d are allowed", len(c.Routes), MaxRoutes)
	}
	first := make(map[netip.Prefix]int, len(c.Routes))
	for i, r := range c.Routes {
		path := indexPath("routes", i)
		if !r.Prefix.IsValid() {
			k.errorf(path+".prefix", r.Pos, "required")
		} else if r.Prefix.Addr().Is4In6() && r.Prefix.Bits() > 96 {
			// The router matches IPv4 packets against IPv4 prefixes only
			// (and the kernel route would be IPv6): it would never match.
			k.errorf(path+".prefix", r.Pos, "%s is an IPv4-mapped IPv6 prefix, which no IPv4 packet matches; write %s",
				r.Prefix, netip.PrefixFrom(r.Prefix.Addr().Unmap(), r.Prefix.Bits()-96).Masked())
		} else if j, dup := first[r.Prefix]; dup {
			k.errorf(path+".prefix", r.Pos, "duplicate prefix %s (first at %s)",
				r.Prefix, k.whereOr(indexPath("routes", j)+".prefix", path+".prefix", c.Routes[j].Pos))
		} else {
			first[r.Prefix] = i
		}
		switch r.Action {
		case "":
			if r.To == "" {
				k.errorf(path, r.Pos, "needs to (a protocol name) or action (drop or reject)")
			} else if _, ok := protocols[r.To]; !ok {
				msg := fmt.Sprintf("no protocol named %s", quoteShort(r.To))
				known := make([]string, 0, len(protocols))
				for name := range protocols {
					known = append(known, name)
				}
				if s := suggest(r.To, known); s != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", s)
				}
				k.errorf(path+".to", r.Pos, "%s", msg)
			}
		case ActionDrop, ActionReject:
			if r.To != "" {
				k.errorf(path+".action", r.Pos, "cannot be combined with to: a route either forwards to a protocol or drops")
			}
		default:
			k.errorf(path+".action", r.Pos, "must be drop or reject, got %s", quoteShort(r.Action))
		}
	}
}

// validNodeName reports whether s is [A-Za-z0-9][A-Za-z0-9._-]* of at most
// MaxNodeName bytes.
func validNodeName(s string) bool {
	if s == "" || len(s) > MaxNodeName || !isAlnum(s[0]) {
		return false
	}
	for i := range len(s) {
		if b := s[i]; !isAlnum(b) && b != '.' && b != '_' && b != '-' {
			return false
		}
	}
	return true
}

// validProtocolName reports whether s is [a-z0-9][a-z0-9._-]* of at most
// MaxProtocolName bytes.
func validProtocolName(s string) bool {
	if s == "" || len(s) > MaxProtocolName {
		return false
	}
	for i := range len(s) {
		b := s[i]
		lower := b >= 'a' && b <= 'z' || b >= '0' && b <= '9'
		if !lower && (i == 0 || b != '.' && b != '_' && b != '-') {
			return false
		}
	}
	return true
}

func isAlnum(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9'
}

// ifNameProblem returns what is wrong with a TUN interface name, or "".
// The kernel refuses "", ".", "..", names of IFNAMSIZ bytes or more and
// names with '/', ':' or white space, and treats '%' as a pattern
// ("%d" creates "0", which the daemon then cannot find); the rule here is
// the safe subset of names the kernel takes as they are.
func ifNameProblem(s string) string {
	switch {
	case s == "." || s == "..":
		return `must not be "." or ".."`
	case s == "" || len(s) > MaxIfName || strings.ContainsFunc(s, func(r rune) bool { return !isIfNameChar(r) }):
		return fmt.Sprintf("must be 1-%d characters of [A-Za-z0-9_=+.-]", MaxIfName)
	}
	return ""
}

func isIfNameChar(r rune) bool {
	return r < utf8.RuneSelf && isAlnum(byte(r)) || strings.ContainsRune("_=+.-", r)
}

func indexPath(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

func reflectValue(ptr any) reflect.Value { return reflect.ValueOf(ptr).Elem() }
