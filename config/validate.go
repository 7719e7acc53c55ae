package config

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"unicode"
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
		case a.Addr().IsUnspecified() || a.Addr().IsMulticast():
			k.errorf(path, none, "%s cannot be an interface address", a.Addr())
		}
		if a.Addr().Is6() && !a.Addr().Is4In6() {
			hasV6 = true
		}
		if j, dup := first[a.Addr()]; dup {
			k.errorf(path, none, "duplicate address %s (first at %s)", a.Addr(), k.where(indexPath("tun.addresses", j), path))
			continue
		}
		first[a.Addr()] = i
	}
	switch mtu := c.TUN.MTU; {
	case mtu < MinMTU || mtu > MaxMTU:
		k.errorf("tun.mtu", none, "must be between %d and %d, got %d", MinMTU, MaxMTU, mtu)
	case hasV6 && mtu < MinMTUIPv6:
		k.errorf("tun.mtu", none, "must be at least %d with an ipv6 address in tun.addresses, got %d", MinMTUIPv6, mtu)
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

// checkMailbox validates a mailbox. A protocol's keys equal to the
// top-level mailbox's (inherit) are inherited and were checked there.
func checkMailbox(k *checker, path string, pos Position, m Mailbox, inherit *Mailbox) {
	if inherit == nil {
		inherit = &Mailbox{Capacity: -1, Policy: "\x00"}
	}
	if n := m.Capacity; n != inherit.Capacity && (n < 1 || n > MaxMailboxCapacity) {
		k.errorf(path+".capacity", pos, "must be between 1 and %d batches, got %d", MaxMailboxCapacity, n)
	}
	if m.Policy != inherit.Policy && m.Policy != PolicyDropNewest && m.Policy != PolicyDropOldest {
		k.errorf(path+".policy", pos, "must be %s or %s, got %s", PolicyDropNewest, PolicyDropOldest, quoteShort(m.Policy))
	}
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

// ifNameProblem returns what is wrong with a Linux interface name (the
// kernel's dev_valid_name rules), or "".
func ifNameProblem(s string) string {
	switch {
	case s == "":
		return "must not be empty"
	case len(s) > MaxIfName:
		return fmt.Sprintf("must be at most %d bytes", MaxIfName)
	case s == "." || s == "..":
		return `must not be "." or ".."`
	case strings.ContainsFunc(s, func(r rune) bool { return r == '/' || r == ':' || unicode.IsSpace(r) || unicode.IsControl(r) }):
		return "must not contain '/', ':', white space or control characters"
	}
	return ""
}

func indexPath(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

func reflectValue(ptr any) reflect.Value { return reflect.ValueOf(ptr).Elem() }
