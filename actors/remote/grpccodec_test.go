package remote

import (
	"bytes"
	"fmt"
	"math"
	"math/bits"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Tests of grpccodec.go: marshalBatch and parseRemoteMessage against
// proto.Marshal and proto.Unmarshal, the tiered buffer pool, the codec's
// Unmarshal, and the allocations of a marshal. Helpers are prefixed gc to
// stay clear of the package's other test files.

// gcBatchMessage wraps mb as protoactor sends it.
func gcBatchMessage(mb *remote.MessageBatch) *remote.RemoteMessage {
	return &remote.RemoteMessage{MessageType: &remote.RemoteMessage_MessageBatch{MessageBatch: mb}}
}

// gcData returns n bytes of a pattern that depends on seed.
func gcData(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) + seed
	}
	return b
}

func gcSameSlice(a, b []byte) bool {
	return len(a) == len(b) && unsafe.SliceData(a) == unsafe.SliceData(b)
}

// gcRaceEnabled: sync.Pool drops items at random under the race detector,
// which makes allocation counts meaningless.
func gcRaceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// gcStripUnknown removes the unknown fields of m and of every message it
// holds.
func gcStripUnknown(m protoreflect.Message) {
	m.SetUnknown(nil)
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList():
			if fd.Message() != nil {
				l := v.List()
				for i := 0; i < l.Len(); i++ {
					gcStripUnknown(l.Get(i).Message())
				}
			}
		case fd.IsMap():
			if fd.MapValue().Message() != nil {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					gcStripUnknown(mv.Message())
					return true
				})
			}
		case fd.Message() != nil:
			gcStripUnknown(v.Message())
		}
		return true
	})
}

// Raw protobuf building blocks.

func gcCat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func gcVarint(num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
}

func gcBytes(num protowire.Number, v []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), v)
}

func gcFixed32(num protowire.Number, v uint32) []byte {
	return protowire.AppendFixed32(protowire.AppendTag(nil, num, protowire.Fixed32Type), v)
}

func gcFixed64(num protowire.Number, v uint64) []byte {
	return protowire.AppendFixed64(protowire.AppendTag(nil, num, protowire.Fixed64Type), v)
}

func gcGroup(num protowire.Number, inner ...[]byte) []byte {
	return gcCat(protowire.AppendTag(nil, num, protowire.StartGroupType), gcCat(inner...),
		protowire.AppendTag(nil, num, protowire.EndGroupType))
}

func gcTag(num protowire.Number, typ protowire.Type) []byte {
	return protowire.AppendTag(nil, num, typ)
}

// gcRemote is RemoteMessage{message_batch: body}, body raw.
func gcRemote(body ...[]byte) []byte { return gcBytes(fRemoteBatch, gcCat(body...)) }

func gcPIDBytes(t testing.TB, p *actor.PID) []byte {
	t.Helper()
	b, err := proto.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// gcMarshalCase is a batch to encode; maps is set when a header has several
// entries, whose order proto.Marshal does not fix.
type gcMarshalCase struct {
	name string
	mb   *remote.MessageBatch
	maps bool
}

func gcPIDs() []*actor.PID {
	return []*actor.PID{
		{Address: "10.0.0.1:8090", Id: "switchyard/link/peer-a", RequestId: 7},
		{},
		{Address: "nonhost", Id: "$12", RequestId: math.MaxUint32},
		{Id: "ünïcødé/Тип"},
	}
}

// gcSmallCases are the batches of a few KiB at most (fuzz seeds, truncations).
func gcSmallCases() []gcMarshalCase {
	return []gcMarshalCase{
		{name: "empty batch", mb: &remote.MessageBatch{}},
		{name: "one zero envelope", mb: &remote.MessageBatch{Envelopes: []*remote.MessageEnvelope{{}}}},
		{name: "one envelope without data", mb: &remote.MessageBatch{
			TypeNames: []string{"switchyard.Envelope"},
			Envelopes: []*remote.MessageEnvelope{{TypeId: 0, Target: 0, Sender: 1, SerializerId: 0, TargetRequestId: 3}},
		}},
		{name: "one envelope with 10 B", mb: &remote.MessageBatch{
			TypeNames: []string{"switchyard.Envelope"},
			Targets:   gcPIDs()[:1],
			Envelopes: []*remote.MessageEnvelope{{MessageData: gcData(10, 1), Sender: 0}},
		}},
		{name: "empty but non-nil data", mb: &remote.MessageBatch{
			Envelopes: []*remote.MessageEnvelope{{MessageData: []byte{}, TypeId: 2}},
		}},
		{name: "data at the pooling threshold", mb: &remote.MessageBatch{
			Envelopes: []*remote.MessageEnvelope{{MessageData: gcData(1024, 2), TypeId: 1}},
		}},
		{name: "data above the pooling threshold", mb: &remote.MessageBatch{
			Envelopes: []*remote.MessageEnvelope{{MessageData: gcData(1025, 3)}, {MessageData: gcData(1, 4)}},
		}},
		{name: "short data with a large cap", mb: &remote.MessageBatch{
			Envelopes: []*remote.MessageEnvelope{{MessageData: gcData(4096, 5)[:16], Target: 1}},
		}},
		{name: "negative int32 ids", mb: &remote.MessageBatch{
			Envelopes: []*remote.MessageEnvelope{
				{TypeId: -1, Target: math.MinInt32, Sender: -2, SerializerId: -123456, MessageData: gcData(3, 6)},
				{TypeId: math.MaxInt32, Target: math.MaxInt32, Sender: math.MinInt32, SerializerId: -1},
			},
		}},
		{name: "max request ids", mb: &remote.MessageBatch{
			Envelopes: []*remote.MessageEnvelope{
				{TargetRequestId: math.MaxUint32, SenderRequestId: math.MaxUint32},
				{TargetRequestId: 1 << 31, SenderRequestId: 1<<31 - 1, MessageData: gcData(200, 7)},
				{TargetRequestId: 127, SenderRequestId: 128},
			},
		}},
		{name: "headers nil, empty, empty map, one entry", mb: &remote.MessageBatch{
			Envelopes: []*remote.MessageEnvelope{
				{MessageData: gcData(5, 8)},
				{MessageHeader: &remote.MessageHeader{}},
				{MessageHeader: &remote.MessageHeader{HeaderData: map[string]string{}}, MessageData: gcData(2000, 9)},
				{MessageHeader: &remote.MessageHeader{HeaderData: map[string]string{"trace": "abc"}}},
				{MessageHeader: &remote.MessageHeader{HeaderData: map[string]string{"": ""}}, TypeId: 1},
			},
		}},
		{name: "header with several entries", maps: true, mb: &remote.MessageBatch{
			Envelopes: []*remote.MessageEnvelope{
				{MessageHeader: &remote.MessageHeader{HeaderData: map[string]string{
					"a": "1", "b": "", "": "empty key", "ключ": "значение", strings.Repeat("k", 200): strings.Repeat("v", 300),
				}}, MessageData: gcData(1500, 10), SenderRequestId: 9},
				{MessageHeader: &remote.MessageHeader{HeaderData: map[string]string{"x": "y", "z": "w"}}},
			},
		}},
		{name: "type names incl. non-ASCII", mb: &remote.MessageBatch{
			TypeNames: []string{"actor.Watch", "", "ünïcødé.Тип", "日本語.メッセージ", "emoji 🚀", strings.Repeat("n", 300)},
			Envelopes: []*remote.MessageEnvelope{{TypeId: 5}, {TypeId: 3}},
		}},
		{name: "targets and senders", mb: &remote.MessageBatch{
			TypeNames: []string{"actor.Terminated"},
			Targets:   gcPIDs(),
			Senders:   gcPIDs()[1:],
			Envelopes: []*remote.MessageEnvelope{{Target: 3, Sender: 2, MessageData: gcData(1100, 11)}, {Target: 2, Sender: 0}},
		}},
		{name: "names and PIDs without envelopes", mb: &remote.MessageBatch{
			TypeNames: []string{"a", "b"},
			Targets:   gcPIDs()[:2],
			Senders:   gcPIDs()[2:],
		}},
		{name: "everything", maps: true, mb: &remote.MessageBatch{
			TypeNames: []string{"switchyard.Envelope", "actor.Watch"},
			Targets:   gcPIDs(),
			Senders:   gcPIDs(),
			Envelopes: []*remote.MessageEnvelope{
				{TypeId: 1, MessageData: gcData(40, 12), Target: 1, Sender: 2, SerializerId: 0,
					MessageHeader:   &remote.MessageHeader{HeaderData: map[string]string{"h1": "v1", "h2": "v2"}},
					TargetRequestId: 5, SenderRequestId: math.MaxUint32},
				{TypeId: -7, Target: -1, Sender: 3, SerializerId: 1, MessageData: gcData(127, 13)},
				{MessageData: gcData(128, 14)},
			},
		}},
	}
}

// gcMarshalCases adds the large batches to gcSmallCases.
func gcMarshalCases() []gcMarshalCase {
	mixed := []int{0, 1, 100, 127, 128, 1023, 1024, 1025, 4096, 16383, 16384, 65535, 65536, 100000, 512<<10 - 1, 512 << 10}
	var envs []*remote.MessageEnvelope
	for i, n := range mixed {
		e := &remote.MessageEnvelope{TypeId: int32(i % 2), Target: int32(i % 3), Sender: int32(i%3) - 1, SerializerId: int32(i % 2), TargetRequestId: uint32(i) << 28}
		if n > 0 {
			e.MessageData = gcData(n, byte(i))
		}
		envs = append(envs, e)
	}
	var full []*remote.MessageEnvelope
	for i := 0; i < EndpointWriterBatch; i++ {
		full = append(full, &remote.MessageEnvelope{MessageData: gcData(MaxEnvelopeBytes, byte(i)), Target: int32(i % 4)})
	}
	var many []*remote.MessageEnvelope
	for i := 0; i < 3*EndpointWriterBatch; i++ {
		many = append(many, &remote.MessageEnvelope{MessageData: gcData(i*97, byte(i)), TypeId: int32(i % 2), SenderRequestId: uint32(i)})
	}
	return append(gcSmallCases(),
		gcMarshalCase{name: "16 envelopes of mixed sizes", mb: &remote.MessageBatch{
			TypeNames: []string{"switchyard.Envelope", "actor.Watch"},
			Targets:   gcPIDs()[:3],
			Senders:   gcPIDs()[:2],
			Envelopes: envs,
		}},
		gcMarshalCase{name: "16 full envelopes", mb: &remote.MessageBatch{
			TypeNames: []string{"switchyard.Envelope"},
			Targets:   gcPIDs(),
			Envelopes: full,
		}},
		gcMarshalCase{name: "more envelopes than an endpoint-writer batch", mb: &remote.MessageBatch{
			TypeNames: []string{"switchyard.Envelope", "actor.Watch"},
			Targets:   gcPIDs()[:1],
			Envelopes: many,
		}},
	)
}

// gcTierCap is the capacity tieredPool gives a buffer of n bytes.
func gcTierCap(n int) int {
	if n <= 1<<minPoolShift {
		return 1 << minPoolShift
	}
	if n > 1<<maxPoolShift {
		return n
	}
	return 1 << bits.Len(uint(n-1))
}

// TestMarshalBatchMatchesProto: marshalBatch writes proto.Marshal's bytes,
// with each message_data aliased, the framing in one pooled buffer, and
// sentEpoch advanced when gRPC frees a pooled (above-threshold) data
// buffer.
func TestMarshalBatchMatchesProto(t *testing.T) {
	for _, c := range gcMarshalCases() {
		t.Run(c.name, func(t *testing.T) {
			ref, err := proto.MarshalOptions{Deterministic: true}.Marshal(gcBatchMessage(c.mb))
			if err != nil {
				t.Fatal(err)
			}
			released := 0 // aliased buffers gRPC returns to the releaser
			for _, e := range c.mb.Envelopes {
				if len(e.MessageData) > 0 && !mem.IsBelowBufferPoolingThreshold(cap(e.MessageData)) {
					released++
				}
			}
			// sentEpoch is global: retry if something else in the process
			// moved it while we looked (a bug fails every attempt).
			var epochErr string
			for attempt := 0; attempt < 3; attempt++ {
				before := sentEpoch.Load()
				out, err := marshalBatch(c.mb)
				if err != nil {
					t.Fatal(err)
				}
				if attempt == 0 {
					gcCheckMarshalled(t, c, out, ref)
				}
				afterMarshal := sentEpoch.Load()
				out.Free()
				got, want := sentEpoch.Load()-before, uint64(released)
				if afterMarshal == before && got == want {
					epochErr = ""
					break
				}
				epochErr = fmt.Sprintf("sentEpoch advanced by %d before Free and %d in all, want 0 and %d", afterMarshal-before, got, want)
			}
			if epochErr != "" {
				t.Error(epochErr)
			}
		})
	}
}

func gcCheckMarshalled(t *testing.T, c gcMarshalCase, out mem.BufferSlice, ref []byte) {
	t.Helper()
	got := out.Materialize()
	if !c.maps {
		if !bytes.Equal(got, ref) {
			t.Fatalf("marshalBatch differs from proto.Marshal:\n got %d B %x\nwant %d B %x", len(got), gcHead(got), len(ref), gcHead(ref))
		}
		// proto.Marshal without Deterministic too: no maps, the same bytes.
		if plain, _ := proto.Marshal(gcBatchMessage(c.mb)); !bytes.Equal(got, plain) {
			t.Fatal("marshalBatch differs from non-deterministic proto.Marshal")
		}
	} else if len(got) != len(ref) {
		t.Fatalf("marshalBatch wrote %d bytes, proto.Marshal %d", len(got), len(ref))
	}
	var g, w remote.RemoteMessage
	if err := proto.Unmarshal(got, &g); err != nil {
		t.Fatalf("proto.Unmarshal of marshalBatch's bytes: %v", err)
	}
	if err := proto.Unmarshal(ref, &w); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(&g, &w) || !proto.Equal(&g, gcBatchMessage(c.mb)) {
		t.Fatal("marshalBatch's bytes decode to another message")
	}

	// Each message_data is one buffer of out, aliasing it; everything else
	// is the framing, consecutive pieces of one buffer of a pool tier.
	var framing [][]byte
	aliased := map[int]bool{}
	for _, buf := range out {
		d := buf.ReadOnlyData()
		found := false
		for i, e := range c.mb.Envelopes {
			if len(e.MessageData) > 0 && !aliased[i] && gcSameSlice(d, e.MessageData) {
				aliased[i], found = true, true
				break
			}
		}
		if !found {
			framing = append(framing, d)
		}
	}
	for i, e := range c.mb.Envelopes {
		if len(e.MessageData) > 0 && !aliased[i] {
			t.Errorf("envelope %d: its %d bytes of message_data are not aliased by any buffer", i, len(e.MessageData))
		}
	}
	size := 0
	for i, f := range framing {
		if len(f) == 0 {
			t.Errorf("framing piece %d is empty", i)
		}
		if i > 0 && unsafe.Pointer(unsafe.SliceData(f)) != unsafe.Add(unsafe.Pointer(unsafe.SliceData(framing[i-1])), len(framing[i-1])) {
			t.Errorf("framing piece %d does not follow piece %d in one buffer", i, i-1)
		}
		size += len(f)
	}
	if len(framing) == 0 {
		t.Fatal("no framing")
	}
	if want := gcTierCap(max(size, minFramingBytes)); cap(framing[0]) != want {
		t.Errorf("framing of %d bytes in a buffer of cap %d, want the pool tier's %d", size, cap(framing[0]), want)
	}
}

func gcHead(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// TestMarshalBatchLimit: a message of exactly MaxGRPCMessageBytes is
// encoded, one byte more is refused before anything is aliased.
func TestMarshalBatchLimit(t *testing.T) {
	data := make([]byte, MaxGRPCMessageBytes)
	mb := func(n int) *remote.MessageBatch {
		return &remote.MessageBatch{Envelopes: []*remote.MessageEnvelope{{MessageData: data[:n]}}}
	}
	n := MaxGRPCMessageBytes - 16
	for i := 0; i < 4; i++ {
		n += MaxGRPCMessageBytes - proto.Size(gcBatchMessage(mb(n)))
	}
	if proto.Size(gcBatchMessage(mb(n))) != MaxGRPCMessageBytes {
		t.Fatal("found no data length for a message of exactly the limit")
	}
	out, err := marshalBatch(mb(n))
	if err != nil {
		t.Fatalf("message of exactly %d bytes: %v", MaxGRPCMessageBytes, err)
	}
	if out.Len() != MaxGRPCMessageBytes {
		t.Errorf("message of %d bytes, want %d", out.Len(), MaxGRPCMessageBytes)
	}
	out.Free()
	before := sentEpoch.Load()
	if out, err := marshalBatch(mb(n + 1)); err == nil {
		out.Free()
		t.Errorf("message of %d bytes accepted", MaxGRPCMessageBytes+1)
	}
	if got := sentEpoch.Load() - before; got != 0 {
		t.Errorf("refused message advanced sentEpoch by %d", got)
	}
}

// TestMarshalBatchErrors: what proto.Marshal refuses, marshalBatch refuses,
// without panicking (and frees what it built).
func TestMarshalBatchErrors(t *testing.T) {
	bad := "bad \xff utf-8"
	for _, c := range []struct {
		name string
		mb   *remote.MessageBatch
	}{
		{name: "target address not UTF-8", mb: &remote.MessageBatch{
			Targets:   []*actor.PID{{Address: bad}},
			Envelopes: []*remote.MessageEnvelope{{MessageData: gcData(2000, 1)}},
		}},
		{name: "sender id not UTF-8", mb: &remote.MessageBatch{
			Senders:   []*actor.PID{{Id: bad}},
			Envelopes: []*remote.MessageEnvelope{{MessageData: gcData(2000, 1)}, {MessageData: gcData(3, 2)}},
		}},
		{name: "header key not UTF-8, after aliased data", mb: &remote.MessageBatch{
			Envelopes: []*remote.MessageEnvelope{
				{MessageData: gcData(2000, 1)},
				{MessageData: gcData(30, 2), MessageHeader: &remote.MessageHeader{HeaderData: map[string]string{bad: "v"}}},
				{MessageData: gcData(3000, 3)},
			},
		}},
		{name: "header value not UTF-8", mb: &remote.MessageBatch{
			Envelopes: []*remote.MessageEnvelope{{MessageHeader: &remote.MessageHeader{HeaderData: map[string]string{"k": bad}}}},
		}},
		{name: "type name not UTF-8", mb: &remote.MessageBatch{TypeNames: []string{bad}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := proto.Marshal(gcBatchMessage(c.mb)); err == nil {
				t.Fatal("proto.Marshal accepts it: not an error case")
			}
			out, err := marshalBatch(c.mb)
			if err == nil {
				out.Free()
				t.Fatal("marshalBatch accepts what proto.Marshal refuses")
			}
			if out != nil {
				t.Errorf("marshalBatch returned %d buffers with its error", len(out))
			}
		})
	}
	t.Run("nil envelope", func(t *testing.T) {
		// proto.Marshal encodes a nil element of a repeated message field as
		// an empty message; protoactor never builds one, and marshalBatch
		// refuses it rather than dereference it.
		out, err := marshalBatch(&remote.MessageBatch{Envelopes: []*remote.MessageEnvelope{{MessageData: gcData(2000, 1)}, nil}})
		if err == nil {
			out.Free()
			t.Fatal("marshalBatch accepts a nil envelope")
		}
	})
}

// gcParse runs parseRemoteMessage, turning a panic into an error for the
// test to report.
func gcParse(t testing.TB, b []byte, m *remote.RemoteMessage) (err error, panicked bool) {
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("parseRemoteMessage panicked on %x: %v", gcHead(b), r)
			panicked = true
		}
	}()
	return parseRemoteMessage(b, m), false
}

// gcCompareParse checks parseRemoteMessage(b) against proto.Unmarshal(b):
// both fail, or both succeed with equal messages once unknown fields are
// stripped from both (see FuzzParseRemoteMessage). It returns parse's
// message and whether proto accepted b.
func gcCompareParse(t testing.TB, b []byte) (*remote.RemoteMessage, bool) {
	t.Helper()
	var want remote.RemoteMessage
	wantErr := proto.Unmarshal(b, &want)
	got := &remote.RemoteMessage{}
	gotErr, panicked := gcParse(t, b, got)
	switch {
	case panicked:
		return nil, wantErr == nil
	case wantErr != nil && gotErr == nil:
		t.Errorf("input %x (%d B): proto.Unmarshal fails (%v), parseRemoteMessage accepts it", gcHead(b), len(b), wantErr)
		return nil, false
	case wantErr == nil && gotErr != nil:
		t.Errorf("input %x (%d B): proto.Unmarshal accepts it, parseRemoteMessage fails: %v", gcHead(b), len(b), gotErr)
		return nil, true
	case wantErr != nil:
		return nil, false
	}
	stripped := proto.Clone(got).(*remote.RemoteMessage)
	gcStripUnknown(stripped.ProtoReflect())
	gcStripUnknown(want.ProtoReflect())
	if !proto.Equal(stripped, &want) {
		t.Errorf("input %x (%d B): parseRemoteMessage gives\n%v\nproto.Unmarshal gives\n%v", gcHead(b), len(b), stripped, &want)
	}
	return got, true
}

// TestParseRemoteMessageMatchesProto: the encodings of the marshal table
// parse to proto.Unmarshal's messages, message_data aliasing the input.
func TestParseRemoteMessageMatchesProto(t *testing.T) {
	for _, c := range gcMarshalCases() {
		t.Run(c.name, func(t *testing.T) {
			b, err := proto.Marshal(gcBatchMessage(c.mb))
			if err != nil {
				t.Fatal(err)
			}
			got, _ := gcCompareParse(t, b)
			if got == nil {
				return
			}
			// proto.Equal with unknown fields: none here, so exact.
			var want remote.RemoteMessage
			if err := proto.Unmarshal(b, &want); err != nil || !proto.Equal(got, &want) {
				t.Fatalf("parse differs from proto.Unmarshal (%v)", err)
			}
			mb := got.GetMessageBatch()
			if mb == nil {
				t.Fatal("no message batch")
			}
			base := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
			for i, e := range mb.Envelopes {
				d := e.MessageData
				if len(d) == 0 {
					continue
				}
				off := int(uintptr(unsafe.Pointer(unsafe.SliceData(d))) - base)
				if off < 0 || off+len(d) > len(b) {
					t.Fatalf("envelope %d: message_data does not alias the input", i)
				}
				if cap(d) != len(d) {
					t.Errorf("envelope %d: message_data has cap %d > len %d: an append would overwrite the input's next bytes", i, cap(d), len(d))
				}
				for _, at := range []int{0, len(d) - 1} {
					b[off+at] ^= 0x5a
					if !bytes.Equal(d, b[off:off+len(d)]) {
						t.Fatalf("envelope %d: mutating the input is not seen in message_data", i)
					}
					b[off+at] ^= 0x5a
				}
			}
		})
	}
}

// TestParseRemoteMessageReusesMessage: the target is reset first.
func TestParseRemoteMessageReusesMessage(t *testing.T) {
	batch, _ := proto.Marshal(gcBatchMessage(gcSmallCases()[len(gcSmallCases())-1].mb))
	connect, _ := proto.Marshal(&remote.RemoteMessage{MessageType: &remote.RemoteMessage_ConnectRequest{
		ConnectRequest: &remote.ConnectRequest{ConnectionType: &remote.ConnectRequest_ClientConnection{
			ClientConnection: &remote.ClientConnection{SystemId: "sys"}}}}})
	m := &remote.RemoteMessage{}
	for i, b := range [][]byte{connect, batch, batch, connect, nil, batch} {
		if err := parseRemoteMessage(b, m); err != nil {
			t.Fatal(err)
		}
		var want remote.RemoteMessage
		if err := proto.Unmarshal(b, &want); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(m, &want) {
			t.Fatalf("message %d parsed into a used message: %v, want %v", i, m, &want)
		}
	}
}

// TestParseRemoteMessageNonBatch: anything but one message_batch field is
// proto.Unmarshal's.
func TestParseRemoteMessageNonBatch(t *testing.T) {
	mustMarshal := func(m proto.Message) []byte {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	batchA := mustMarshal(gcBatchMessage(gcSmallCases()[3].mb))
	batchB := mustMarshal(gcBatchMessage(gcSmallCases()[len(gcSmallCases())-1].mb))
	connect := mustMarshal(&remote.RemoteMessage{MessageType: &remote.RemoteMessage_ConnectRequest{
		ConnectRequest: &remote.ConnectRequest{ConnectionType: &remote.ConnectRequest_ServerConnection{
			ServerConnection: &remote.ServerConnection{SystemId: "sys", Address: "10.0.0.2:1"}}}}})
	for _, c := range []struct {
		name     string
		b        []byte
		wantKind string // the oneof parse must give, "" for none, "error"
	}{
		{"empty", nil, ""},
		{"client connect request", mustMarshal(&remote.RemoteMessage{MessageType: &remote.RemoteMessage_ConnectRequest{
			ConnectRequest: &remote.ConnectRequest{ConnectionType: &remote.ConnectRequest_ClientConnection{
				ClientConnection: &remote.ClientConnection{SystemId: "sys"}}}}}), "connect_request"},
		{"server connect request", connect, "connect_request"},
		{"connect response", mustMarshal(&remote.RemoteMessage{MessageType: &remote.RemoteMessage_ConnectResponse{
			ConnectResponse: &remote.ConnectResponse{MemberId: "m", Blocked: true}}}), "connect_response"},
		{"disconnect request", mustMarshal(&remote.RemoteMessage{MessageType: &remote.RemoteMessage_DisconnectRequest{
			DisconnectRequest: &remote.DisconnectRequest{}}}), "disconnect_request"},
		{"two message_batch fields (merged)", gcCat(batchA, batchB), "message_batch"},
		{"batch then connect request", gcCat(batchA, connect), "connect_request"},
		{"connect request then batch", gcCat(connect, batchA), "message_batch"},
		{"batch then unknown field", gcCat(batchA, gcVarint(9, 1)), "message_batch"},
		{"unknown field then batch", gcCat(gcFixed64(9, 1), batchA), "message_batch"},
		{"message_batch as varint", gcVarint(fRemoteBatch, 5), ""},
		{"message_batch as group", gcGroup(fRemoteBatch, gcVarint(1, 1)), ""},
		{"batch field longer than the input", gcCat(gcTag(fRemoteBatch, protowire.BytesType), protowire.AppendVarint(nil, 100), []byte{1, 2}), "error"},
		{"garbage", []byte{0xff, 0xff, 0xff}, "error"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, ok := gcCompareParse(t, c.b)
			if c.wantKind == "error" {
				if ok {
					t.Error("proto.Unmarshal accepts it: not an error case")
				}
				return
			}
			if got == nil {
				return
			}
			// The case is what it says it is, so the comparison above is
			// not vacuous.
			kind := ""
			if o := got.ProtoReflect().WhichOneof(got.ProtoReflect().Descriptor().Oneofs().ByName("message_type")); o != nil {
				kind = string(o.Name())
			}
			if kind != c.wantKind {
				t.Errorf("parsed a %q, want a %q", kind, c.wantKind)
			}
			// Exact equality too: parse left it to proto.Unmarshal, unknown
			// fields and all, or (plain batch) there are none.
			var want remote.RemoteMessage
			_ = proto.Unmarshal(c.b, &want)
			if !proto.Equal(got, &want) {
				t.Errorf("parse gives %v, want %v", got, &want)
			}
		})
	}
}

// TestParseRemoteMessageSkips: unknown fields of every wire type and known
// fields with the wrong wire type, in the batch and in an envelope, are
// skipped; scalars are last-one-wins, headers merge.
func TestParseRemoteMessageSkips(t *testing.T) {
	pid := gcPIDBytes(t, &actor.PID{Address: "a:1", Id: "x", RequestId: 3})
	pidUnknown := gcCat(pid, gcVarint(15, 1), gcBytes(16, []byte("zz")))
	hdr := func(k, v string) []byte {
		return gcBytes(1, gcCat(gcBytes(1, []byte(k)), gcBytes(2, []byte(v))))
	}
	unknowns := func(base protowire.Number) []byte {
		return gcCat(gcVarint(base, 300), gcFixed32(base+1, 7), gcFixed64(base+2, 8), gcBytes(base+3, []byte("skip me")),
			gcGroup(base+4, gcVarint(1, 1), gcGroup(2, gcBytes(3, []byte("nested"))), gcFixed32(4, 4)),
			gcBytes(protowire.MaxValidNumber, nil))
	}
	data := gcData(50, 1)
	env := gcCat(
		unknowns(9),
		gcVarint(fEnvTypeID, 3),
		gcBytes(fEnvTypeID, []byte{1, 2}),       // type_id as bytes: skipped
		gcVarint(fEnvData, 4),                   // message_data as varint: skipped
		gcFixed32(fEnvTarget, 99),               // target as fixed32: skipped
		gcGroup(fEnvSender, gcVarint(1, 1)),     // sender as group: skipped
		gcFixed64(fEnvHeader, 1),                // header as fixed64: skipped
		gcBytes(fEnvSenderRequestID, []byte{1}), // sender_request_id as bytes: skipped
		gcBytes(fEnvData, gcData(10, 9)),        // overwritten below
		gcVarint(fEnvTypeID, uint64(i32(-5))),   // last one wins
		gcBytes(fEnvData, data),                 // last one wins
		gcVarint(fEnvTarget, 1<<40|2),           // truncated to int32 like proto
		gcVarint(fEnvTargetRequestID, 1<<35|7),  // truncated to uint32 like proto
		gcBytes(fEnvHeader, gcCat(hdr("a", "1"), hdr("b", "2"), gcVarint(7, 7))),
		unknowns(100),
		gcBytes(fEnvHeader, gcCat(hdr("b", "3"), hdr("c", "4"))), // merged; b: last wins
		gcVarint(fEnvSenderRequestID, 12),
	)
	body := gcCat(
		unknowns(5),
		gcBytes(fBatchTypeNames, []byte("actor.Watch")),
		gcVarint(fBatchTypeNames, 1),           // type name as varint: skipped
		gcFixed32(fBatchTargets, 1),            // target as fixed32: skipped
		gcFixed64(fBatchEnvelopes, 1),          // envelope as fixed64: skipped
		gcGroup(fBatchSenders, gcVarint(1, 2)), // sender as group: skipped
		gcBytes(fBatchTargets, pidUnknown),
		gcBytes(fBatchEnvelopes, env),
		unknowns(1000),
		gcBytes(fBatchSenders, pid),
		gcBytes(fBatchEnvelopes, nil),
		gcBytes(fBatchTypeNames, []byte("ü")),
		unknowns(1<<20),
	)
	b := gcRemote(body)
	got, ok := gcCompareParse(t, b)
	if !ok || got == nil {
		t.Fatal("not parsed")
	}
	mb := got.GetMessageBatch()
	want := &remote.MessageBatch{
		TypeNames: []string{"actor.Watch", "ü"},
		Targets:   []*actor.PID{{Address: "a:1", Id: "x", RequestId: 3}},
		Senders:   []*actor.PID{{Address: "a:1", Id: "x", RequestId: 3}},
		Envelopes: []*remote.MessageEnvelope{{
			TypeId: -5, MessageData: data, Target: 2, TargetRequestId: 7, SenderRequestId: 12,
			MessageHeader: &remote.MessageHeader{HeaderData: map[string]string{"a": "1", "b": "3", "c": "4"}},
		}, {}},
	}
	stripped := proto.Clone(mb).(*remote.MessageBatch)
	gcStripUnknown(stripped.ProtoReflect())
	if !proto.Equal(stripped, want) {
		t.Errorf("parsed\n%v\nwant\n%v", stripped, want)
	}
	// Skipped at the batch and envelope level: nothing unknown kept there.
	if u := mb.ProtoReflect().GetUnknown(); len(u) != 0 {
		t.Errorf("batch keeps %d unknown bytes", len(u))
	}
	if u := mb.Envelopes[0].ProtoReflect().GetUnknown(); len(u) != 0 {
		t.Errorf("envelope keeps %d unknown bytes", len(u))
	}
	// And the result equals proto's with DiscardUnknown, PIDs and headers
	// aside (they are proto.Unmarshal's own, unknown fields kept).
	var ref remote.RemoteMessage
	if err := (proto.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, &ref); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(stripped, ref.GetMessageBatch()) {
		t.Errorf("differs from proto.Unmarshal with DiscardUnknown")
	}
	if len(mb.Targets[0].ProtoReflect().GetUnknown()) == 0 {
		t.Errorf("the target PID lost its unknown fields (proto.Unmarshal keeps them)")
	}
}

// TestParseRemoteMessageInvalid: broken encodings fail where proto.Unmarshal
// fails, and nothing panics. Truncations are tried both raw (the outer
// length then overruns: proto.Unmarshal's path) and re-framed (a prefix of
// the batch, or of one envelope, under a correct outer length: parse's own
// path).
func TestParseRemoteMessageInvalid(t *testing.T) {
	var encodings [][]byte
	for _, c := range gcSmallCases() {
		b, err := proto.Marshal(gcBatchMessage(c.mb))
		if err != nil {
			t.Fatal(err)
		}
		encodings = append(encodings, b)
	}
	for _, b := range encodings {
		for k := 0; k < len(b); k++ {
			if _, ok := gcCompareParse(t, b[:k]); ok && k > 0 {
				t.Errorf("proto.Unmarshal accepts the %d-byte prefix of %x", k, gcHead(b))
			}
		}
		_, _, n := protowire.ConsumeTag(b)
		body, _ := protowire.ConsumeBytes(b[n:])
		for k := 0; k <= len(body); k++ {
			gcCompareParse(t, gcRemote(body[:k]))
		}
		// Each envelope truncated in place, lengths fixed up.
		for rest := body; len(rest) > 0; {
			num, typ, n := protowire.ConsumeTag(rest)
			fieldStart := len(body) - len(rest)
			m := protowire.ConsumeFieldValue(num, typ, rest[n:])
			if num == fBatchEnvelopes {
				env, _ := protowire.ConsumeBytes(rest[n:])
				for k := 0; k < len(env); k++ {
					gcCompareParse(t, gcRemote(body[:fieldStart], gcBytes(fBatchEnvelopes, env[:k]), body[fieldStart+n+m:]))
				}
			}
			rest = rest[n+m:]
		}
	}
	pid := gcPIDBytes(t, &actor.PID{Address: "a", Id: "b"})
	for _, c := range []struct {
		name string
		b    []byte
	}{
		{"type name not UTF-8", gcRemote(gcBytes(fBatchTypeNames, []byte("a\xffb")))},
		{"type name truncated UTF-8", gcRemote(gcBytes(fBatchTypeNames, []byte("ü")[:1]))},
		{"target PID garbage", gcRemote(gcBytes(fBatchTargets, []byte{0xff}))},
		{"sender PID truncated", gcRemote(gcBytes(fBatchSenders, pid[:len(pid)-1]))},
		{"PID address not UTF-8", gcRemote(gcBytes(fBatchTargets, gcBytes(1, []byte{0xc0, 0x80})))},
		{"PID with group end", gcRemote(gcBytes(fBatchSenders, gcTag(3, protowire.EndGroupType)))},
		{"header garbage", gcRemote(gcBytes(fBatchEnvelopes, gcBytes(fEnvHeader, []byte{0x0a, 0x05, 0x01})))},
		{"header key not UTF-8", gcRemote(gcBytes(fBatchEnvelopes, gcBytes(fEnvHeader, gcBytes(1, gcBytes(1, []byte{0xff})))))},
		{"envelope varint overflow", gcRemote(gcBytes(fBatchEnvelopes, gcCat(gcTag(fEnvTypeID, protowire.VarintType), bytes.Repeat([]byte{0xff}, 10), []byte{1})))},
		{"envelope varint of 10 bytes, last above 1", gcRemote(gcBytes(fBatchEnvelopes, gcCat(gcTag(fEnvTypeID, protowire.VarintType), bytes.Repeat([]byte{0x80}, 9), []byte{2})))},
		{"batch field number 0", gcRemote(gcVarint(0, 1))},
		{"envelope field number 0", gcRemote(gcBytes(fBatchEnvelopes, []byte{0x00, 0x01}))},
		{"batch wire type 6", gcRemote(gcTag(9, 6), []byte{1})},
		{"envelope wire type 7", gcRemote(gcBytes(fBatchEnvelopes, gcCat(gcTag(9, 7), []byte{1})))},
		{"batch end group alone", gcRemote(gcTag(9, protowire.EndGroupType))},
		{"envelope group not ended", gcRemote(gcBytes(fBatchEnvelopes, gcCat(gcTag(9, protowire.StartGroupType), gcVarint(1, 1))))},
		{"batch group ended by another number", gcRemote(gcTag(9, protowire.StartGroupType), gcTag(10, protowire.EndGroupType))},
		{"envelope inside the batch overruns it", gcRemote(gcTag(fBatchEnvelopes, protowire.BytesType), protowire.AppendVarint(nil, 50), gcVarint(1, 1))},
		{"tag truncated", gcRemote([]byte{0x80})},
		{"envelope fixed64 truncated", gcRemote(gcBytes(fBatchEnvelopes, gcCat(gcTag(9, protowire.Fixed64Type), []byte{1, 2, 3})))},
		{"deep unknown groups", gcRemote(bytes.Repeat(gcTag(9, protowire.StartGroupType), 20000))},
		{"batch field number above 2^29-1", gcRemote(gcVarint(protowire.MaxValidNumber+1, 1))},
		{"envelope field number 2^31-1", gcRemote(gcBytes(fBatchEnvelopes, gcBytes(math.MaxInt32, nil)))},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, ok := gcCompareParse(t, c.b); ok {
				t.Error("proto.Unmarshal accepts it: not an error case")
			}
		})
	}
}

// FuzzParseRemoteMessage: parseRemoteMessage never panics, fails when
// proto.Unmarshal fails, and otherwise gives proto.Unmarshal's message.
//
// The comparison strips unknown fields from both sides. proto.Equal
// compares unknown fields, and the two keep different ones by design:
// proto.Unmarshal keeps every unknown field (and every known field with the
// wrong wire type, which protobuf-go stores as unknown) at every level;
// parseRemoteMessage skips them at the batch and envelope level, keeps them
// in PIDs and headers (which it decodes with proto.Unmarshal), and keeps
// them everywhere when it falls back to proto.Unmarshal. DiscardUnknown on
// the reference alone would still leave the PIDs' and headers' unknown
// fields on parse's side, so both are stripped recursively instead — what
// remains is every known field's value, which must be equal. Accepting and
// refusing are compared on proto.Unmarshal's default options (unknown
// fields are validated either way).
//
// What parse accepts as a batch is also re-encoded with marshalBatch,
// which must agree with proto.Marshal (size, and bytes up to map order).
func FuzzParseRemoteMessage(f *testing.F) {
	for _, c := range gcSmallCases() {
		b, err := proto.Marshal(gcBatchMessage(c.mb))
		if err != nil {
			f.Fatal(err)
		}
		if len(b) <= 512 { // large seeds slow the fuzzer down (minimizing)
			f.Add(b)
		}
	}
	f.Add([]byte{})
	f.Add(gcRemote(gcVarint(9, 1), gcFixed32(10, 2), gcFixed64(11, 3), gcBytes(12, nil), gcGroup(13, gcVarint(1, 1)),
		gcBytes(fBatchEnvelopes, gcCat(gcVarint(9, 1), gcGroup(10), gcBytes(fEnvData, []byte("d")), gcFixed32(fEnvTypeID, 1))),
		gcBytes(fBatchTargets, gcCat(gcBytes(1, []byte("a")), gcVarint(9, 9)))))
	f.Add(gcCat(gcRemote(gcBytes(fBatchTypeNames, []byte("x"))), gcRemote(gcBytes(fBatchTypeNames, []byte("y")))))
	connect, _ := proto.Marshal(&remote.RemoteMessage{MessageType: &remote.RemoteMessage_ConnectRequest{
		ConnectRequest: &remote.ConnectRequest{ConnectionType: &remote.ConnectRequest_ClientConnection{
			ClientConnection: &remote.ClientConnection{SystemId: "sys"}}}}})
	f.Add(connect)
	f.Fuzz(func(t *testing.T, b []byte) {
		var want remote.RemoteMessage
		wantErr := proto.Unmarshal(b, &want)
		got := &remote.RemoteMessage{}
		gotErr, panicked := gcParse(t, b, got)
		if panicked {
			return
		}
		if wantErr != nil {
			if gotErr == nil {
				t.Fatalf("proto.Unmarshal fails (%v), parseRemoteMessage accepts %x", wantErr, b)
			}
			return
		}
		if gotErr != nil {
			t.Fatalf("proto.Unmarshal accepts %x, parseRemoteMessage fails: %v", b, gotErr)
		}
		gcStripUnknown(got.ProtoReflect())
		gcStripUnknown(want.ProtoReflect())
		if !proto.Equal(got, &want) {
			t.Fatalf("parseRemoteMessage gives\n%v\nproto.Unmarshal gives\n%v", got, &want)
		}
		mb := got.GetMessageBatch()
		if mb == nil {
			return
		}
		ref, err := proto.Marshal(got)
		if err != nil {
			t.Fatalf("proto.Marshal of a parsed batch: %v", err)
		}
		out, err := marshalBatch(mb)
		if err != nil {
			t.Fatalf("marshalBatch of a parsed batch: %v", err)
		}
		defer out.Free()
		enc := out.Materialize()
		if len(enc) != len(ref) {
			t.Fatalf("marshalBatch wrote %d bytes, proto.Marshal %d", len(enc), len(ref))
		}
		var again remote.RemoteMessage
		if err := proto.Unmarshal(enc, &again); err != nil || !proto.Equal(&again, got) {
			t.Fatalf("marshalBatch's bytes decode to another message (%v)", err)
		}
	})
}

// gcCountingPool is a mem.BufferPool that counts what is returned to it.
type gcCountingPool struct{ puts atomic.Int32 }

func (p *gcCountingPool) Get(n int) *[]byte { b := make([]byte, n); return &b }
func (p *gcCountingPool) Put(*[]byte)       { p.puts.Add(1) }

// gcSlice returns a BufferSlice of refcounted buffers (above the pooling
// threshold) holding b's bytes in pieces of the given sizes.
func gcSlice(pool mem.BufferPool, b []byte, pieces ...int) mem.BufferSlice {
	var s mem.BufferSlice
	for _, n := range pieces {
		buf := make([]byte, n, max(n, 2048))
		copy(buf, b[:n])
		b = b[n:]
		s = append(s, mem.NewBuffer(&buf, pool))
	}
	return s
}

// TestCodecUnmarshal: into a rawMessage the codec keeps a reference to
// gRPC's buffers; into anything else it decodes with the standard codec.
func TestCodecUnmarshal(t *testing.T) {
	c := gcSmallCases()[len(gcSmallCases())-1]
	enc, err := proto.Marshal(gcBatchMessage(c.mb))
	if err != nil {
		t.Fatal(err)
	}
	if grpcCodec.Name() != "proto" {
		t.Errorf("codec named %q, want proto", grpcCodec.Name())
	}
	for _, pieces := range [][]int{{len(enc)}, {len(enc) / 3, len(enc) - len(enc)/3}} {
		pool := &gcCountingPool{}
		data := gcSlice(pool, enc, pieces...)
		var raw rawMessage
		if err := grpcCodec.Unmarshal(data, &raw); err != nil {
			t.Fatal(err)
		}
		data.Free() // gRPC frees its own reference after Unmarshal
		if n := pool.puts.Load(); n != 0 {
			t.Fatalf("%d pieces: %d buffers returned to the pool while raw holds them", len(pieces), n)
		}
		if len(raw.data) != len(pieces) {
			t.Fatalf("raw holds %d buffers, want %d", len(raw.data), len(pieces))
		}
		for i := range raw.data {
			if !gcSameSlice(raw.data[i].ReadOnlyData(), data[i].ReadOnlyData()) {
				t.Errorf("raw buffer %d is not gRPC's", i)
			}
		}
		if got := raw.data.Materialize(); !bytes.Equal(got, enc) {
			t.Fatalf("raw holds %x, want %x", gcHead(got), gcHead(enc))
		}
		raw.data.Free()
		if n := pool.puts.Load(); n != int32(len(pieces)) {
			t.Errorf("%d pieces: %d buffers returned to the pool after raw's Free, want %d", len(pieces), n, len(pieces))
		}
	}

	// A RemoteMessage: proto decoding, copying, keeping no reference.
	pool := &gcCountingPool{}
	data := gcSlice(pool, enc, len(enc))
	var m remote.RemoteMessage
	if err := grpcCodec.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(&m, gcBatchMessage(c.mb)) {
		t.Errorf("decoded %v, want %v", &m, gcBatchMessage(c.mb))
	}
	in := data[0].ReadOnlyData()
	for i, e := range m.GetMessageBatch().GetEnvelopes() {
		if d := e.MessageData; len(d) > 0 {
			if p := uintptr(unsafe.Pointer(unsafe.SliceData(d))); p >= uintptr(unsafe.Pointer(unsafe.SliceData(in))) && p < uintptr(unsafe.Pointer(unsafe.SliceData(in)))+uintptr(len(in)) {
				t.Errorf("envelope %d aliases gRPC's buffer: not the standard codec", i)
			}
		}
	}
	data.Free()
	if n := pool.puts.Load(); n != 1 {
		t.Errorf("after Unmarshal into a RemoteMessage and gRPC's Free, %d buffers returned, want 1", n)
	}
	var bad remote.RemoteMessage
	if err := grpcCodec.Unmarshal(mem.BufferSlice{mem.SliceBuffer{0xff}}, &bad); err == nil {
		t.Error("garbage decoded")
	}
}

// TestCodecMarshal: batches go through marshalBatch (message_data
// aliased), everything else through the standard codec.
func TestCodecMarshal(t *testing.T) {
	data := gcData(3000, 1)
	batch := gcBatchMessage(&remote.MessageBatch{
		TypeNames: []string{"switchyard.Envelope"},
		Targets:   gcPIDs()[:1],
		Envelopes: []*remote.MessageEnvelope{{MessageData: data}},
	})
	for _, c := range []struct {
		name    string
		v       any
		aliased bool
		wantErr bool
	}{
		{"batch", batch, true, false},
		{"connect request", &remote.RemoteMessage{MessageType: &remote.RemoteMessage_ConnectRequest{
			ConnectRequest: &remote.ConnectRequest{ConnectionType: &remote.ConnectRequest_ClientConnection{
				ClientConnection: &remote.ClientConnection{SystemId: "sys"}}}}}, false, false},
		{"disconnect request", &remote.RemoteMessage{MessageType: &remote.RemoteMessage_DisconnectRequest{DisconnectRequest: &remote.DisconnectRequest{}}}, false, false},
		{"nil batch in the oneof", &remote.RemoteMessage{MessageType: &remote.RemoteMessage_MessageBatch{}}, false, false},
		{"empty RemoteMessage", &remote.RemoteMessage{}, false, false},
		{"a PID", &actor.PID{Address: "a", Id: "b"}, false, false},
		{"not a message", "text", false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, err := grpcCodec.Marshal(c.v)
			if c.wantErr {
				if err == nil {
					out.Free()
					t.Fatal("marshalled")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer out.Free()
			want, err := proto.Marshal(c.v.(proto.Message))
			if err != nil {
				t.Fatal(err)
			}
			if got := out.Materialize(); !bytes.Equal(got, want) {
				t.Fatalf("marshalled %x, want %x", gcHead(got), gcHead(want))
			}
			aliased := false
			for _, b := range out {
				aliased = aliased || gcSameSlice(b.ReadOnlyData(), data)
			}
			if aliased != c.aliased {
				t.Errorf("message_data aliased: %v, want %v", aliased, c.aliased)
			}
		})
	}
}

// TestBufferPoolTiers: Get(n) has length n and the tier's power-of-two
// capacity; above the largest tier, exactly n.
func TestBufferPoolTiers(t *testing.T) {
	p := &tieredPool{}
	for _, c := range []struct{ n, wantCap int }{
		{0, 256}, {1, 256}, {255, 256}, {256, 256}, {257, 512}, {1000, 1024}, {1024, 1024}, {1025, 2048},
		{64<<10 - 1, 64 << 10}, {64 << 10, 64 << 10}, {64<<10 + 1, 128 << 10},
		{1<<24 - 1, 1 << 24}, {1 << 24, 1 << 24}, {1<<24 + 1, 1<<24 + 1}, {20 << 20, 20 << 20},
	} {
		b := p.Get(c.n)
		if len(*b) != c.n || cap(*b) != c.wantCap {
			t.Errorf("Get(%d): len %d cap %d, want len %d cap %d", c.n, len(*b), cap(*b), c.n, c.wantCap)
		}
		if c.n <= 1<<maxPoolShift && (cap(*b)&(cap(*b)-1) != 0 || cap(*b) < max(c.n, 256)) {
			t.Errorf("Get(%d): cap %d is not a power of two ≥ max(n, 256)", c.n, cap(*b))
		}
		p.Put(b)
	}
}

// TestBufferPoolReuse: what is Put comes back from a Get of its tier,
// uncleared, at the length asked.
func TestBufferPoolReuse(t *testing.T) {
	for _, c := range []struct {
		name            string
		get, put, again int
	}{
		{"same size", 300, 300, 300},
		{"prefix put, larger get of the tier", 300, 10, 512},
		{"smallest tier", 1, 1, 256},
		{"zero length", 0, 0, 100},
		{"largest tier", 1 << 24, 1<<24 - 5, 1<<23 + 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := &tieredPool{}
			reused := false
			// sync.Pool may drop what is Put (always possible, often under
			// the race detector): a few tries.
			for try := 0; try < 20 && !reused; try++ {
				b := p.Get(c.get)
				(*b)[:1][0] = 0xa5 // cap ≥ 256: index 0 exists
				*b = (*b)[:c.put]
				p.Put(b)
				g := p.Get(c.again)
				if len(*g) != c.again {
					t.Fatalf("Get(%d) has length %d", c.again, len(*g))
				}
				if g == b {
					reused = true
					if (*g)[:1][0] != 0xa5 {
						t.Error("reused buffer was cleared or rewritten")
					}
				}
			}
			if !reused {
				t.Error("the buffer Put never came back from Get in 20 tries")
			}
		})
	}
}

// TestBufferPoolForeign: Put of a buffer no tier holds is ignored.
func TestBufferPoolForeign(t *testing.T) {
	for _, c := range []struct {
		name   string
		len    int
		cap    int
		getLen int // a Get of the tier it could land in
	}{
		{"cap not a power of two", 300, 300, 300},
		{"cap between tiers", 10, 3000, 2049},
		{"cap below the smallest tier", 128, 128, 128},
		{"cap zero", 0, 0, 0},
		{"cap above the largest tier, power of two", 1, 1 << 25, 1 << 24},
		{"cap just above the largest tier", 1 << 24, 1<<24 + 1, 1 << 24},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := &tieredPool{}
			f := make([]byte, c.len, c.cap)
			p.Put(&f)
			for try := 0; try < 5; try++ {
				g := p.Get(c.getLen)
				if g == &f || (cap(*g) > 0 && cap(f) > 0 && unsafe.SliceData(*g) == unsafe.SliceData(f)) {
					t.Fatal("a foreign buffer came out of the pool")
				}
				if len(*g) != c.getLen || cap(*g) != gcTierCap(c.getLen) {
					t.Fatalf("Get(%d): len %d cap %d", c.getLen, len(*g), cap(*g))
				}
			}
		})
	}
}

// gcAllocBatch is a 16-envelope batch as the endpoint writer sends it:
// two type names, one target, one sender, no headers unless asked. A long
// target address puts the framing above mem's pooling threshold.
func gcAllocBatch(dataBytes int, header, longAddress bool) *remote.MessageBatch {
	mb := &remote.MessageBatch{
		TypeNames: []string{"switchyard.Envelope", "actor.Watch"},
		Targets:   []*actor.PID{{Address: "10.0.0.1:8090", Id: "switchyard/link/peer-a"}},
		Senders:   []*actor.PID{{Address: "10.0.0.2:8090", Id: "switchyard/ack/peer-b"}},
	}
	if longAddress {
		mb.Targets[0].Address = strings.Repeat("a", 1000)
	}
	for i := 0; i < EndpointWriterBatch; i++ {
		e := &remote.MessageEnvelope{TypeId: 0, MessageData: gcData(dataBytes, byte(i)), Target: 0, Sender: 1, TargetRequestId: uint32(i)}
		if header {
			e.MessageHeader = gcAllocHeader()
		}
		mb.Envelopes = append(mb.Envelopes, e)
	}
	return mb
}

func gcAllocHeader() *remote.MessageHeader {
	return &remote.MessageHeader{HeaderData: map[string]string{"trace-id": strings.Repeat("t", 100)}}
}

// TestMarshalBatchAllocs: marshalBatch+Free of a 16-envelope batch
// allocates once (the BufferSlice handed to gRPC), whatever the data size.
//
// From the code: the framing buffer comes from bufferPool with at least
// minFramingBytes of capacity, so mem.NewBuffer pools it; the *mem.buffer
// objects come from gRPC's object pool; the *[]byte holder of each aliased
// message_data comes back through releaser.Put. A message_data of cap ≤
// 1 KiB is a plain SliceBuffer boxed into the Buffer interface (+1 each). A
// header costs what proto's Size and MarshalAppend of it cost (measured
// here).
func TestMarshalBatchAllocs(t *testing.T) {
	h := gcAllocHeader()
	hb := make([]byte, 0, 1024)
	perHeader := testing.AllocsPerRun(200, func() {
		_, _ = proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(hb[:0], h)
		_ = proto.Size(h)
	})
	t.Logf("proto.Size+MarshalAppend of one header: %v allocations", perHeader)
	const pooled, unpooled = 1, 1
	for _, c := range []struct {
		name  string
		mb    *remote.MessageBatch
		bound float64
	}{
		{"16 × 4 KiB, framing > 1 KiB", gcAllocBatch(4<<10, false, true), pooled},
		{"16 × 64 KiB, framing > 1 KiB", gcAllocBatch(64<<10, false, true), pooled},
		{"16 × 4 KiB, headers (framing > 1 KiB)", gcAllocBatch(4<<10, true, false), pooled + 16*perHeader},
		{"16 × 4 KiB, framing ≤ 1 KiB", gcAllocBatch(4<<10, false, false), unpooled},
		{"16 × 64 KiB, framing ≤ 1 KiB", gcAllocBatch(64<<10, false, false), unpooled},
		{"16 × 512 B, framing ≤ 1 KiB", gcAllocBatch(512, false, false), unpooled + 16},
	} {
		run := func() {
			out, err := marshalBatch(c.mb)
			if err != nil {
				t.Fatal(err)
			}
			out.Free()
		}
		run()
		n := testing.AllocsPerRun(200, run)
		total := proto.Size(gcBatchMessage(c.mb))
		data := 0
		for _, e := range c.mb.Envelopes {
			data += len(e.MessageData)
		}
		t.Logf("%s: framing %d B, %v allocations per marshalBatch+Free", c.name, total-data, n)
		if gcRaceEnabled() {
			continue // sync.Pool drops at random under the race detector
		}
		if n > c.bound {
			t.Errorf("%s: %v allocations per marshalBatch+Free, want ≤ %v", c.name, n, c.bound)
		}
	}
}
