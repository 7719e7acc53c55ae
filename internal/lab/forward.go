package lab

// The bare forwarder (`switchyard-lab forward`): the reference of issues 14
// and 21, what a TUN↔UDP tunnel costs on this machine with nothing else —
// no actors, no mailboxes, no router, no counters. It carries the udp
// protocol's wire format (one IP packet per UDP datagram), with the same
// libraries, MTU, offloads and batch size as a Switchyard udp daemon:
//
//  1. A TUN from golang.zx2c4.com/wireguard/tun (on Linux with its virtio
//     offloads: TSO/USO segments split on read, TCP/UDP GRO on write),
//     batch tun.Device.BatchSize (128 with offloads), MTU 1420.
//  2. Our protocols/udpbind: recvmmsg/sendmmsg, UDP GSO on send and GRO
//     on receive, one socket per family.
//  3. TUN → UDP, one goroutine: Read a batch, Send it to the peer.
//  4. UDP → TUN, one goroutine per receive function (IPv4; the IPv6 one
//     idles as the peer is IPv4): receive a batch, Write it to the TUN.
//  5. Buffers are allocated once (BufferBytes each, Headroom in front as
//     the TUN's offset); nothing is allocated per batch.
//  6. The context's end closes the TUN and the bind, which ends the
//     goroutines.
//
// The lab gives the TUN its addresses and brings it up (StartForwarder),
// as it does for a daemon with install_routes.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun"

	"switchyard/packet"
	"switchyard/protocols/udpbind"
)

// ForwardOptions configure Forward.
type ForwardOptions struct {
	TUN    string         // device name; DefaultTUN ("sy0") if empty
	MTU    int            // ForwardMTU if 0
	Listen uint16         // UDP port of both families; DefaultUDPPort if 0
	Peer   netip.AddrPort // the other forwarder
}

// ForwardMTU (1420 bytes) is the forwarder's TUN MTU: the daemons' default
// (config.DefaultMTU), which the lab's udp pairs use.
const ForwardMTU = 1420

// Forward runs the bare forwarder until ctx ends, then closes the TUN and
// the bind and returns. An error is for a forwarder that could not start,
// or a goroutine that failed for another reason than the close.
func Forward(ctx context.Context, o ForwardOptions) error {
	if o.TUN == "" {
		o.TUN = DefaultTUN
	}
	if o.MTU == 0 {
		o.MTU = ForwardMTU
	}
	if o.Listen == 0 {
		o.Listen = DefaultUDPPort
	}
	if !o.Peer.IsValid() {
		return errors.New("forward: no peer address")
	}
	dev, err := tun.CreateTUN(o.TUN, o.MTU)
	if err != nil {
		return fmt.Errorf("forward: create TUN %s: %w", o.TUN, err)
	}
	bind := udpbind.New(udpbind.Options{})
	recvs, _, err := bind.Open(o.Listen)
	if err != nil {
		dev.Close()
		return fmt.Errorf("forward: open UDP port %d: %w", o.Listen, err)
	}
	peer, err := bind.ParseEndpoint(o.Peer.String())
	if err != nil {
		dev.Close()
		bind.Close()
		return fmt.Errorf("forward: peer %s: %w", o.Peer, err)
	}
	batch := min(dev.BatchSize(), packet.MaxBatch)

	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		errs    []error
		closing = make(chan struct{})
	)
	fail := func(err error) {
		select {
		case <-closing:
			return // the close ends every loop with an error
		default:
		}
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := tunToUDP(dev, bind, peer, batch); err != nil {
			fail(err)
		}
	}()
	for _, recv := range recvs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := udpToTUN(recv, dev, bind.BatchSize()); err != nil {
				fail(err)
			}
		}()
	}
	<-ctx.Done()
	close(closing)
	errs = append(errs, bind.Close(), dev.Close())
	wg.Wait()
	return errors.Join(errs...)
}

// forwardBuffers are n buffers of BufferBytes: what a batch of the
// forwarder reads into, allocated once.
func forwardBuffers(n int) [][]byte {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, packet.BufferBytes)
	}
	return bufs
}

// tunToUDP reads batches from the TUN and sends each to the peer in one
// call, until the TUN is closed.
func tunToUDP(dev tun.Device, bind conn.Bind, peer conn.Endpoint, batch int) error {
	bufs := forwardBuffers(batch)
	sizes := make([]int, batch)
	out := make([][]byte, batch)
	for {
		n, err := dev.Read(bufs, sizes, packet.Headroom)
		if err != nil && !errors.Is(err, tun.ErrTooManySegments) {
			if errors.Is(err, os.ErrClosed) || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("forward: TUN read: %w", err)
		}
		for i := range n {
			// The packet, with the buffer's spare capacity after it for
			// UDP GSO to coalesce into.
			out[i] = bufs[i][packet.Headroom : packet.Headroom+sizes[i]]
		}
		if n == 0 {
			continue
		}
		// Any other send error loses the batch, as it does for a daemon
		// (a udpbind.GSODisabledError has sent it again without GSO).
		if err := bind.Send(out[:n], peer); errors.Is(err, net.ErrClosed) {
			return nil
		}
	}
}

// udpToTUN receives batches of datagrams and writes each to the TUN in one
// call, until the bind is closed.
func udpToTUN(recv conn.ReceiveFunc, dev tun.Device, batch int) error {
	bufs := forwardBuffers(batch)
	in := make([][]byte, batch) // the receive's view: after the headroom
	for i := range bufs {
		in[i] = bufs[i][packet.Headroom:]
	}
	sizes := make([]int, batch)
	eps := make([]conn.Endpoint, batch)
	out := make([][]byte, batch)
	for {
		n, err := recv(in, sizes, eps)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("forward: UDP receive: %w", err)
		}
		for i := range n {
			out[i] = bufs[i][:packet.Headroom+sizes[i]]
		}
		if n == 0 {
			continue
		}
		// Any other write error (a packet the TUN refused) loses the
		// batch; the forwarder goes on, as a daemon's injector does.
		if _, err := dev.Write(out[:n], packet.Headroom); errors.Is(err, os.ErrClosed) {
			return nil
		}
	}
}
