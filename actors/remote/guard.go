package remote

// The guard: what a peer sends is checked before protoactor sees it.
//
// protoactor-go's endpoint reader trusts its peer: a type name it does not
// know crashes the process (a nil dereference in the proto serializer), an
// index out of range in a MessageBatch panics, a Terminated without a PID
// panics, and the unary RPCs ListProcesses and GetProcessDiagnostics panic
// ("implement me"). gRPC does not recover handler panics, so any of these
// would take the daemon or a host down. The guard is a gRPC interceptor:
//
//  0. A stream or call without the process's secret is refused with
//     Unauthenticated (auth.go) before anything else.
//  1. Unary RPCs are refused with Unimplemented.
//  2. Every MessageBatch the stream receives is decoded by the guard (with
//     message_data aliasing the received bytes, grpccodec.go; bytes that
//     are not protobuf are counted malformed and end the stream, as gRPC's
//     decoding would) and filtered in place before the endpoint reader
//     reads it: an envelope is kept only if its type is
//     one this process accepts (switchyard.Envelope, and the watch messages
//     actor.Watch, actor.Unwatch, actor.Terminated, actor.DeadLetterResponse
//     with their PIDs present), its serializer is protobuf, its target and
//     sender indices are in range, and its data is within the size limit.
//  3. What is removed is counted on the guard's stats by reason —
//     unknown_type, malformed, oversized — and logged at a limited rate.
//     The connection keeps serving.
//  4. A gRPC message above MaxGRPCMessageBytes is refused by gRPC itself
//     (the peer's stream ends); the guard counts it as oversized.

import (
	"context"
	"strconv"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"switchyard/actors/remote/wire"
	"switchyard/stats"
)

var envelopeType = string(proto.MessageName(&wire.Envelope{}))

// accepted are the type names a peer may send, with a check of the decoded
// message where protoactor would dereference its fields.
var accepted = map[string]func(data []byte) bool{
	// The envelope's size is checked first (oversized); here that it
	// decodes, with the envelope's own decoder and no copy: protoactor ends
	// the peer's stream, uncounted, on bytes it cannot unmarshal.
	envelopeType: func(data []byte) bool { return wire.Check(data) == nil },
	"actor.Watch": func(data []byte) bool {
		var m actor.Watch
		return proto.Unmarshal(data, &m) == nil && m.Watcher != nil
	},
	"actor.Unwatch": func(data []byte) bool {
		var m actor.Unwatch
		return proto.Unmarshal(data, &m) == nil && m.Watcher != nil
	},
	"actor.Terminated": func(data []byte) bool {
		var m actor.Terminated
		return proto.Unmarshal(data, &m) == nil && m.Who != nil
	},
	"actor.DeadLetterResponse": func(data []byte) bool {
		var m actor.DeadLetterResponse
		return proto.Unmarshal(data, &m) == nil
	},
}

// envelopeOverhead is the protobuf framing around an envelope's payload
// (kind, seq and the payload's tag and length), generously.
const envelopeOverhead = 32

// protoSerializer is protoactor's serializer id for protobuf.
const protoSerializer = 0

// Guard filters what peers send. One per process.
type Guard struct {
	stats  *stats.Counters
	log    *zap.Logger
	limit  stats.LogLimiter
	secret string // every stream must carry it (auth.go); "" checks none
}

// NewGuard returns a guard counting on st.
func NewGuard(st *stats.Counters, log *zap.Logger) *Guard {
	return &Guard{stats: st, log: log}
}

// ServerOptions are the gRPC server options that install the guard and
// raise the message limit.
func (g *Guard) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxGRPCMessageBytes),
		grpc.MaxSendMsgSize(MaxGRPCMessageBytes),
		grpc.StreamInterceptor(g.stream),
		grpc.UnaryInterceptor(g.unary),
	}
}

func (g *Guard) unary(ctx context.Context, _ any, info *grpc.UnaryServerInfo, _ grpc.UnaryHandler) (any, error) {
	if g.secret != "" && !authorized(ctx, g.secret) {
		g.reject(Unauthenticated, 1, "unary rpc refused", info.FullMethod)
		return nil, errUnauthenticated
	}
	g.reject(stats.UnknownType, 1, "unary rpc refused", info.FullMethod)
	return nil, status.Error(codes.Unimplemented, "not served")
}

func (g *Guard) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if g.secret != "" && !authorized(ss.Context(), g.secret) {
		g.reject(Unauthenticated, 1, "stream refused", info.FullMethod)
		return errUnauthenticated
	}
	gs := &guardedStream{ServerStream: ss, g: g}
	defer gs.release()
	return handler(srv, gs)
}

// guardedStream receives a RemoteMessage undecoded (the codec's rawMessage),
// decodes it with message_data aliasing gRPC's buffers or one pooled copy
// of them, filters it, and keeps those buffers until the endpoint reader
// asks for the next message: protoactor has delivered every envelope of a
// batch by then (grpccodec.go).
type guardedStream struct {
	grpc.ServerStream
	g      *Guard
	held   mem.BufferSlice
	copied *[]byte
}

func (s *guardedStream) release() {
	s.held.Free()
	s.held = nil
	if s.copied != nil {
		bufferPool.Put(s.copied)
		s.copied = nil
	}
}

func (s *guardedStream) RecvMsg(m any) error {
	rm, ok := m.(*remote.RemoteMessage)
	if !ok {
		return s.recv(m)
	}
	s.release()
	var raw rawMessage
	if err := s.recv(&raw); err != nil {
		return err
	}
	var b []byte
	if len(raw.data) == 1 {
		s.held, b = raw.data, raw.data[0].ReadOnlyData()
	} else {
		s.copied = bufferPool.Get(raw.data.Len())
		raw.data.CopyTo(*s.copied)
		raw.data.Free()
		b = *s.copied
	}
	if err := parseRemoteMessage(b, rm); err != nil {
		s.g.reject(stats.Malformed, 1, "undecodable message refused", err.Error())
		return status.Errorf(codes.Internal, "undecodable message: %v", err)
	}
	if mb := rm.GetMessageBatch(); mb != nil {
		s.g.filter(mb)
	}
	return nil
}

func (s *guardedStream) recv(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if status.Code(err) == codes.ResourceExhausted {
		s.g.reject(stats.Oversized, 1, "message above the gRPC limit refused", err.Error())
	}
	return err
}

// filter removes the envelopes of mb that protoactor must not see.
func (g *Guard) filter(mb *remote.MessageBatch) {
	for _, p := range mb.Targets {
		if p == nil {
			g.reject(stats.Malformed, len(mb.Envelopes), "batch with a nil target", "")
			mb.Envelopes = nil
			return
		}
	}
	for _, p := range mb.Senders {
		if p == nil {
			g.reject(stats.Malformed, len(mb.Envelopes), "batch with a nil sender", "")
			mb.Envelopes = nil
			return
		}
	}
	kept := mb.Envelopes[:0]
	for _, e := range mb.Envelopes {
		switch {
		case e == nil, e.TypeId < 0, int(e.TypeId) >= len(mb.TypeNames),
			e.Target < 0, int(e.Target) >= len(mb.Targets),
			e.Sender < 0, int(e.Sender) > len(mb.Senders),
			e.SerializerId != protoSerializer:
			g.reject(stats.Malformed, 1, "envelope with an index out of range", "")
			continue
		}
		name := mb.TypeNames[e.TypeId]
		check, ok := accepted[name]
		if !ok {
			g.reject(stats.UnknownType, 1, "message of an unknown type refused", "type="+name)
			continue
		}
		if name == envelopeType && len(e.MessageData) > MaxEnvelopeBytes+envelopeOverhead {
			g.reject(stats.Oversized, 1, "envelope above the size limit refused", "bytes="+strconv.Itoa(len(e.MessageData)))
			continue
		}
		if !check(e.MessageData) {
			g.reject(stats.Malformed, 1, "invalid message refused", "type="+name)
			continue
		}
		kept = append(kept, e)
	}
	clear(mb.Envelopes[len(kept):])
	mb.Envelopes = kept
}

// reject counts n messages dropped for r and logs at a limited rate; detail
// (built only on this error path) says what was refused.
func (g *Guard) reject(r stats.Reason, n int, msg, detail string) {
	g.stats.Drop(r, n)
	g.limit.Event(g.log, msg, r.String()+" "+detail, n, nil)
}
