package config

import (
	"fmt"
	"net/netip"
)

// Port is a local port a protocol instance binds, as its parsed settings
// report it through PortBinder.
type Port struct {
	// Network is "udp" (or "tcp"): ports of different networks do not
	// conflict.
	Network string
	// Port is the port number; 0 (the kernel chooses) never conflicts.
	Port uint16
	// Field is the settings field that sets it, relative to the block
	// ("listen", "listen_port"), for the error's position and path.
	Field string
}

// PortBinder is implemented by the parsed settings of a protocol that
// binds local ports, so that a check finds two protocols on one port
// before run fails to bind the second. A protocol binds its ports on every
// address of both families (conn.StdNetBind), so one port number is one
// port of the machine.
type PortBinder interface {
	Ports() []Port
}

// CheckPorts reports protocols that would bind one port of one machine.
// ports[i] are the ports of c.Protocols[i] (nil for a protocol that binds
// none or whose settings did not parse). Protocols run on this machine
// when they have no host, or their host is spawned or listens on a
// loopback address; other hosts are on the machine of their listen
// address. Each conflict is reported at the later protocol's field.
func (c *Config) CheckPorts(ports [][]Port) Errors {
	type use struct {
		protocol int
		field    string
	}
	seen := map[string]use{}
	var errs Errors
	for i, ps := range ports {
		if i >= len(c.Protocols) {
			break
		}
		p := c.Protocols[i]
		machine := c.machineOf(p)
		for _, port := range ps {
			if port.Port == 0 {
				continue
			}
			key := fmt.Sprintf("%s/%s/%d", machine, port.Network, port.Port)
			first, taken := seen[key]
			if !taken {
				seen[key] = use{i, port.Field}
				continue
			}
			fp := c.Protocols[first.protocol]
			e := p.Settings.Errorf(port.Field, "%s port %d is already bound by protocol %q (%s, %s); a protocol binds its port on every address of %s",
				port.Network, port.Port, fp.Name, joinPath(fp.Settings.Path(), first.field),
				lineOf(fp.Settings.Errorf(first.field, "").Pos), machineName(machine))
			if e.Pos.File == "" {
				e.Pos.File = c.File
			}
			errs = append(errs, e)
		}
	}
	return errs
}

// machineOf names the machine a protocol runs on: "" for this one.
func (c *Config) machineOf(p Protocol) string {
	h, ok := c.Host(p.Host)
	if !ok || h.Spawn || h.IsLoopback() {
		return ""
	}
	return h.Listen.Addr().Unmap().String()
}

func machineName(machine string) string {
	if machine == "" {
		return "this machine"
	}
	if a, err := netip.ParseAddr(machine); err == nil {
		return "the machine at " + a.String()
	}
	return machine
}

// lineOf is "line N", or "an unknown line" for a config built in code.
func lineOf(p Position) string {
	if p.Line <= 0 {
		return "an unknown line"
	}
	return fmt.Sprintf("line %d", p.Line)
}
