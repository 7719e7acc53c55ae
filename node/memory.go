package node

import (
	"fmt"
	"strings"

	"switchyard/actors/remote"
	"switchyard/config"
	"switchyard/packet"
)

// RuntimeHeadroomBytes (128 MiB) is what a switchyard process allows the Go
// runtime beyond its packet pool (protoactor, the protocols' own state,
// garbage awaiting collection): the daemon's and each host's GC soft limit
// is its pool's bound plus this.
const RuntimeHeadroomBytes = 128 << 20

// Memory is the worst case a config lets the daemon and its protocol hosts
// hold, part by part. Every packet buffer — in a mailbox, a batch in hand, a
// staging queue, a read slot — comes from a process's bounded pool, so the
// pools bound the packets; the shared-memory regions come on top.
type Memory struct {
	PoolBytes      int64 // the daemon's pool: pool_buffers × buffer size
	HostPoolBytes  int64 // each protocol host's pool (same size)
	Hosts          int   // protocol hosts
	Regions        int   // shared-memory regions: one per hosted instance
	RegionBytes    int64 // address space of one region
	RegionResident int64 // what one region can make resident: a page per slot of MTU-sized packets
	RuntimeBytes   int64 // Go runtime headroom per process
}

// MemoryBound computes Memory for cfg.
func MemoryBound(cfg *config.Config) Memory {
	m := Memory{
		PoolBytes:    int64(cfg.Batch.PoolBuffers) * packet.BufferBytes,
		RuntimeBytes: RuntimeHeadroomBytes,
		Hosts:        len(cfg.Hosts),
	}
	m.HostPoolBytes = m.PoolBytes
	for _, p := range cfg.Protocols {
		if h, ok := cfg.Host(p.Host); ok && h.UsesSHM() {
			m.Regions++
		}
	}
	slots := int64(remote.SHMTXSlots + remote.SHMRXSlots)
	m.RegionBytes = slots * packet.BufferBytes
	m.RegionResident = slots * 4096
	return m
}

// Total is the worst case over every process, address space of the regions
// counted whole.
func (m Memory) Total() int64 {
	return m.PoolBytes + m.RuntimeBytes + int64(m.Hosts)*(m.HostPoolBytes+m.RuntimeBytes) + int64(m.Regions)*m.RegionBytes
}

func (m Memory) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "worst-case memory: %s\n", mib(m.Total()))
	fmt.Fprintf(&b, "  daemon: packet pool %s (batch.pool_buffers × %d bytes) + Go runtime %s\n", mib(m.PoolBytes), packet.BufferBytes, mib(m.RuntimeBytes))
	if m.Hosts > 0 {
		fmt.Fprintf(&b, "  protocol hosts: %d × (pool %s + Go runtime %s)\n", m.Hosts, mib(m.HostPoolBytes), mib(m.RuntimeBytes))
	}
	if m.Regions > 0 {
		fmt.Fprintf(&b, "  shared memory: %d regions × %s of address space (at most %s resident each with MTU-sized packets)\n",
			m.Regions, mib(m.RegionBytes), mib(m.RegionResident))
	}
	b.WriteString("  every queued packet is a pool buffer: mailboxes, staging and windows hold no memory beyond the pools")
	return b.String()
}

func mib(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }
