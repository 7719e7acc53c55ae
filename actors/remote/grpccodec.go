package remote

// The gRPC codec: protoactor's RemoteMessage without copying payloads.
//
// protoactor sends everything as a RemoteMessage whose MessageBatch holds
// each message's bytes (MessageEnvelope.message_data, for a batch the
// wire.Envelope a sender sealed in its slot). gRPC's proto codec copies
// every one of them into a new buffer to marshal, and again out of the
// received bytes to unmarshal, each into freshly cleared memory: profiles
// put that at a fifth to a third of a process's CPU (BENCHMARKS.md). This
// codec is forced on the server and on every dial:
//
//  1. Marshal of a MessageBatch writes the protobuf framing (names, PIDs,
//     each envelope's small fields) into one pooled buffer and hands gRPC
//     each message_data as it is, as a mem.Buffer aliasing it. gRPC's
//     writer copies it into its write buffer, then frees it: for a slot's
//     envelope that is the moment the slot's bytes are no longer read, which
//     release records (sentEpoch) for the sender's reuse.
//  2. Unmarshal into a received message (the guard's rawMessage) keeps a
//     reference to gRPC's buffers instead of decoding: the guard parses the
//     batch itself (parseRemoteMessage), message_data aliasing gRPC's
//     buffer when the message came in one, else one contiguous pooled
//     copy of its buffers, and frees it when the endpoint reader asks
//     for the next message — by then protoactor has delivered every
//     envelope, and the receiver decoded each batch into its own pool.
//  3. Everything else (connect and disconnect messages, the unary RPCs) goes
//     through the standard proto codec.
//
// Buffers come from bufferPool, tiered and not cleared: every byte handed
// out is written before it is read (gRPC reads whole frames into them, the
// codec writes whole messages).

import (
	"fmt"
	"math/bits"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	pb "google.golang.org/protobuf/proto"
)

// sentEpoch counts message_data buffers gRPC has finished with. A Sender
// reads it before reusing an acknowledged slot: gRPC's writer copies a
// slot's envelope on its own goroutine, and the acknowledgement that frees
// the slot reaches the sender over the network, which the race detector
// (and the memory model) cannot see. The atomic makes the order visible; it
// costs one add per envelope sent.
var sentEpoch atomic.Uint64

// releaser is the mem.BufferPool of aliased message_data: it advances the
// epoch and recycles the holder mem.NewBuffer needs (a *[]byte).
type releaser struct{}

var holders = sync.Pool{New: func() any { return new([]byte) }}

// holdData returns a holder of d for mem.NewBuffer, without allocating in
// steady state.
func holdData(d []byte) *[]byte {
	h := holders.Get().(*[]byte)
	*h = d
	return h
}

func (releaser) Get(int) *[]byte { panic("remote: releaser hands out no buffers") }

func (releaser) Put(h *[]byte) {
	sentEpoch.Add(1)
	*h = nil
	holders.Put(h)
}

// Pool tiers: powers of two from 1<<minPoolShift (256 B) to 1<<maxPoolShift
// (16 MiB, MaxGRPCMessageBytes: the largest message gRPC lets through).
const (
	minPoolShift = 8
	maxPoolShift = 24
)

// minFramingBytes (2 KiB) is the least capacity of a framing buffer: above
// gRPC's pooling threshold (mem.IsBelowBufferPoolingThreshold, 1 KiB).
const minFramingBytes = 2 << 10

func init() {
	if mem.IsBelowBufferPoolingThreshold(minFramingBytes) {
		panic("remote: minFramingBytes is below gRPC's pooling threshold")
	}
	if 1<<maxPoolShift < MaxGRPCMessageBytes {
		panic("remote: buffer pool tiers end below MaxGRPCMessageBytes")
	}
}

// tieredPool is a mem.BufferPool of power-of-two buffers that are not
// cleared between uses (gRPC's default pool clears each one, up to 1 MiB,
// on every Get).
type tieredPool struct {
	tiers [maxPoolShift - minPoolShift + 1]sync.Pool
}

var bufferPool = &tieredPool{}

func tierOf(n int) int {
	if n <= 1<<minPoolShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minPoolShift
}

// Get returns a buffer of length n; its bytes are whatever they were.
func (p *tieredPool) Get(n int) *[]byte {
	t := tierOf(n)
	if t >= len(p.tiers) {
		b := make([]byte, n)
		return &b
	}
	if b, ok := p.tiers[t].Get().(*[]byte); ok {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, 1<<(t+minPoolShift))
	return &b
}

// Put takes back a buffer Get returned (any prefix of it).
func (p *tieredPool) Put(b *[]byte) {
	c := cap(*b)
	t := tierOf(c)
	if t < len(p.tiers) && c == 1<<(t+minPoolShift) {
		p.tiers[t].Put(b)
	}
}

// codec is the gRPC codec of the remote transport.
type codec struct{ std encoding.CodecV2 }

var grpcCodec = codec{std: encoding.GetCodecV2(proto.Name)}

func (codec) Name() string { return proto.Name }

// rawMessage receives a RemoteMessage undecoded: the guard parses it.
type rawMessage struct{ data mem.BufferSlice }

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	if r, ok := v.(*rawMessage); ok {
		data.Ref()
		r.data = data
		return nil
	}
	return c.std.Unmarshal(data, v)
}

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	if m, ok := v.(*remote.RemoteMessage); ok {
		if mb := m.GetMessageBatch(); mb != nil {
			return marshalBatch(mb)
		}
	}
	return c.std.Marshal(v)
}

// Field numbers of protoactor's remote.proto.
const (
	fRemoteBatch protowire.Number = 1 // RemoteMessage.message_batch

	fBatchTypeNames protowire.Number = 1
	fBatchTargets   protowire.Number = 2
	fBatchEnvelopes protowire.Number = 3
	fBatchSenders   protowire.Number = 4

	fEnvTypeID          protowire.Number = 1
	fEnvData            protowire.Number = 2
	fEnvTarget          protowire.Number = 3
	fEnvSender          protowire.Number = 4
	fEnvSerializerID    protowire.Number = 5
	fEnvHeader          protowire.Number = 6
	fEnvTargetRequestID protowire.Number = 7
	fEnvSenderRequestID protowire.Number = 8
)

// sizeField is the size of a length-delimited field of n bytes.
func sizeField(num protowire.Number, n int) int {
	return protowire.SizeTag(num) + protowire.SizeBytes(n)
}

func sizeVarintField(num protowire.Number, v uint64) int {
	if v == 0 {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeVarint(v)
}

func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	return protowire.AppendVarint(protowire.AppendTag(b, num, protowire.VarintType), v)
}

// int32 fields are encoded as protobuf does: sign-extended to 64 bits.
func i32(v int32) uint64 { return uint64(int64(v)) }

// envelopeSizes returns an envelope's encoded size, and the size of its
// header (the message_header field), which is proto-marshalled.
func envelopeSizes(e *remote.MessageEnvelope) (size, hdr int) {
	size = sizeVarintField(fEnvTypeID, i32(e.TypeId)) +
		sizeVarintField(fEnvTarget, i32(e.Target)) +
		sizeVarintField(fEnvSender, i32(e.Sender)) +
		sizeVarintField(fEnvSerializerID, i32(e.SerializerId)) +
		sizeVarintField(fEnvTargetRequestID, uint64(e.TargetRequestId)) +
		sizeVarintField(fEnvSenderRequestID, uint64(e.SenderRequestId))
	if len(e.MessageData) > 0 {
		size += sizeField(fEnvData, len(e.MessageData))
	}
	if e.MessageHeader != nil {
		hdr = pb.Size(e.MessageHeader)
		size += sizeField(fEnvHeader, hdr)
	}
	return size, hdr
}

// marshalBatch encodes RemoteMessage{message_batch: mb} as proto.Marshal
// would, with each message_data aliased rather than copied.
func marshalBatch(mb *remote.MessageBatch) (mem.BufferSlice, error) {
	// Pass 1: sizes.
	var envSizes, hdrSizes [EndpointWriterBatch]int
	envSize, hdrSize := envSizes[:0], hdrSizes[:0]
	batch, data := 0, 0
	for _, n := range mb.TypeNames {
		if !utf8.ValidString(n) {
			return nil, fmt.Errorf("remote: type name %q is not UTF-8", n)
		}
		batch += sizeField(fBatchTypeNames, len(n))
	}
	for _, p := range mb.Targets {
		batch += sizeField(fBatchTargets, pb.Size(p))
	}
	for _, p := range mb.Senders {
		batch += sizeField(fBatchSenders, pb.Size(p))
	}
	for _, e := range mb.Envelopes {
		if e == nil {
			return nil, fmt.Errorf("remote: nil envelope in a batch")
		}
		s, h := envelopeSizes(e)
		envSize, hdrSize = append(envSize, s), append(hdrSize, h)
		batch += sizeField(fBatchEnvelopes, s)
		data += len(e.MessageData)
	}
	total := sizeField(fRemoteBatch, batch)
	if total > MaxGRPCMessageBytes {
		return nil, fmt.Errorf("remote: message of %d bytes above the limit of %d", total, MaxGRPCMessageBytes)
	}

	// Pass 2: the framing into one pooled buffer, cut where each
	// message_data goes.
	// At least minFramingBytes of capacity, so that mem.NewBuffer pools it
	// (it leaves buffers of 1 KiB and less to the garbage collector).
	hp := bufferPool.Get(max(total-data, minFramingBytes))
	*hp = (*hp)[:total-data]
	b := (*hp)[:0]
	b = protowire.AppendTag(b, fRemoteBatch, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(batch))
	for _, n := range mb.TypeNames {
		b = protowire.AppendTag(b, fBatchTypeNames, protowire.BytesType)
		b = protowire.AppendString(b, n)
	}
	var err error
	for _, p := range mb.Targets {
		if b, err = appendPID(b, fBatchTargets, p); err != nil {
			bufferPool.Put(hp)
			return nil, err
		}
	}
	out := make(mem.BufferSlice, 0, 2*len(mb.Envelopes)+1)
	cuts := 0
	hb := mem.NewBuffer(hp, bufferPool)
	for i, e := range mb.Envelopes {
		b = protowire.AppendTag(b, fBatchEnvelopes, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(envSize[i]))
		b = appendVarintField(b, fEnvTypeID, i32(e.TypeId))
		if len(e.MessageData) > 0 {
			b = protowire.AppendTag(b, fEnvData, protowire.BytesType)
			b = protowire.AppendVarint(b, uint64(len(e.MessageData)))
			out = append(out, hb.Slice(cuts, len(b)))
			cuts = len(b)
			if mem.IsBelowBufferPoolingThreshold(cap(e.MessageData)) {
				out = append(out, mem.SliceBuffer(e.MessageData)) // never a slot's: no release to record
			} else {
				out = append(out, mem.NewBuffer(holdData(e.MessageData), releaser{}))
			}
		}
		b = appendVarintField(b, fEnvTarget, i32(e.Target))
		b = appendVarintField(b, fEnvSender, i32(e.Sender))
		b = appendVarintField(b, fEnvSerializerID, i32(e.SerializerId))
		if e.MessageHeader != nil {
			b = protowire.AppendTag(b, fEnvHeader, protowire.BytesType)
			b = protowire.AppendVarint(b, uint64(hdrSize[i]))
			if b, err = (pb.MarshalOptions{UseCachedSize: true}).MarshalAppend(b, e.MessageHeader); err != nil {
				break
			}
		}
		b = appendVarintField(b, fEnvTargetRequestID, uint64(e.TargetRequestId))
		b = appendVarintField(b, fEnvSenderRequestID, uint64(e.SenderRequestId))
	}
	if err == nil {
		for _, p := range mb.Senders {
			if b, err = appendPID(b, fBatchSenders, p); err != nil {
				break
			}
		}
	}
	if err == nil && len(b) != total-data {
		err = fmt.Errorf("remote: batch framing of %d bytes, sized %d", len(b), total-data)
	}
	if err != nil {
		out.Free()
		hb.Free()
		return nil, err
	}
	if cuts < len(b) {
		out = append(out, hb.Slice(cuts, len(b)))
	}
	hb.Free() // the slices hold their own references
	return out, nil
}

func appendPID(b []byte, num protowire.Number, p *actor.PID) ([]byte, error) {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(pb.Size(p)))
	return pb.MarshalOptions{UseCachedSize: true}.MarshalAppend(b, p)
}

// parseRemoteMessage decodes b into m as proto.Unmarshal would, except that
// a message batch's message_data alias b. Anything but a single
// message_batch (connect and disconnect messages) is left to proto.Unmarshal.
func parseRemoteMessage(b []byte, m *remote.RemoteMessage) error {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 || num != fRemoteBatch || typ != protowire.BytesType {
		return pb.Unmarshal(b, m)
	}
	v, vn := protowire.ConsumeBytes(b[n:])
	if vn < 0 || n+vn != len(b) {
		return pb.Unmarshal(b, m) // more fields: not a plain batch
	}
	mb := &remote.MessageBatch{}
	if err := parseBatch(v, mb); err != nil {
		return err
	}
	pb.Reset(m)
	m.MessageType = &remote.RemoteMessage_MessageBatch{MessageBatch: mb}
	return nil
}

var errWire = fmt.Errorf("remote: invalid protobuf in a message batch")

func parseBatch(b []byte, mb *remote.MessageBatch) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num > protowire.MaxValidNumber {
			return errWire
		}
		b = b[n:]
		if typ != protowire.BytesType || num < fBatchTypeNames || num > fBatchSenders {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return errWire
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return errWire
		}
		b = b[n:]
		switch num {
		case fBatchTypeNames:
			if !utf8.Valid(v) {
				return fmt.Errorf("remote: type name is not UTF-8")
			}
			mb.TypeNames = append(mb.TypeNames, string(v))
		case fBatchTargets, fBatchSenders:
			p := &actor.PID{}
			if err := pb.Unmarshal(v, p); err != nil {
				return err
			}
			if num == fBatchTargets {
				mb.Targets = append(mb.Targets, p)
			} else {
				mb.Senders = append(mb.Senders, p)
			}
		case fBatchEnvelopes:
			e := &remote.MessageEnvelope{}
			if err := parseEnvelope(v, e); err != nil {
				return err
			}
			mb.Envelopes = append(mb.Envelopes, e)
		}
	}
	return nil
}

func parseEnvelope(b []byte, e *remote.MessageEnvelope) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num > protowire.MaxValidNumber {
			return errWire
		}
		b = b[n:]
		switch {
		case typ == protowire.VarintType && num != fEnvData && num != fEnvHeader && num >= fEnvTypeID && num <= fEnvSenderRequestID:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return errWire
			}
			b = b[n:]
			switch num {
			case fEnvTypeID:
				e.TypeId = int32(v)
			case fEnvTarget:
				e.Target = int32(v)
			case fEnvSender:
				e.Sender = int32(v)
			case fEnvSerializerID:
				e.SerializerId = int32(v)
			case fEnvTargetRequestID:
				e.TargetRequestId = uint32(v)
			case fEnvSenderRequestID:
				e.SenderRequestId = uint32(v)
			}
		case typ == protowire.BytesType && (num == fEnvData || num == fEnvHeader):
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return errWire
			}
			b = b[n:]
			if num == fEnvData {
				e.MessageData = v[:len(v):len(v)]
				continue
			}
			if e.MessageHeader == nil {
				e.MessageHeader = &remote.MessageHeader{}
			}
			if err := (pb.UnmarshalOptions{Merge: true}).Unmarshal(v, e.MessageHeader); err != nil {
				return err
			}
		default:
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return errWire
			}
			b = b[n:]
		}
	}
	return nil
}
