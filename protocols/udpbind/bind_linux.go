//go:build linux

package udpbind

// Receive flow, one call of a receive function (one socket, one caller at a
// time):
//
//  1. The caller hands over all its buffers (BatchSize). With UDP GRO on,
//     recvmmsg reads into the last len/64 of them (2 of 128), since each
//     read may be a super-datagram of up to 64 segments; without GRO, into
//     all of them. The socket is non-blocking: syscall.RawConn.Read parks
//     the goroutine in the runtime's poller until data comes.
//  2. Each message read is checked: empty (counted "empty") and truncated
//     (counted "malformed") ones are skipped, never ending the read.
//  3. The others are split at their GRO segment size (or taken whole) into
//     the next free slot from the front, copying within the caller's
//     buffers; each slot gets the size and the endpoint of its source (from
//     the socket's small cache, so a steady peer allocates nothing).
//  4. The count of filled slots is returned; they are all non-empty.
//
// Send flow (any number of callers; each takes a sendState from a pool):
//
//  1. The endpoint's address becomes the sockaddr of every message.
//  2. With GSO, runs of same-sized packets are appended into the first
//     packet's spare capacity and sent as one message with UDP_SEGMENT (as
//     conn.StdNetBind does); the sticky source, if any, goes in IP_PKTINFO.
//  3. sendmmsg until all messages are out. EIO with GSO means the device
//     cannot checksum: GSO is turned off for the socket and the batch sent
//     again without it (GSODisabledError).

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"

	"switchyard/stats"
)

// Bind is a conn.Bind over one UDP socket per family (see the package doc).
type Bind struct {
	opts Options

	mu   sync.Mutex
	sock [2]*socket // [0] IPv4, [1] IPv6; nil when closed or the family is unavailable
	mark uint32

	noGRO bool // tests: leave UDP GRO off, to exercise the plain read
}

var _ conn.Bind = (*Bind)(nil)

// New returns a closed bind; Open opens its sockets.
func New(o Options) conn.Bind { return &Bind{opts: o} }

// GSODisabledError is returned by Send when the kernel refused UDP GSO
// (EIO: the route's device has no checksum offload): GSO is off for the
// socket from then on, and RetryErr is the result of sending the batch again
// without it.
type GSODisabledError struct {
	Local    string // the socket's local address
	RetryErr error
}

func (e *GSODisabledError) Error() string {
	return fmt.Sprintf("UDP GSO disabled on %s: the device cannot checksum it", e.Local)
}

func (e *GSODisabledError) Unwrap() error { return e.RetryErr }

// Open implements conn.Bind: it listens on port (0: a free one) on every
// address of both families, as conn.StdNetBind does.
func (b *Bind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sock[0] != nil || b.sock[1] != nil {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	var s4, s6 *socket
	var err error
	for tries := 0; ; tries++ {
		s4, err = b.listen("udp4", int(port))
		if err != nil && !errors.Is(err, syscall.EAFNOSUPPORT) {
			return nil, 0, err
		}
		p := int(port)
		if s4 != nil {
			p = s4.port
		}
		s6, err = b.listen("udp6", p)
		if port == 0 && errors.Is(err, syscall.EADDRINUSE) && tries < openRetries {
			s4.close()
			continue
		}
		if err != nil && !errors.Is(err, syscall.EAFNOSUPPORT) {
			s4.close()
			return nil, 0, err
		}
		break
	}
	var fns []conn.ReceiveFunc
	actual := 0
	if s4 != nil {
		fns = append(fns, s4.receiveIPv4)
		actual = s4.port
	}
	if s6 != nil {
		fns = append(fns, s6.receiveIPv6)
		actual = s6.port
	}
	if len(fns) == 0 {
		return nil, 0, syscall.EAFNOSUPPORT
	}
	b.sock = [2]*socket{s4, s6}
	if b.mark != 0 {
		if err := b.setMark(b.mark); err != nil {
			s4.close()
			s6.close()
			b.sock = [2]*socket{}
			return nil, 0, err
		}
	}
	return fns, uint16(actual), nil
}

// Close implements conn.Bind: every receive function returns net.ErrClosed
// afterwards.
func (b *Bind) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	err4 := b.sock[0].close()
	err6 := b.sock[1].close()
	b.sock = [2]*socket{}
	return errors.Join(err4, err6)
}

// SetMark implements conn.Bind (SO_MARK on both sockets).
func (b *Bind) SetMark(mark uint32) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.mark = mark
	return b.setMark(mark)
}

func (b *Bind) setMark(mark uint32) error {
	for _, s := range b.sock {
		if s == nil {
			continue
		}
		if err := s.control(func(fd int) error {
			return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, int(mark))
		}); err != nil {
			return fmt.Errorf("udp %s: set mark %d: %w", s.local, mark, err)
		}
	}
	return nil
}

// ParseEndpoint implements conn.Bind: s is ip:port.
func (b *Bind) ParseEndpoint(s string) (conn.Endpoint, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, err
	}
	return NewEndpoint(ap), nil
}

// BatchSize implements conn.Bind.
func (b *Bind) BatchSize() int { return BatchSize }

// Send implements conn.Bind: it sends bufs to ep in as few sendmmsg calls
// as the kernel allows. It borrows bufs, but writes into their spare
// capacity when GSO coalesces a run of them.
func (b *Bind) Send(bufs [][]byte, ep conn.Endpoint) error {
	e, ok := ep.(*Endpoint)
	if !ok {
		return conn.ErrWrongEndpointType
	}
	if len(bufs) > BatchSize {
		return fmt.Errorf("udp send: %d datagrams, more than the batch size %d", len(bufs), BatchSize)
	}
	fam := 0
	if e.dst.Addr().Is6() {
		fam = 1
	}
	b.mu.Lock()
	s := b.sock[fam]
	b.mu.Unlock()
	if s == nil {
		return syscall.EAFNOSUPPORT
	}
	return s.send(bufs, e)
}

// socket is one UDP socket and the state of its receive and send paths.
type socket struct {
	conn  *net.UDPConn
	rc    syscall.RawConn
	is6   bool
	port  int
	local string // for errors and logs
	gro   bool   // UDP_GRO is on: reads may be super-datagrams
	gso   atomic.Bool
	stats *stats.Counters

	recvMu sync.Mutex // one receive at a time (the state below is reused)
	recv   *recvState

	sends sync.Pool // *sendState
}

// oobBytes is room for the control messages of one datagram: the larger
// packet-info (IPv6) and a GRO or GSO segment size.
var oobBytes = unix.CmsgSpace(unix.SizeofInet6Pktinfo) + unix.CmsgSpace(4)

// listen opens one socket of network ("udp4" or "udp6") on port, with the
// options conn.StdNetBind sets: big buffers, packet-info for sticky
// sources, IPv6 only on the IPv6 socket, and UDP GRO.
func (b *Bind) listen(network string, port int) (*socket, error) {
	lc := net.ListenConfig{Control: func(network, _ string, c syscall.RawConn) error {
		var err error
		cerr := c.Control(func(fd uintptr) {
			err = setOptions(int(fd), network, !b.noGRO)
		})
		return errors.Join(cerr, err)
	}}
	pc, err := lc.ListenPacket(context.Background(), network, ":"+strconv.Itoa(port))
	if err != nil {
		return nil, err
	}
	uc := pc.(*net.UDPConn)
	rc, err := uc.SyscallConn()
	if err != nil {
		uc.Close()
		return nil, err
	}
	la := uc.LocalAddr().(*net.UDPAddr)
	s := &socket{conn: uc, rc: rc, is6: network == "udp6", port: la.Port, local: la.String(), stats: b.opts.Stats}
	_ = s.control(func(fd int) error {
		gro, err := unix.GetsockoptInt(fd, unix.IPPROTO_UDP, unix.UDP_GRO)
		s.gro = err == nil && gro == 1
		_, err = unix.GetsockoptInt(fd, unix.IPPROTO_UDP, unix.UDP_SEGMENT)
		s.gso.Store(err == nil)
		return nil
	})
	s.recv = newRecvState(s)
	s.sends.New = func() any { return newSendState(s) }
	return s, nil
}

// setOptions sets a new socket's options before it is bound. Buffer sizes
// and GRO are best effort; packet-info and IPv6-only are required.
func setOptions(fd int, network string, gro bool) error {
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, socketBufferBytes)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, socketBufferBytes)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, socketBufferBytes)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, socketBufferBytes)
	switch network {
	case "udp4":
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_PKTINFO, 1); err != nil {
			return os.NewSyscallError("setsockopt IP_PKTINFO", err)
		}
	case "udp6":
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1); err != nil {
			return os.NewSyscallError("setsockopt IPV6_RECVPKTINFO", err)
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			return os.NewSyscallError("setsockopt IPV6_V6ONLY", err)
		}
	default:
		return fmt.Errorf("udp: unknown network %q", network)
	}
	if gro {
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_UDP, unix.UDP_GRO, 1)
	}
	return nil
}

// control runs f on the socket's descriptor.
func (s *socket) control(f func(fd int) error) error {
	var ferr error
	if err := s.rc.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// close closes the socket; a nil socket is closed already.
func (s *socket) close() error {
	if s == nil {
		return nil
	}
	return s.conn.Close()
}

// receiveIPv4 and receiveIPv6 are the receive functions (conn.ReceiveFunc
// names them v4 and v6 by these names).
func (s *socket) receiveIPv4(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
	return s.receive(bufs, sizes, eps)
}

func (s *socket) receiveIPv6(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
	return s.receive(bufs, sizes, eps)
}

// recvState is what one receive call works with, reused across calls.
type recvState struct {
	s     *socket
	hs    []unix.Mmsghdr
	iov   []unix.Iovec
	names []unix.RawSockaddrInet6
	oob   []byte // oobBytes per message

	cache [endpointCacheSize]cachedEndpoint
	next  int // the cache slot to replace next

	// The arguments and results of one recvmmsg, for readFn.
	count, n int
	errno    error
	readFn   func(fd uintptr) bool // r.read, bound once
}

// cachedEndpoint is a source seen recently and the endpoint handed out for
// it. The key is kept apart: the endpoint may be changed by its holder
// (ClearSrc), the key never.
type cachedEndpoint struct {
	dst     netip.AddrPort
	src     netip.Addr
	ifindex int32
	ep      *Endpoint
}

func newRecvState(s *socket) *recvState {
	r := &recvState{
		s:     s,
		hs:    make([]unix.Mmsghdr, BatchSize),
		iov:   make([]unix.Iovec, BatchSize),
		names: make([]unix.RawSockaddrInet6, BatchSize),
		oob:   make([]byte, BatchSize*oobBytes),
	}
	r.readFn = r.read
	return r
}

// receive is the receive function (see the flow at the top of the file).
func (s *socket) receive(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
	s.recvMu.Lock()
	defer s.recvMu.Unlock()
	r := s.recv
	first := 0 // the first slot read into
	if s.gro {
		first = len(bufs) - max(1, len(bufs)/maxGROSegments)
	}
	k, err := r.recvmmsg(bufs[first:])
	if err != nil {
		return 0, err
	}
	return r.unpack(bufs, sizes, eps, first, k), nil
}

// recvmmsg reads up to len(bufs) messages into bufs.
func (r *recvState) recvmmsg(bufs [][]byte) (int, error) {
	n := min(len(bufs), len(r.hs))
	for i := 0; i < n; i++ {
		h := &r.hs[i]
		buf := bufs[i]
		if len(buf) > 0 {
			r.iov[i].Base = &buf[0]
		} else {
			r.iov[i].Base = nil
		}
		r.iov[i].SetLen(len(buf))
		h.Hdr.Iov = &r.iov[i]
		h.Hdr.SetIovlen(1)
		h.Hdr.Name = (*byte)(unsafe.Pointer(&r.names[i]))
		h.Hdr.Namelen = unix.SizeofSockaddrInet6
		h.Hdr.Control = &r.oob[i*oobBytes]
		h.Hdr.SetControllen(oobBytes)
		h.Hdr.Flags = 0
		h.Len = 0
	}
	r.count, r.n, r.errno = n, 0, nil
	if err := r.s.rc.Read(r.readFn); err != nil {
		return 0, err // net.ErrClosed once the socket is closed
	}
	if r.errno != nil {
		return 0, os.NewSyscallError("recvmmsg", r.errno)
	}
	return r.n, nil
}

// read is the function given to RawConn.Read: false asks the poller to
// wait for the socket to become readable.
func (r *recvState) read(fd uintptr) bool {
	n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hs[0])), uintptr(r.count),
		unix.MSG_DONTWAIT, 0, 0)
	switch e {
	case 0:
		r.n, r.errno = int(n), nil
	case unix.EAGAIN, unix.EINTR:
		return false
	default:
		r.n, r.errno = 0, e
	}
	return true
}

// unpack turns the k messages read from slot first on into datagrams in
// slots 0, 1, …: it skips and counts empty and truncated messages and splits
// GRO super-datagrams. It returns how many slots hold a datagram.
func (r *recvState) unpack(bufs [][]byte, sizes []int, eps []conn.Endpoint, first, k int) int {
	n := 0
	empty, truncated, truncBytes, overflow := 0, 0, 0, 0
	for i := 0; i < k; i++ {
		h := &r.hs[i]
		slot := first + i
		size := int(h.Len)
		switch {
		case size == 0:
			empty++
			continue
		case h.Hdr.Flags&unix.MSG_TRUNC != 0:
			truncated++
			truncBytes += size
			continue
		}
		oob := r.oob[i*oobBytes : i*oobBytes+int(h.Hdr.Controllen)]
		src, ifindex, seg := parseControl(oob, r.s.is6)
		ep := r.endpoint(&r.names[i], src, ifindex)
		if seg <= 0 || seg >= size {
			seg = size
		}
		msg := bufs[slot][:size]
		for start := 0; start < size; start += seg {
			end := min(start+seg, size)
			if n > slot {
				// Only when the caller gave fewer than 64 buffers: no free
				// slot before this message's own.
				overflow++
				continue
			}
			if n == slot && start == 0 {
				sizes[n] = end // already in place
			} else {
				sizes[n] = copy(bufs[n], msg[start:end])
			}
			eps[n] = ep
			n++
		}
	}
	if st := r.s.stats; st != nil && empty+truncated+overflow > 0 {
		st.In(empty+truncated+overflow, truncBytes)
		st.Drop(Empty, empty)
		st.Drop(stats.Malformed, truncated)
		st.Drop(stats.NoBuffers, overflow)
	}
	return n
}

// endpoint returns the endpoint for a datagram from sa that arrived on src
// (interface ifindex): the cached one, or a new one that replaces the
// oldest in the cache.
func (r *recvState) endpoint(sa *unix.RawSockaddrInet6, src netip.Addr, ifindex int32) *Endpoint {
	dst := sockaddrAddrPort(sa)
	for i := range r.cache {
		c := &r.cache[i]
		if c.ep != nil && c.dst == dst && c.src == src && c.ifindex == ifindex {
			return c.ep
		}
	}
	ep := &Endpoint{dst: dst, src: src, ifindex: ifindex}
	r.cache[r.next] = cachedEndpoint{dst: dst, src: src, ifindex: ifindex, ep: ep}
	r.next = (r.next + 1) % endpointCacheSize
	return ep
}

// sockaddrAddrPort decodes a sockaddr the kernel wrote (IPv4 or IPv6).
func sockaddrAddrPort(sa *unix.RawSockaddrInet6) netip.AddrPort {
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), ntohs(sa4.Port))
	case unix.AF_INET6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), ntohs(sa.Port))
	}
	return netip.AddrPort{}
}

// ntohs reads a port stored in network byte order.
func ntohs(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return binary.BigEndian.Uint16(b[:])
}

// htons stores a port in network byte order.
func htons(p uint16) uint16 {
	var v uint16
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&v))[:], p)
	return v
}

// parseControl reads the local address and interface (packet-info) and the
// GRO segment size (0: not coalesced) from a message's control data.
func parseControl(oob []byte, is6 bool) (src netip.Addr, ifindex int32, seg int) {
	for len(oob) >= unix.SizeofCmsghdr {
		hdr, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			break
		}
		oob = rest
		switch {
		case hdr.Level == unix.IPPROTO_UDP && hdr.Type == unix.UDP_GRO:
			switch {
			case len(data) >= 4:
				seg = int(*(*int32)(unsafe.Pointer(&data[0])))
			case len(data) >= 2:
				seg = int(*(*uint16)(unsafe.Pointer(&data[0])))
			}
		case !is6 && hdr.Level == unix.IPPROTO_IP && hdr.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			info := (*unix.Inet4Pktinfo)(unsafe.Pointer(&data[0]))
			src, ifindex = netip.AddrFrom4(info.Spec_dst), info.Ifindex
		case is6 && hdr.Level == unix.IPPROTO_IPV6 && hdr.Type == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			info := (*unix.Inet6Pktinfo)(unsafe.Pointer(&data[0]))
			src, ifindex = netip.AddrFrom16(info.Addr), int32(info.Ifindex)
		}
	}
	return src, ifindex, seg
}

// sendState is what one Send works with, reused through the socket's pool.
type sendState struct {
	s      *socket
	hs     []unix.Mmsghdr
	iov    []unix.Iovec
	oob    []byte // oobBytes per message
	sa4    unix.RawSockaddrInet4
	sa6    unix.RawSockaddrInet6
	msgs   [][]byte // the (coalesced) payload of each message
	start  int
	count  int
	n      int
	errno  error
	sendFn func(fd uintptr) bool // st.write, bound once
}

func newSendState(s *socket) *sendState {
	st := &sendState{
		s:    s,
		hs:   make([]unix.Mmsghdr, BatchSize),
		iov:  make([]unix.Iovec, BatchSize),
		oob:  make([]byte, BatchSize*oobBytes),
		msgs: make([][]byte, BatchSize),
	}
	st.sendFn = st.write
	return st
}

// send sends bufs to e (see the flow at the top of the file).
func (s *socket) send(bufs [][]byte, e *Endpoint) error {
	if len(bufs) == 0 {
		return nil
	}
	st := s.sends.Get().(*sendState)
	defer s.sends.Put(st)
	st.setAddr(e.dst)
	gso := s.gso.Load()
	err := st.sendAll(bufs, e, gso)
	if err != nil && gso && errors.Is(err, unix.EIO) {
		s.gso.Store(false)
		return &GSODisabledError{Local: s.local, RetryErr: st.sendAll(bufs, e, false)}
	}
	return err
}

// setAddr writes the destination sockaddr.
func (st *sendState) setAddr(dst netip.AddrPort) {
	if st.s.is6 {
		st.sa6 = unix.RawSockaddrInet6{Family: unix.AF_INET6, Port: htons(dst.Port()), Addr: dst.Addr().As16()}
	} else {
		st.sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Port: htons(dst.Port()), Addr: dst.Addr().As4()}
	}
}

// sendAll builds the messages for bufs (coalesced when gso) and sends them.
func (st *sendState) sendAll(bufs [][]byte, e *Endpoint, gso bool) error {
	var count int
	if gso {
		count = st.coalesce(bufs, e)
	} else {
		for i, buf := range bufs {
			st.msgs[i] = buf
			st.setControl(i, e, 0)
		}
		count = len(bufs)
	}
	for i := 0; i < count; i++ {
		h := &st.hs[i]
		msg := st.msgs[i]
		if len(msg) > 0 {
			st.iov[i].Base = &msg[0]
		} else {
			st.iov[i].Base = nil
		}
		st.iov[i].SetLen(len(msg))
		h.Hdr.Iov = &st.iov[i]
		h.Hdr.SetIovlen(1)
		if st.s.is6 {
			h.Hdr.Name = (*byte)(unsafe.Pointer(&st.sa6))
			h.Hdr.Namelen = unix.SizeofSockaddrInet6
		} else {
			h.Hdr.Name = (*byte)(unsafe.Pointer(&st.sa4))
			h.Hdr.Namelen = unix.SizeofSockaddrInet4
		}
		h.Hdr.Flags = 0
		h.Len = 0
	}
	clear(st.msgs[:count])
	for st.start = 0; st.start < count; {
		st.count, st.n, st.errno = count, 0, nil
		if err := st.s.rc.Write(st.sendFn); err != nil {
			return err
		}
		if st.errno != nil {
			return os.NewSyscallError("sendmmsg", st.errno)
		}
		st.start += st.n
	}
	return nil
}

// write is the function given to RawConn.Write.
func (st *sendState) write(fd uintptr) bool {
	n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&st.hs[st.start])),
		uintptr(st.count-st.start), unix.MSG_DONTWAIT, 0, 0)
	switch e {
	case 0:
		st.n, st.errno = int(n), nil
	case unix.EAGAIN, unix.EINTR:
		return false
	default:
		st.n, st.errno = 0, e
	}
	return true
}

// coalesce groups bufs into GSO messages as conn.StdNetBind does: a run of
// packets of the first one's size (a shorter one may end it), at most 64,
// appended into the first one's spare capacity, up to the largest UDP
// payload. It returns the number of messages.
func (st *sendState) coalesce(bufs [][]byte, e *Endpoint) int {
	maxPayload := maxIPv4Payload
	if st.s.is6 {
		maxPayload = maxIPv6Payload
	}
	base := -1
	segSize, segs, ended := 0, 0, false
	for _, buf := range bufs {
		if base >= 0 {
			m := st.msgs[base]
			if !ended && len(buf) <= segSize && len(m)+len(buf) <= maxPayload &&
				len(buf) <= cap(m)-len(m) && segs < maxGROSegments {
				st.msgs[base] = append(m, buf...)
				segs++
				ended = len(buf) < segSize // a shorter packet must end the run
				continue
			}
			st.finish(base, e, segSize, segs)
		}
		base++
		st.msgs[base] = buf
		segSize, segs, ended = len(buf), 1, false
	}
	st.finish(base, e, segSize, segs)
	return base + 1
}

// finish writes message i's control data: UDP_SEGMENT when it carries more
// than one packet.
func (st *sendState) finish(i int, e *Endpoint, segSize, segs int) {
	if segs > 1 {
		st.setControl(i, e, segSize)
	} else {
		st.setControl(i, e, 0)
	}
}

// setControl writes message i's control data: the sticky source (if any)
// and the GSO segment size (if > 0).
func (st *sendState) setControl(i int, e *Endpoint, segSize int) {
	h := &st.hs[i]
	oob := st.oob[i*oobBytes : (i+1)*oobBytes]
	used := 0
	switch {
	case !e.src.IsValid():
	case st.s.is6 && e.src.Is6():
		data := putCmsg(oob, &used, unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, unix.SizeofInet6Pktinfo)
		*(*unix.Inet6Pktinfo)(unsafe.Pointer(&data[0])) = unix.Inet6Pktinfo{Addr: e.src.As16(), Ifindex: uint32(e.ifindex)}
	case !st.s.is6 && e.src.Is4():
		data := putCmsg(oob, &used, unix.IPPROTO_IP, unix.IP_PKTINFO, unix.SizeofInet4Pktinfo)
		*(*unix.Inet4Pktinfo)(unsafe.Pointer(&data[0])) = unix.Inet4Pktinfo{Ifindex: e.ifindex, Spec_dst: e.src.As4()}
	}
	if segSize > 0 {
		data := putCmsg(oob, &used, unix.IPPROTO_UDP, unix.UDP_SEGMENT, 2)
		*(*uint16)(unsafe.Pointer(&data[0])) = uint16(segSize)
	}
	if used == 0 {
		h.Hdr.Control = nil
		h.Hdr.SetControllen(0)
		return
	}
	h.Hdr.Control = &oob[0]
	h.Hdr.SetControllen(used)
}

// putCmsg writes a control message header for datalen bytes of data at
// oob[*used:], advances *used past it and returns its (zeroed) data.
func putCmsg(oob []byte, used *int, level, typ int32, datalen int) []byte {
	b := oob[*used : *used+unix.CmsgSpace(datalen)]
	clear(b)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = level, typ
	h.SetLen(unix.CmsgLen(datalen))
	*used += len(b)
	return b[unix.CmsgLen(0):unix.CmsgLen(datalen)]
}
