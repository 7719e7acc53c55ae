package remote

import (
	"context"
	"google.golang.org/protobuf/encoding/protowire"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"switchyard/actors/remote/wire"
	"switchyard/stats"
)

func marshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// dropsOf returns the nonzero drops of st by reason.
func dropsOf(st *stats.Counters) map[stats.Reason]uint64 {
	out := map[stats.Reason]uint64{}
	for _, r := range stats.Reasons() {
		if n := st.Dropped(r); n != 0 {
			out[r] = n
		}
	}
	return out
}

// since returns the drops of st counted after base was taken.
func since(st *stats.Counters, base map[stats.Reason]uint64) map[stats.Reason]uint64 {
	out := dropsOf(st)
	for r, n := range base {
		out[r] -= n
	}
	return out
}

func sameDrops(t *testing.T, what string, got, want map[stats.Reason]uint64) {
	t.Helper()
	for _, r := range stats.Reasons() {
		if got[r] != want[r] {
			t.Errorf("%s: %s drops = %d, want %d (all: %v)", what, r, got[r], want[r], got)
		}
	}
}

func TestGuardFilter(t *testing.T) {
	pid := actor.NewPID("127.0.0.1:1", "x")
	// Type names, by index.
	const (
		tEnvelope = iota
		tWatch
		tUnwatch
		tTerminated
		tDeadLetter
		tUnknown
		tPID
	)
	names := []string{envelopeType, "actor.Watch", "actor.Unwatch", "actor.Terminated", "actor.DeadLetterResponse",
		"evil.DoesNotExist", "actor.PID"}
	env := marshal(t, &wire.Envelope{Kind: wire.Kind_BATCH, Seq: 1, Payload: []byte{0x91, 0xc4, 0x01, 0x45}})
	// The largest envelope a sender makes passes: MaxEnvelopeBytes of
	// payload with the largest sequence number.
	// A well-formed envelope of exactly the limit: field 3 (bytes), its
	// 1-byte tag and 3-byte length, and the rest.
	atLimit := protowire.AppendBytes(protowire.AppendTag(nil, 3, protowire.BytesType), make([]byte, MaxEnvelopeBytes+envelopeOverhead-4))
	if len(atLimit) != MaxEnvelopeBytes+envelopeOverhead {
		t.Fatalf("at-limit envelope is %d bytes", len(atLimit))
	}
	largest := marshal(t, &wire.Envelope{Kind: wire.Kind_STATS, Seq: ^uint64(0), Payload: make([]byte, MaxEnvelopeBytes)})
	ok := func(typeID int32, data []byte) *remote.MessageEnvelope {
		return &remote.MessageEnvelope{TypeId: typeID, MessageData: data, Target: 0, Sender: 0}
	}
	with := func(e *remote.MessageEnvelope, f func(e *remote.MessageEnvelope)) *remote.MessageEnvelope {
		f(e)
		return e
	}
	watch := marshal(t, &actor.Watch{Watcher: pid})
	cases := []struct {
		name      string
		envelopes []*remote.MessageEnvelope
		targets   []*actor.PID // default: one
		senders   []*actor.PID // default: one
		keep      []int        // indices of envelopes kept, in order
		drops     map[stats.Reason]uint64
	}{
		{name: "valid envelope kept", envelopes: []*remote.MessageEnvelope{ok(tEnvelope, env)}, keep: []int{0}},
		{name: "largest envelope kept", envelopes: []*remote.MessageEnvelope{ok(tEnvelope, largest)}, keep: []int{0}},
		{name: "envelope at the size limit kept", envelopes: []*remote.MessageEnvelope{ok(tEnvelope, atLimit)}, keep: []int{0}},
		{name: "envelope above the size limit", envelopes: []*remote.MessageEnvelope{ok(tEnvelope, make([]byte, MaxEnvelopeBytes+envelopeOverhead+1))},
			drops: map[stats.Reason]uint64{stats.Oversized: 1}},
		{name: "unknown type name", envelopes: []*remote.MessageEnvelope{ok(tUnknown, env)}, drops: map[stats.Reason]uint64{stats.UnknownType: 1}},
		{name: "known to protobuf, not accepted", envelopes: []*remote.MessageEnvelope{ok(tPID, marshal(t, pid))}, drops: map[stats.Reason]uint64{stats.UnknownType: 1}},
		{name: "type id out of range", envelopes: []*remote.MessageEnvelope{ok(int32(len(names)), env)}, drops: map[stats.Reason]uint64{stats.Malformed: 1}},
		{name: "type id negative", envelopes: []*remote.MessageEnvelope{ok(-1, env)}, drops: map[stats.Reason]uint64{stats.Malformed: 1}},
		{name: "target out of range", envelopes: []*remote.MessageEnvelope{with(ok(tEnvelope, env), func(e *remote.MessageEnvelope) { e.Target = 1 })},
			drops: map[stats.Reason]uint64{stats.Malformed: 1}},
		{name: "target negative", envelopes: []*remote.MessageEnvelope{with(ok(tEnvelope, env), func(e *remote.MessageEnvelope) { e.Target = -1 })},
			drops: map[stats.Reason]uint64{stats.Malformed: 1}},
		{name: "no targets", envelopes: []*remote.MessageEnvelope{ok(tEnvelope, env)}, targets: []*actor.PID{},
			drops: map[stats.Reason]uint64{stats.Malformed: 1}},
		// Senders are numbered from 1 (0: no sender).
		{name: "last sender kept", envelopes: []*remote.MessageEnvelope{with(ok(tEnvelope, env), func(e *remote.MessageEnvelope) { e.Sender = 1 })}, keep: []int{0}},
		{name: "sender out of range", envelopes: []*remote.MessageEnvelope{with(ok(tEnvelope, env), func(e *remote.MessageEnvelope) { e.Sender = 2 })},
			drops: map[stats.Reason]uint64{stats.Malformed: 1}},
		{name: "sender negative", envelopes: []*remote.MessageEnvelope{with(ok(tEnvelope, env), func(e *remote.MessageEnvelope) { e.Sender = -1 })},
			drops: map[stats.Reason]uint64{stats.Malformed: 1}},
		{name: "serializer 1 (JSON)", envelopes: []*remote.MessageEnvelope{with(ok(tEnvelope, env), func(e *remote.MessageEnvelope) { e.SerializerId = 1 })},
			drops: map[stats.Reason]uint64{stats.Malformed: 1}},
		{name: "nil envelope", envelopes: []*remote.MessageEnvelope{nil}, drops: map[stats.Reason]uint64{stats.Malformed: 1}},
		{name: "nil target drops the batch", envelopes: []*remote.MessageEnvelope{ok(tEnvelope, env), ok(tEnvelope, env)},
			targets: []*actor.PID{pid, nil}, drops: map[stats.Reason]uint64{stats.Malformed: 2}},
		{name: "nil sender drops the batch", envelopes: []*remote.MessageEnvelope{ok(tEnvelope, env), ok(tEnvelope, env), ok(tEnvelope, env)},
			senders: []*actor.PID{nil}, drops: map[stats.Reason]uint64{stats.Malformed: 3}},
		{name: "Terminated with a PID kept", envelopes: []*remote.MessageEnvelope{ok(tTerminated, marshal(t, &actor.Terminated{Who: pid}))}, keep: []int{0}},
		{name: "Terminated without Who", envelopes: []*remote.MessageEnvelope{ok(tTerminated, marshal(t, &actor.Terminated{}))},
			drops: map[stats.Reason]uint64{stats.Malformed: 1}},
		{name: "Watch kept", envelopes: []*remote.MessageEnvelope{ok(tWatch, watch)}, keep: []int{0}},
		{name: "Watch without Watcher", envelopes: []*remote.MessageEnvelope{ok(tWatch, nil)}, drops: map[stats.Reason]uint64{stats.Malformed: 1}},
		{name: "Unwatch without Watcher", envelopes: []*remote.MessageEnvelope{ok(tUnwatch, marshal(t, &actor.Unwatch{}))},
			drops: map[stats.Reason]uint64{stats.Malformed: 1}},
		{name: "Watch of garbage", envelopes: []*remote.MessageEnvelope{ok(tWatch, []byte{0xff, 0xff, 0xff})}, drops: map[stats.Reason]uint64{stats.Malformed: 1}},
		{name: "DeadLetterResponse kept", envelopes: []*remote.MessageEnvelope{ok(tDeadLetter, marshal(t, &actor.DeadLetterResponse{Target: pid}))}, keep: []int{0}},
		{name: "valid ones kept in order among refused ones",
			envelopes: []*remote.MessageEnvelope{
				ok(tUnknown, env), ok(tEnvelope, env), with(ok(tEnvelope, env), func(e *remote.MessageEnvelope) { e.Target = 9 }),
				ok(tWatch, watch), ok(tEnvelope, make([]byte, MaxEnvelopeBytes+envelopeOverhead+1)), ok(tTerminated, nil),
				with(ok(tEnvelope, env), func(e *remote.MessageEnvelope) { e.Sender = 1 }), ok(tUnknown, nil),
			},
			keep:  []int{1, 3, 6},
			drops: map[stats.Reason]uint64{stats.UnknownType: 2, stats.Malformed: 2, stats.Oversized: 1}},
		{name: "empty batch", envelopes: nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := &stats.Counters{}
			g := NewGuard(st, zap.NewNop())
			targets, senders := c.targets, c.senders
			if targets == nil {
				targets = []*actor.PID{pid}
			}
			if senders == nil {
				senders = []*actor.PID{pid}
			}
			orig := append([]*remote.MessageEnvelope(nil), c.envelopes...)
			mb := &remote.MessageBatch{TypeNames: names, Targets: targets, Senders: senders, Envelopes: c.envelopes}
			g.filter(mb)
			if len(mb.Envelopes) != len(c.keep) {
				t.Errorf("kept %d envelopes, want %d", len(mb.Envelopes), len(c.keep))
			}
			for i := range min(len(mb.Envelopes), len(c.keep)) {
				if mb.Envelopes[i] != orig[c.keep[i]] {
					t.Errorf("kept envelope %d is not envelope %d", i, c.keep[i])
				}
			}
			sameDrops(t, "guard", dropsOf(st), c.drops)
		})
	}
}

func TestGuardRefusesUnaryRPCs(t *testing.T) {
	st := &stats.Counters{}
	g := NewGuard(st, zap.NewNop())
	called := false
	_, err := g.unary(context.Background(), &remote.ListProcessesRequest{}, &grpc.UnaryServerInfo{FullMethod: "/remote.Remoting/ListProcesses"},
		func(context.Context, any) (any, error) { called = true; return nil, nil })
	if got, want := status.Code(err), codes.Unimplemented; got != want {
		t.Errorf("code = %v, want %v", got, want)
	}
	if called {
		t.Error("the handler ran (protoactor's panics)")
	}
	sameDrops(t, "guard", dropsOf(st), map[stats.Reason]uint64{stats.UnknownType: 1})
}

// hostileClient is a gRPC client of protoactor's Remoting service that
// speaks the protocol by hand.
type hostileClient struct {
	conn   *grpc.ClientConn
	client remote.RemotingClient
}

func dialHostile(t *testing.T, address string, opts ...grpc.DialOption) *hostileClient {
	t.Helper()
	return dialWithSecret(t, address, testSecret, opts...)
}

// dialWithSecret dials presenting secret on every stream and call ("":
// none).
func dialWithSecret(t *testing.T, address, secret string, opts ...grpc.DialOption) *hostileClient {
	t.Helper()
	opts = append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)
	if secret != "" {
		opts = append(opts, grpc.WithChainStreamInterceptor(withSecret(secret)),
			grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, o ...grpc.CallOption) error {
				return invoker(metadata.AppendToOutgoingContext(ctx, SecretMetadataKey, secret), method, req, reply, cc, o...)
			}))
	}
	conn, err := grpc.Dial(address, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &hostileClient{conn: conn, client: remote.NewRemotingClient(conn)}
}

// connect opens a stream and does protoactor's handshake.
func (h *hostileClient) connect(t *testing.T, ctx context.Context) remote.Remoting_ReceiveClient {
	t.Helper()
	stream, err := h.client.Receive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = stream.Send(&remote.RemoteMessage{MessageType: &remote.RemoteMessage_ConnectRequest{ConnectRequest: &remote.ConnectRequest{
		ConnectionType: &remote.ConnectRequest_ServerConnection{ServerConnection: &remote.ServerConnection{SystemId: "hostile", Address: "127.0.0.1:9"}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetConnectResponse() == nil {
		t.Fatalf("handshake answered %v", resp)
	}
	return stream
}

func batchMessage(mb *remote.MessageBatch) *remote.RemoteMessage {
	return &remote.RemoteMessage{MessageType: &remote.RemoteMessage_MessageBatch{MessageBatch: mb}}
}

// TestGuardEndToEnd: a hand-made client sends a real transport an unknown
// type name next to a valid envelope, calls the unary RPCs protoactor
// panics on, and sends a gRPC message above the limit. Each is refused and
// counted, the valid envelope arrives, and the process keeps serving: a
// real peer's message arrives afterwards.
func TestGuardEndToEnd(t *testing.T) {
	verifyNoLeaks(t)
	a, b := sideA, sideB
	base := dropsOf(b.guard)
	aBase := dropsOf(a.guard)
	pr, target := addProbe(t, b.system, "probe")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	h := dialHostile(t, b.tr.Address)
	stream := h.connect(t, ctx)
	valid := &wire.Envelope{Kind: wire.Kind_OPENED, Seq: 42, Payload: []byte("hello")}
	err := stream.Send(batchMessage(&remote.MessageBatch{
		TypeNames: []string{"evil.DoesNotExist", envelopeType},
		Targets:   []*actor.PID{target},
		Envelopes: []*remote.MessageEnvelope{
			{TypeId: 0, MessageData: []byte{1, 2, 3}},
			{TypeId: 1, MessageData: marshal(t, valid)},
		},
	}))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-pr.got:
		got, _ := unwrap(m)
		if got == nil || !proto.Equal(got, valid) {
			t.Errorf("probe got %v, want %v", m, valid)
		}
	case <-ctx.Done():
		t.Fatal("the valid envelope did not arrive")
	}
	sameDrops(t, "after an unknown type", since(b.guard, base), map[stats.Reason]uint64{stats.UnknownType: 1})

	// The unary RPCs protoactor implements with panic("implement me").
	if _, err := h.client.ListProcesses(ctx, &remote.ListProcessesRequest{}); status.Code(err) != codes.Unimplemented {
		t.Errorf("ListProcesses: %v, want Unimplemented", err)
	}
	if _, err := h.client.GetProcessDiagnostics(ctx, &remote.GetProcessDiagnosticsRequest{}); status.Code(err) != codes.Unimplemented {
		t.Errorf("GetProcessDiagnostics: %v, want Unimplemented", err)
	}
	sameDrops(t, "after the unary RPCs", since(b.guard, base), map[stats.Reason]uint64{stats.UnknownType: 3})
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}

	// A gRPC message above MaxGRPCMessageBytes ends that stream, counted.
	big := dialHostile(t, b.tr.Address, grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(2*MaxGRPCMessageBytes)))
	bs := big.connect(t, ctx)
	err = bs.Send(batchMessage(&remote.MessageBatch{
		TypeNames: []string{envelopeType},
		Targets:   []*actor.PID{target},
		Envelopes: []*remote.MessageEnvelope{{MessageData: make([]byte, MaxGRPCMessageBytes+1)}},
	}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bs.Recv(); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("oversized message: stream ended with %v, want ResourceExhausted", err)
	}
	waitFor(t, "the oversized message counted", func() bool { return since(b.guard, base)[stats.Oversized] == 1 })

	// A real peer still gets through.
	a.system.Root.Send(target, &wire.Envelope{Kind: wire.Kind_STATS, Seq: 7})
	select {
	case m := <-pr.got:
		if got, _ := unwrap(m); got == nil || got.Seq != 7 {
			t.Errorf("probe got %v, want the peer's envelope", m)
		}
	case <-ctx.Done():
		t.Fatal("a real peer's message did not arrive after the hostile ones")
	}
	sameDrops(t, "at the end", since(b.guard, base), map[stats.Reason]uint64{stats.UnknownType: 3, stats.Oversized: 1})
	sameDrops(t, "the sending side", since(a.guard, aBase), nil)
}

// TestGuardCountsGarbageEnvelopes: an envelope of the accepted type whose
// bytes are not protobuf is refused and counted like any other malformed
// message, and the connection keeps serving (protoactor's endpoint reader
// would otherwise fail to deserialize it and end the peer's stream, with
// nothing counted).
func TestGuardCountsGarbageEnvelopes(t *testing.T) {
	verifyNoLeaks(t)
	b := sideB
	base := dropsOf(b.guard)
	pr, target := addProbe(t, b.system, "probe-garbage")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h := dialHostile(t, b.tr.Address)
	stream := h.connect(t, ctx)
	valid := marshal(t, &wire.Envelope{Kind: wire.Kind_STATS, Seq: 1})
	for i, data := range [][]byte{
		{0xff, 0xff, 0xff},                   // a tag with no end
		{0x1a, 0x10, 0x01},                   // payload: 16 bytes announced, 1 there
		{0x08},                               // kind: no value
		append(valid, 0x0a, 0x05, 'x'),       // valid, then a truncated unknown field
		{0x80, 0x80, 0x80, 0x80, 0x10, 0x00}, // field number 2^29: above protobuf's largest
	} {
		err := stream.Send(batchMessage(&remote.MessageBatch{
			TypeNames: []string{envelopeType},
			Targets:   []*actor.PID{target},
			Envelopes: []*remote.MessageEnvelope{{MessageData: data}, {MessageData: valid}},
		}))
		if err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
		select {
		case <-pr.got:
		case <-time.After(3 * time.Second):
			t.Fatalf("batch %d: the valid envelope after a garbage one did not arrive (the stream ended)", i)
		}
	}
	sameDrops(t, "guard", since(b.guard, base), map[stats.Reason]uint64{stats.Malformed: 5})
	stream.CloseSend()
}
