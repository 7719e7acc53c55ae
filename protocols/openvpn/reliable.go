package openvpn

// The reliability layer of one key state (OpenVPN's reliable.c): control
// messages carry message ids 0, 1, 2, … per key id and direction; the
// receiver acknowledges each one it accepts (piggybacked on its own
// control packets, or in P_ACK_V1), delivers them in order, and buffers at
// most recvWindow ahead; the sender keeps at most sendWindow
// unacknowledged and retransmits each with a timeout that doubles from
// retransmitMin to retransmitMax. Everything here runs under the session's
// lock.

import "time"

// outMsg is a control message sent and not yet acknowledged.
type outMsg struct {
	id       uint32
	op       byte
	payload  []byte
	sent     bool
	deadline time.Time
	timeout  time.Duration
}

// reliableSend is the sending half.
type reliableSend struct {
	nextID      uint32
	inflight    []*outMsg // ascending ids, at most sendWindow
	queue       [][]byte  // TLS bytes waiting for room in the window, in chunks
	queuedBytes int
	queueOps    []byte // the opcode of each queued chunk
}

// enqueue adds a message with opcode op and payload p (a chunk of at most
// controlPayloadBytes). It reports false when the queue is full.
func (s *reliableSend) enqueue(op byte, p []byte) bool {
	if s.queuedBytes+len(p) > maxQueuedControlBytes {
		return false
	}
	s.queue = append(s.queue, p)
	s.queueOps = append(s.queueOps, op)
	s.queuedBytes += len(p)
	return true
}

// fill moves queued messages into the window while it has room.
func (s *reliableSend) fill() {
	for len(s.queue) > 0 && len(s.inflight) < sendWindow {
		p, op := s.queue[0], s.queueOps[0]
		s.queue[0] = nil
		s.queue, s.queueOps = s.queue[1:], s.queueOps[1:]
		s.queuedBytes -= len(p)
		s.inflight = append(s.inflight, &outMsg{id: s.nextID, op: op, payload: p, timeout: retransmitMin})
		s.nextID++
	}
}

// ack removes the acknowledged message id.
func (s *reliableSend) ack(id uint32) {
	for i, m := range s.inflight {
		if m.id == id {
			copy(s.inflight[i:], s.inflight[i+1:])
			s.inflight[len(s.inflight)-1] = nil
			s.inflight = s.inflight[:len(s.inflight)-1]
			return
		}
	}
}

// due returns the messages to send now (new ones and those whose timeout
// passed) and advances their timers.
func (s *reliableSend) due(now time.Time, dst []*outMsg) []*outMsg {
	for _, m := range s.inflight {
		if !m.sent || now.After(m.deadline) {
			if m.sent {
				m.timeout = min(2*m.timeout, retransmitMax)
			}
			m.sent = true
			m.deadline = now.Add(m.timeout)
			dst = append(dst, m)
		}
	}
	return dst
}

// idle reports whether nothing waits to be sent or acknowledged.
func (s *reliableSend) idle() bool { return len(s.inflight) == 0 && len(s.queue) == 0 }

// inMsg is a received message waiting for its turn.
type inMsg struct {
	op      byte
	payload []byte
}

// reliableRecv is the receiving half.
type reliableRecv struct {
	nextID  uint32
	pending [recvWindow]*inMsg // pending[i]: message nextID+i
	acks    []uint32           // ids to acknowledge
}

// accept takes message id. It reports whether the message is new; either
// way a message inside or behind the window is acknowledged (a
// retransmission means our ack was lost), one beyond it is not.
func (r *reliableRecv) accept(id uint32, op byte, payload []byte) bool {
	d := id - r.nextID
	if int32(d) < 0 {
		r.queueAck(id)
		return false
	}
	if d >= recvWindow {
		return false
	}
	r.queueAck(id)
	if r.pending[d] != nil {
		return false
	}
	r.pending[d] = &inMsg{op: op, payload: append([]byte(nil), payload...)}
	return true
}

func (r *reliableRecv) queueAck(id uint32) {
	for _, a := range r.acks {
		if a == id {
			return
		}
	}
	if len(r.acks) < 4*maxAcks {
		r.acks = append(r.acks, id)
	}
}

// next returns the next in-order message, or nil; it does not remove it
// (pop does), so a consumer that is full can leave it.
func (r *reliableRecv) next() *inMsg { return r.pending[0] }

// pop removes the next in-order message.
func (r *reliableRecv) pop() {
	copy(r.pending[:], r.pending[1:])
	r.pending[recvWindow-1] = nil
	r.nextID++
}

// takeAcks removes and returns up to max acks, into dst.
func (r *reliableRecv) takeAcks(dst []uint32, max int) []uint32 {
	n := min(max, len(r.acks))
	dst = append(dst, r.acks[:n]...)
	r.acks = append(r.acks[:0], r.acks[n:]...)
	return dst
}
