package wire_test

import (
	"bytes"
	"fmt"
	"math"
	"regexp"
	"slices"
	"testing"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"

	"switchyard/actors/remote/wire"
)

// ---- helpers -------------------------------------------------------------

// ref is the reference wire form of switchyard.Envelope{k, seq, p}, built
// field by field with protowire the way generated code encodes proto3:
// a zero kind, a zero seq and an empty payload are left out.
func ref(k wire.Kind, seq uint64, p []byte) []byte {
	b := []byte{}
	if k != 0 {
		b = append(b, fKind(k)...)
	}
	if seq != 0 {
		b = append(b, fSeq(seq)...)
	}
	if len(p) > 0 {
		b = append(b, fPayload(p)...)
	}
	return b
}

func tag(num protowire.Number, typ protowire.Type) []byte {
	return protowire.AppendTag(nil, num, typ)
}

func varintField(num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(tag(num, protowire.VarintType), v)
}

func bytesField(num protowire.Number, v []byte) []byte {
	return protowire.AppendBytes(tag(num, protowire.BytesType), v)
}

// fKind encodes kind=1 even when k is 0 (int32 enums are sign-extended).
func fKind(k wire.Kind) []byte { return varintField(1, uint64(int64(k))) }

// fSeq encodes seq=2 even when seq is 0.
func fSeq(seq uint64) []byte { return varintField(2, seq) }

// fPayload encodes payload=3 even when p is empty.
func fPayload(p []byte) []byte { return bytesField(3, p) }

func cat(parts ...[]byte) []byte { return slices.Concat(parts...) }

// pattern is n bytes that are not all alike.
func pattern(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*7 + i>>8 + 1)
	}
	return p
}

// sealOn seals a new envelope on a new buffer holding payload, with spare
// bytes of capacity after it. The header room is filled with junk first so
// that a frame including bytes Seal did not write would show.
func sealOn(k wire.Kind, seq uint64, payload []byte, spare int) (*wire.Envelope, []byte) {
	buf := make([]byte, wire.HeaderRoom+len(payload), wire.HeaderRoom+len(payload)+spare)
	for i := range wire.HeaderRoom {
		buf[i] = 0xee
	}
	copy(buf[wire.HeaderRoom:], payload)
	e := new(wire.Envelope)
	e.Seal(k, seq, buf)
	return e, buf
}

// sameEnd reports whether a and b end at the same byte of the same array.
func sameEnd(a, b []byte) bool {
	return len(a) > 0 && len(b) > 0 && &a[len(a)-1] == &b[len(b)-1]
}

// diff describes how got differs from want ("" if it does not), briefly
// enough for a 512 KiB payload.
func diff(got, want []byte) string {
	if bytes.Equal(got, want) {
		return ""
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	clip := func(b []byte) []byte {
		lo, hi := max(0, i-8), min(len(b), i+24)
		if lo > hi {
			lo = hi
		}
		return b[lo:hi]
	}
	return fmt.Sprintf("%d bytes, first difference at %d: %x (want %d bytes: %x)",
		len(got), i, clip(got), len(want), clip(want))
}

type fields struct {
	Kind    wire.Kind
	Seq     uint64
	Payload []byte
}

func fieldsOf(e *wire.Envelope) fields { return fields{e.Kind, e.Seq, e.Payload} }

func (f fields) equal(g fields) bool {
	return f.Kind == g.Kind && f.Seq == g.Seq && bytes.Equal(f.Payload, g.Payload)
}

func (f fields) String() string {
	p := fmt.Sprintf("%q", f.Payload)
	if len(f.Payload) > 32 {
		p = fmt.Sprintf("%d bytes %x…", len(f.Payload), f.Payload[:16])
	}
	return fmt.Sprintf("{kind %v, seq %d, payload %s}", f.Kind, f.Seq, p)
}

func (f fields) wire() []byte { return ref(f.Kind, f.Seq, f.Payload) }

func marshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatalf("proto.Marshal: got error %v, want nil", err)
	}
	return b
}

// marshalNoPanic is proto.Marshal, a panic being an error.
func marshalNoPanic(m proto.Message) (b []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return proto.Marshal(m)
}

// unmarshal is proto.Unmarshal into a new Envelope, a panic being an error.
func unmarshal(in []byte) (e *wire.Envelope, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	e = new(wire.Envelope)
	err = proto.Unmarshal(in, e)
	return e, err
}

var envelopeDesc = (*wire.Envelope)(nil).ProtoReflect().Descriptor()

// refUnmarshal decodes in with protobuf-go's own generic decoder (a
// dynamicpb message of the same descriptor): what a generated
// switchyard.Envelope would do.
func refUnmarshal(in []byte) (fields, error) {
	m := dynamicpb.NewMessage(envelopeDesc)
	if err := proto.Unmarshal(in, m); err != nil {
		return fields{}, err
	}
	fds := envelopeDesc.Fields()
	return fields{
		Kind:    wire.Kind(m.Get(fds.ByNumber(1)).Enum()),
		Seq:     m.Get(fds.ByNumber(2)).Uint(),
		Payload: m.Get(fds.ByNumber(3)).Bytes(),
	}, nil
}

// ---- 1. Seal + proto.Marshal ----------------------------------------------

func TestSealMarshal(t *testing.T) {
	cases := []struct {
		name    string
		kind    wire.Kind
		seq     uint64
		payload []byte
	}{
		{"batch small", wire.Kind_BATCH, 1, []byte("hello")},
		{"batch 512KiB", wire.Kind_BATCH, 42, pattern(512 << 10)},
		{"seq 0", wire.Kind_BATCH, 0, []byte("abc")},
		{"seq max", wire.Kind_BATCH, math.MaxUint64, []byte("abc")},
		{"kind 0", 0, 9, []byte("abc")},
		{"kind unknown", wire.Kind(99), 3, []byte("x")},
		{"longest header: negative kind, seq max", wire.Kind(-1), math.MaxUint64, pattern(300)},
		{"empty payload (buf is HeaderRoom long)", wire.Kind_ACK, 1000, nil},
		{"all fields zero", 0, 0, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, buf := sealOn(tc.kind, tc.seq, tc.payload, 0)
			if got, want := fieldsOf(e), (fields{tc.kind, tc.seq, tc.payload}); !got.equal(want) {
				t.Fatalf("fields after Seal: got %v, want %v", got, want)
			}
			if len(tc.payload) > 0 && &e.Payload[0] != &buf[wire.HeaderRoom] {
				t.Fatalf("Payload after Seal: got a copy, want buf[HeaderRoom:]")
			}
			if d := diff(buf[wire.HeaderRoom:], tc.payload); d != "" {
				t.Fatalf("payload bytes in buf after Seal: got %s", d)
			}

			want := ref(tc.kind, tc.seq, tc.payload)
			for i := range 2 { // a sealed envelope marshals the same way again
				got := marshal(t, e)
				if d := diff(got, want); d != "" {
					t.Fatalf("proto.Marshal #%d: got %s", i+1, d)
				}
				if len(want) > 0 && !sameEnd(got, buf) {
					t.Fatalf("proto.Marshal #%d: got a copy, want a slice of buf", i+1)
				}
			}
			if got, want := proto.Size(e), len(want); got != want {
				t.Fatalf("proto.Size: got %d, want %d", got, want)
			}
			det, err := proto.MarshalOptions{Deterministic: true}.Marshal(e)
			if d := diff(det, want); err != nil || d != "" {
				t.Fatalf("deterministic Marshal: got %s, err %v, want %x, nil", d, err, want)
			}

			var out []byte
			allocs := testing.AllocsPerRun(50, func() { out, _ = proto.Marshal(e) })
			if allocs != 0 {
				t.Fatalf("allocations per proto.Marshal of a sealed envelope: got %v, want 0", allocs)
			}
			if d := diff(out, want); d != "" {
				t.Fatalf("proto.Marshal in AllocsPerRun: got %s", d)
			}
		})
	}
}

func TestSealMarshalAppend(t *testing.T) {
	payload := []byte("payload")
	want := ref(wire.Kind_BATCH, 5, payload)
	cases := []struct {
		name   string
		prefix []byte
	}{
		{"nil", nil},
		{"prefix", []byte("pre")},
		{"prefix with room", append(make([]byte, 0, 256), "pre"...)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, buf := sealOn(wire.Kind_BATCH, 5, payload, 0)
			before := bytes.Clone(buf)
			got, err := proto.MarshalOptions{}.MarshalAppend(tc.prefix, e)
			if err != nil {
				t.Fatalf("MarshalAppend: got error %v, want nil", err)
			}
			if d := diff(got, cat(tc.prefix, want)); d != "" {
				t.Fatalf("MarshalAppend: got %s", d)
			}
			if d := diff(buf, before); d != "" {
				t.Fatalf("sealed buf after MarshalAppend: got %s", d)
			}
		})
	}
}

// ---- 2. Stale frames ------------------------------------------------------

func TestStaleFrame(t *testing.T) {
	const sealedSeq = 7
	sealedPayload := []byte("hello, world")
	other := []byte("zz")
	cases := []struct {
		name   string
		mutate func(e *wire.Envelope, p []byte) // p: the sealed payload
		want   func(p []byte) fields
		// mayAlias: the fields match the sealed frame again, so Marshal may
		// return it.
		mayAlias bool
	}{
		{
			name:   "seq changed",
			mutate: func(e *wire.Envelope, _ []byte) { e.Seq = 8 },
			want:   func(p []byte) fields { return fields{wire.Kind_BATCH, 8, p} },
		},
		{
			name:   "seq zeroed",
			mutate: func(e *wire.Envelope, _ []byte) { e.Seq = 0 },
			want:   func(p []byte) fields { return fields{wire.Kind_BATCH, 0, p} },
		},
		{
			name:   "kind changed",
			mutate: func(e *wire.Envelope, _ []byte) { e.Kind = wire.Kind_ACK },
			want:   func(p []byte) fields { return fields{wire.Kind_ACK, sealedSeq, p} },
		},
		{
			name:   "kind zeroed",
			mutate: func(e *wire.Envelope, _ []byte) { e.Kind = 0 },
			want:   func(p []byte) fields { return fields{0, sealedSeq, p} },
		},
		{
			name:   "payload shortened",
			mutate: func(e *wire.Envelope, p []byte) { e.Payload = p[:5] },
			want:   func(p []byte) fields { return fields{wire.Kind_BATCH, sealedSeq, p[:5]} },
		},
		{
			name:   "payload suffix",
			mutate: func(e *wire.Envelope, p []byte) { e.Payload = p[5:] },
			want:   func(p []byte) fields { return fields{wire.Kind_BATCH, sealedSeq, p[5:]} },
		},
		{
			name:   "payload grown into spare capacity",
			mutate: func(e *wire.Envelope, p []byte) { e.Payload = p[:len(p)+3] },
			want:   func(p []byte) fields { return fields{wire.Kind_BATCH, sealedSeq, p[:len(p)+3]} },
		},
		{
			name:   "payload copied, same bytes",
			mutate: func(e *wire.Envelope, p []byte) { e.Payload = bytes.Clone(p) },
			want:   func(p []byte) fields { return fields{wire.Kind_BATCH, sealedSeq, p} },
		},
		{
			name:   "payload other slice",
			mutate: func(e *wire.Envelope, _ []byte) { e.Payload = []byte("other") },
			want:   func([]byte) fields { return fields{wire.Kind_BATCH, sealedSeq, []byte("other")} },
		},
		{
			name:   "payload nil",
			mutate: func(e *wire.Envelope, _ []byte) { e.Payload = nil },
			want:   func([]byte) fields { return fields{wire.Kind_BATCH, sealedSeq, nil} },
		},
		{
			name:   "payload empty slice of it",
			mutate: func(e *wire.Envelope, p []byte) { e.Payload = p[:0] },
			want:   func([]byte) fields { return fields{wire.Kind_BATCH, sealedSeq, nil} },
		},
		{
			name:   "Reset",
			mutate: func(e *wire.Envelope, _ []byte) { e.Reset() },
			want:   func([]byte) fields { return fields{} },
		},
		{
			name: "reflection Set seq",
			mutate: func(e *wire.Envelope, _ []byte) {
				e.ProtoReflect().Set(envelopeDesc.Fields().ByName("seq"), protoreflect.ValueOfUint64(9))
			},
			want: func(p []byte) fields { return fields{wire.Kind_BATCH, 9, p} },
		},
		{
			name: "reflection Clear payload",
			mutate: func(e *wire.Envelope, _ []byte) {
				e.ProtoReflect().Clear(envelopeDesc.Fields().ByName("payload"))
			},
			want: func([]byte) fields { return fields{wire.Kind_BATCH, sealedSeq, nil} },
		},
		{
			name:   "proto.Merge",
			mutate: func(e *wire.Envelope, _ []byte) { proto.Merge(e, &wire.Envelope{Seq: 99}) },
			want:   func(p []byte) fields { return fields{wire.Kind_BATCH, 99, p} },
		},
		{
			name: "proto.Unmarshal over it",
			mutate: func(e *wire.Envelope, _ []byte) {
				if err := proto.Unmarshal(ref(wire.Kind_ACK, 5, []byte("new")), e); err != nil {
					panic(err)
				}
			},
			want: func([]byte) fields { return fields{wire.Kind_ACK, 5, []byte("new")} },
		},
		{
			name: "sealed again on another buffer",
			mutate: func(e *wire.Envelope, _ []byte) {
				buf := make([]byte, wire.HeaderRoom+len(other))
				copy(buf[wire.HeaderRoom:], other)
				e.Seal(wire.Kind_OPEN, 1, buf)
			},
			want: func([]byte) fields { return fields{wire.Kind_OPEN, 1, other} },
		},
		{
			name:     "seq changed and restored",
			mutate:   func(e *wire.Envelope, _ []byte) { e.Seq = 8; e.Seq = sealedSeq },
			want:     func(p []byte) fields { return fields{wire.Kind_BATCH, sealedSeq, p} },
			mayAlias: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, buf := sealOn(wire.Kind_BATCH, sealedSeq, sealedPayload, 8)
			p := e.Payload
			_ = marshal(t, e) // marshalled once while sealed
			tc.mutate(e, p)
			want := tc.want(p)
			if got := fieldsOf(e); !got.equal(want) {
				t.Fatalf("fields: got %v, want %v", got, want)
			}
			before := bytes.Clone(buf[:cap(buf)])
			got := marshal(t, e)
			if d := diff(got, want.wire()); d != "" {
				t.Fatalf("proto.Marshal: got %s", d)
			}
			if !tc.mayAlias && sameEnd(got, buf) {
				t.Fatalf("proto.Marshal: got the sealed frame, want a new encoding")
			}
			if d := diff(buf[:cap(buf)], before); d != "" {
				t.Fatalf("buf after proto.Marshal: got %s", d)
			}
			if got, want := proto.Size(e), len(want.wire()); got != want {
				t.Fatalf("proto.Size: got %d, want %d", got, want)
			}
		})
	}
}

func TestStaleFrameEmptyPayload(t *testing.T) {
	// Sealed with no payload; then given one in the spare room after the
	// frame, exactly where a sealed payload would be.
	e, buf := sealOn(wire.Kind_ACK, 3, nil, 16)
	copy(buf[len(buf):cap(buf)], "abcd")
	e.Payload = buf[len(buf) : len(buf)+4]
	want := ref(wire.Kind_ACK, 3, []byte("abcd"))
	if d := diff(marshal(t, e), want); d != "" {
		t.Fatalf("proto.Marshal: got %s", d)
	}
}

// ---- 3. Unmarshal -----------------------------------------------------------

func TestUnmarshalRoundTrip(t *testing.T) {
	cases := []struct {
		name   string
		f      fields
		sealed bool
	}{
		{"empty", fields{}, false},
		{"empty sealed", fields{}, true},
		{"batch", fields{wire.Kind_BATCH, 1, []byte("hello")}, false},
		{"batch sealed", fields{wire.Kind_BATCH, 1, []byte("hello")}, true},
		{"batch 512KiB sealed", fields{wire.Kind_BATCH, 1 << 40, pattern(512 << 10)}, true},
		{"ack", fields{wire.Kind_ACK, math.MaxUint64, nil}, false},
		{"ack sealed", fields{wire.Kind_ACK, math.MaxUint64, nil}, true},
		{"negative kind", fields{wire.Kind(-5), 0, []byte{0}}, false},
		{"negative kind sealed", fields{wire.Kind(math.MinInt32), 2, []byte{0}}, true},
		{"stats", fields{wire.Kind_STATS, 0, pattern(200)}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var in []byte
			if tc.sealed {
				e, _ := sealOn(tc.f.Kind, tc.f.Seq, tc.f.Payload, 0)
				in = marshal(t, e)
			} else {
				in = marshal(t, &wire.Envelope{Kind: tc.f.Kind, Seq: tc.f.Seq, Payload: tc.f.Payload})
			}
			e, err := unmarshal(in)
			if err != nil {
				t.Fatalf("proto.Unmarshal: got error %v, want nil", err)
			}
			if got := fieldsOf(e); !got.equal(tc.f) {
				t.Fatalf("round trip: got %v, want %v", got, tc.f)
			}
			if d := diff(marshal(t, e), tc.f.wire()); d != "" {
				t.Fatalf("marshal of the unmarshalled envelope: got %s", d)
			}
		})
	}
}

func TestUnmarshalAliasesInput(t *testing.T) {
	// The payload is followed by another field, so that appending to the
	// payload could overwrite it if the payload's capacity reached into it.
	in := cat(fKind(wire.Kind_BATCH), fPayload([]byte("abc")), fSeq(3))
	e, err := unmarshal(in)
	if err != nil {
		t.Fatalf("proto.Unmarshal: got error %v, want nil", err)
	}
	at := bytes.Index(in, []byte("abc"))
	if got, want := &e.Payload[0], &in[at]; got != want {
		t.Fatalf("&Payload[0]: got %p, want %p (the input)", got, want)
	}
	in[at+2] = 'Z'
	if got, want := string(e.Payload), "abZ"; got != want {
		t.Fatalf("Payload after changing the input: got %q, want %q", got, want)
	}
	if got, want := cap(e.Payload), len(e.Payload); got != want {
		t.Fatalf("cap(Payload): got %d, want %d", got, want)
	}
	_ = append(e.Payload, "!!!"...)
	if got, want := in[at+3:], fSeq(3); !bytes.Equal(got, want) {
		t.Fatalf("input after appending to Payload: got %x, want %x", got, want)
	}
}

func TestUnmarshal(t *testing.T) {
	group := func(num protowire.Number, body ...[]byte) []byte {
		return cat(tag(num, protowire.StartGroupType), cat(body...), tag(num, protowire.EndGroupType))
	}
	fixed32 := func(num protowire.Number, v uint32) []byte {
		return protowire.AppendFixed32(tag(num, protowire.Fixed32Type), v)
	}
	fixed64 := func(num protowire.Number, v uint64) []byte {
		return protowire.AppendFixed64(tag(num, protowire.Fixed64Type), v)
	}
	rawTag := func(x uint64) []byte { return protowire.AppendVarint(nil, x) }
	base := func(extra ...[]byte) []byte {
		// kind, then extra, then seq and payload.
		return cat(fKind(wire.Kind_BATCH), cat(extra...), fSeq(7), fPayload([]byte("p")))
	}
	baseF := fields{wire.Kind_BATCH, 7, []byte("p")}

	cases := []struct {
		name    string
		in      []byte
		want    fields
		wantErr bool
	}{
		{name: "empty input", in: []byte{}, want: fields{}},
		{name: "nil input", in: nil, want: fields{}},
		{name: "fields out of order", in: cat(fPayload([]byte("p")), fSeq(7), fKind(wire.Kind_BATCH)), want: baseF},
		{name: "explicit zero values", in: cat(fKind(0), fSeq(0), fPayload(nil)), want: fields{}},

		// Unknown fields are skipped.
		{name: "unknown varint", in: base(varintField(4, 150)), want: baseF},
		{name: "unknown fixed32", in: base(fixed32(5, 0xdeadbeef)), want: baseF},
		{name: "unknown fixed64", in: base(fixed64(6, 0xdeadbeefcafef00d)), want: baseF},
		{name: "unknown bytes", in: base(bytesField(7, []byte("xyz"))), want: baseF},
		{name: "unknown bytes that look like fields", in: base(bytesField(7, ref(wire.Kind_ACK, 99, []byte("q")))), want: baseF},
		{name: "unknown empty bytes", in: base(bytesField(7, nil)), want: baseF},
		{name: "unknown group holding known field numbers", in: base(group(8, fKind(wire.Kind_ACK), fSeq(99), group(9, fPayload([]byte("q"))))), want: baseF},
		{name: "unknown fields only", in: cat(varintField(4, 1), fixed32(5, 1), fixed64(6, 1), bytesField(7, []byte("x"))), want: fields{}},
		{name: "unknown field number 536870911 (max)", in: base(varintField(protowire.MaxValidNumber, 1)), want: baseF},
		{name: "unknown fields at both ends", in: cat(fixed64(100, 1), fKind(wire.Kind_BATCH), fSeq(7), fPayload([]byte("p")), varintField(1000, 1)), want: baseF},

		// A known field number with another wire type is an unknown field.
		{name: "seq as bytes", in: cat(fKind(wire.Kind_BATCH), bytesField(2, protowire.AppendVarint(nil, 9))), want: fields{Kind: wire.Kind_BATCH}},
		{name: "seq as fixed64", in: cat(fKind(wire.Kind_BATCH), fixed64(2, 9)), want: fields{Kind: wire.Kind_BATCH}},
		{name: "kind as fixed32", in: cat(fixed32(1, 2), fSeq(7)), want: fields{Seq: 7}},
		{name: "kind as bytes", in: cat(bytesField(1, []byte{2}), fSeq(7)), want: fields{Seq: 7}},
		{name: "payload as varint", in: cat(fKind(wire.Kind_ACK), varintField(3, 5)), want: fields{Kind: wire.Kind_ACK}},
		{name: "payload as group", in: cat(fKind(wire.Kind_ACK), group(3, fSeq(1))), want: fields{Kind: wire.Kind_ACK}},
		{name: "wrong type after right type keeps the value", in: cat(fSeq(5), bytesField(2, nil), fixed64(2, 6)), want: fields{Seq: 5}},

		// The last of repeated scalar fields wins; bytes are not concatenated.
		{name: "kind repeated", in: cat(fKind(wire.Kind_ACK), fKind(wire.Kind_BATCH)), want: fields{Kind: wire.Kind_BATCH}},
		{name: "kind repeated, last zero", in: cat(fKind(wire.Kind_ACK), fKind(0)), want: fields{}},
		{name: "seq repeated", in: cat(fSeq(1), fSeq(math.MaxUint64), fSeq(3)), want: fields{Seq: 3}},
		{name: "payload repeated", in: cat(fPayload([]byte("first")), fPayload([]byte("2nd"))), want: fields{Payload: []byte("2nd")}},
		{name: "payload repeated, last empty", in: cat(fPayload([]byte("first")), fPayload(nil)), want: fields{}},

		// Varint forms.
		{name: "non-minimal varint", in: cat(tag(2, protowire.VarintType), []byte{0x81, 0x80, 0x80, 0x00}), want: fields{Seq: 1}},
		{name: "kind wider than int32 is truncated", in: varintField(1, 1<<32|2), want: fields{Kind: wire.Kind_ACK}},
		{name: "kind negative (10-byte varint)", in: fKind(-1), want: fields{Kind: -1}},
		{name: "kind negative as 5-byte varint", in: varintField(1, 0xffffffff), want: fields{Kind: -1}},
		{name: "seq max", in: fSeq(math.MaxUint64), want: fields{Seq: math.MaxUint64}},
		{name: "payload with 2-byte length", in: fPayload(pattern(300)), want: fields{Payload: pattern(300)}},

		// Invalid wire bytes.
		{name: "field number 0", in: []byte{0x00, 0x00}, wantErr: true},
		{name: "wire type 6", in: []byte{1<<3 | 6, 0x00}, wantErr: true},
		{name: "wire type 7", in: []byte{1<<3 | 7, 0x00}, wantErr: true},
		{name: "truncated tag", in: []byte{0x80}, wantErr: true},
		{name: "truncated kind", in: []byte{0x08}, wantErr: true},
		{name: "truncated kind varint", in: []byte{0x08, 0x80}, wantErr: true},
		{name: "varint longer than 10 bytes", in: cat(tag(2, protowire.VarintType), bytes.Repeat([]byte{0xff}, 10), []byte{0x01}), wantErr: true},
		{name: "varint overflowing 64 bits", in: cat(tag(2, protowire.VarintType), bytes.Repeat([]byte{0xff}, 9), []byte{0x02}), wantErr: true},
		{name: "truncated payload", in: []byte{0x1a, 0x05, 'a'}, wantErr: true},
		{name: "truncated payload length", in: []byte{0x1a, 0x80}, wantErr: true},
		{name: "payload length beyond input", in: cat(tag(3, protowire.BytesType), protowire.AppendVarint(nil, 1<<40), []byte("a")), wantErr: true},
		{name: "valid fields then garbage", in: cat(ref(wire.Kind_BATCH, 7, []byte("p")), []byte{0x80}), wantErr: true},
		{name: "truncated unknown bytes", in: cat(tag(7, protowire.BytesType), []byte{0x03, 'a'}), wantErr: true},
		{name: "truncated unknown fixed32", in: cat(tag(5, protowire.Fixed32Type), []byte{1, 2, 3}), wantErr: true},
		{name: "truncated unknown fixed64", in: cat(tag(6, protowire.Fixed64Type), []byte{1, 2, 3, 4, 5, 6, 7}), wantErr: true},
		{name: "truncated seq sent as fixed64", in: cat(tag(2, protowire.Fixed64Type), []byte{1, 2}), wantErr: true},
		{name: "lone end group", in: base(tag(4, protowire.EndGroupType)), wantErr: true},
		{name: "unterminated group", in: cat(tag(8, protowire.StartGroupType), varintField(1, 1)), wantErr: true},
		{name: "mismatched end group", in: cat(tag(8, protowire.StartGroupType), tag(9, protowire.EndGroupType)), wantErr: true},
		{name: "field number 2^31 (beyond int32)", in: cat(rawTag(1<<31<<3), []byte{0x00}), wantErr: true},
		// Field numbers above 536870911 (protowire.MaxValidNumber) are
		// invalid wire data for protobuf-go's decoders (generated and
		// dynamic), although protowire.ConsumeTag accepts them up to 2^31-1.
		{name: "field number 2^29 (max+1)", in: cat(rawTag(1<<29<<3), []byte{0x00}), wantErr: true},
		{name: "field number 2^31-1", in: cat(rawTag(math.MaxInt32<<3), []byte{0x00}), wantErr: true},
		{name: "field number 2^29 after valid fields", in: base(cat(rawTag(1<<29<<3|uint64(protowire.BytesType)), []byte{0x00})), wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// The table is protobuf's semantics: check it against
			// protobuf-go's own decoder first.
			refF, refErr := refUnmarshal(tc.in)
			if (refErr != nil) != tc.wantErr || (refErr == nil && !refF.equal(tc.want)) {
				t.Fatalf("reference decoder (dynamicpb) on %x: got %v, error %v; the table wants %v, error %v",
					tc.in, refF, refErr, tc.want, tc.wantErr)
			}

			e, err := unmarshal(tc.in)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("proto.Unmarshal(%x): got %v, nil error, want an error", tc.in, fieldsOf(e))
				}
				return
			}
			if err != nil {
				t.Fatalf("proto.Unmarshal(%x): got error %v, want %v", tc.in, err, tc.want)
			}
			if got := fieldsOf(e); !got.equal(tc.want) {
				t.Fatalf("proto.Unmarshal(%x): got %v, want %v", tc.in, got, tc.want)
			}
			if d := diff(marshal(t, e), tc.want.wire()); d != "" {
				t.Fatalf("re-marshal: got %s", d)
			}
		})
	}
}

func TestUnmarshalTruncated(t *testing.T) {
	// Each encoding is a list of fields; a prefix is valid exactly when it
	// ends between two fields, and then decodes to the fields before.
	type field struct {
		b     []byte
		apply func(*fields)
	}
	kind := func(k wire.Kind) field { return field{fKind(k), func(f *fields) { f.Kind = k }} }
	seq := func(s uint64) field { return field{fSeq(s), func(f *fields) { f.Seq = s }} }
	payload := func(p []byte) field { return field{fPayload(p), func(f *fields) { f.Payload = p }} }
	unknown := func(b []byte) field { return field{b, func(*fields) {}} }

	cases := []struct {
		name   string
		fields []field
	}{
		{"batch", []field{kind(wire.Kind_BATCH), seq(300), payload([]byte("hello"))}},
		{"longest header", []field{kind(-1), seq(math.MaxUint64), payload(pattern(200))}},
		{"with unknown fields", []field{
			unknown(protowire.AppendFixed32(tag(9, protowire.Fixed32Type), 1)),
			kind(wire.Kind_ACK),
			unknown(cat(tag(10, protowire.StartGroupType), varintField(1, 3), tag(10, protowire.EndGroupType))),
			seq(1 << 35),
			unknown(protowire.AppendFixed64(tag(11, protowire.Fixed64Type), 1)),
			payload([]byte("xy")),
			unknown(bytesField(12, []byte("tail"))),
			unknown(varintField(1<<20, 1<<50)),
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var in []byte
			ends := map[int]fields{0: {}}
			var want fields
			for _, f := range tc.fields {
				in = append(in, f.b...)
				f.apply(&want)
				ends[len(in)] = want
			}
			for n := 0; n <= len(in); n++ {
				prefix := bytes.Clone(in[:n]) // no capacity past the end
				e, err := unmarshal(prefix)
				want, valid := ends[n]
				switch {
				case valid && err != nil:
					t.Fatalf("proto.Unmarshal(%x) (%d of %d bytes): got error %v, want %v", prefix, n, len(in), err, want)
				case valid && !fieldsOf(e).equal(want):
					t.Fatalf("proto.Unmarshal(%x) (%d of %d bytes): got %v, want %v", prefix, n, len(in), fieldsOf(e), want)
				case !valid && err == nil:
					t.Fatalf("proto.Unmarshal(%x) (%d of %d bytes): got %v, nil error, want an error", prefix, n, len(in), fieldsOf(e))
				}
				if err != nil && bytes.HasPrefix([]byte(err.Error()), []byte("panic")) {
					t.Fatalf("proto.Unmarshal(%x): got %v, want an error", prefix, err)
				}
			}
		})
	}
}

func TestUnmarshalResets(t *testing.T) {
	cases := []struct {
		name   string
		before func() *wire.Envelope
		in     []byte
		merge  bool
		want   fields
	}{
		{
			name:   "field-built, empty input",
			before: func() *wire.Envelope { return &wire.Envelope{Kind: wire.Kind_ACK, Seq: 9, Payload: []byte("old")} },
			in:     []byte{},
			want:   fields{},
		},
		{
			name:   "field-built, kind only",
			before: func() *wire.Envelope { return &wire.Envelope{Kind: wire.Kind_ACK, Seq: 9, Payload: []byte("old")} },
			in:     ref(wire.Kind_BATCH, 0, nil),
			want:   fields{Kind: wire.Kind_BATCH},
		},
		{
			name: "sealed, seq only",
			before: func() *wire.Envelope {
				e, _ := sealOn(wire.Kind_BATCH, 7, []byte("old payload"), 0)
				return e
			},
			in:   ref(0, 3, nil),
			want: fields{Seq: 3},
		},
		{
			name: "sealed, empty input",
			before: func() *wire.Envelope {
				e, _ := sealOn(wire.Kind_BATCH, 7, []byte("old payload"), 0)
				return e
			},
			in:   nil,
			want: fields{},
		},
		{
			name:   "merge: field-built, seq only",
			before: func() *wire.Envelope { return &wire.Envelope{Kind: wire.Kind_ACK, Seq: 9, Payload: []byte("old")} },
			in:     ref(0, 3, nil),
			merge:  true,
			want:   fields{wire.Kind_ACK, 3, []byte("old")},
		},
		{
			name: "merge: sealed, payload only",
			before: func() *wire.Envelope {
				e, _ := sealOn(wire.Kind_BATCH, 7, []byte("old payload"), 0)
				return e
			},
			in:    ref(0, 0, []byte("q")),
			merge: true,
			want:  fields{wire.Kind_BATCH, 7, []byte("q")},
		},
		{
			name: "merge: sealed, empty input",
			before: func() *wire.Envelope {
				e, _ := sealOn(wire.Kind_BATCH, 7, []byte("old payload"), 0)
				return e
			},
			in:    nil,
			merge: true,
			want:  fields{wire.Kind_BATCH, 7, []byte("old payload")},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := tc.before()
			if err := (proto.UnmarshalOptions{Merge: tc.merge}).Unmarshal(tc.in, e); err != nil {
				t.Fatalf("Unmarshal: got error %v, want nil", err)
			}
			if got := fieldsOf(e); !got.equal(tc.want) {
				t.Fatalf("fields: got %v, want %v", got, tc.want)
			}
			if d := diff(marshal(t, e), tc.want.wire()); d != "" {
				t.Fatalf("proto.Marshal after Unmarshal: got %s", d)
			}
		})
	}
}

// ---- 4. Reflection interop ---------------------------------------------------

func TestEqual(t *testing.T) {
	sealed := func(k wire.Kind, seq uint64, p string) *wire.Envelope {
		e, _ := sealOn(k, seq, []byte(p), 0)
		return e
	}
	cases := []struct {
		name string
		a, b *wire.Envelope
		want bool
	}{
		{"both empty", &wire.Envelope{}, &wire.Envelope{}, true},
		{"both nil", nil, nil, true},
		{"nil and empty", nil, &wire.Envelope{}, false},
		{"nil and empty payload", &wire.Envelope{Payload: nil}, &wire.Envelope{Payload: []byte{}}, true},
		{"same fields", &wire.Envelope{Kind: wire.Kind_BATCH, Seq: 1, Payload: []byte("x")}, &wire.Envelope{Kind: wire.Kind_BATCH, Seq: 1, Payload: []byte("x")}, true},
		{"sealed and field-built", sealed(wire.Kind_BATCH, 1, "x"), &wire.Envelope{Kind: wire.Kind_BATCH, Seq: 1, Payload: []byte("x")}, true},
		{"kind differs", &wire.Envelope{Kind: wire.Kind_BATCH}, &wire.Envelope{Kind: wire.Kind_ACK}, false},
		{"kind unset", &wire.Envelope{Kind: wire.Kind_BATCH}, &wire.Envelope{}, false},
		{"seq differs", &wire.Envelope{Seq: 1}, &wire.Envelope{Seq: 2}, false},
		{"payload differs", &wire.Envelope{Payload: []byte("x")}, &wire.Envelope{Payload: []byte("y")}, false},
		{"payload unset", &wire.Envelope{Payload: []byte("x")}, &wire.Envelope{}, false},
		{"sealed differ by seq", sealed(wire.Kind_BATCH, 1, "x"), sealed(wire.Kind_BATCH, 2, "x"), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := proto.Equal(tc.a, tc.b); got != tc.want {
				t.Fatalf("proto.Equal(%v, %v): got %v, want %v", tc.a, tc.b, got, tc.want)
			}
			if got := proto.Equal(tc.b, tc.a); got != tc.want {
				t.Fatalf("proto.Equal(%v, %v): got %v, want %v", tc.b, tc.a, got, tc.want)
			}
		})
	}
}

func TestClone(t *testing.T) {
	cases := []struct {
		name   string
		f      fields
		sealed bool
	}{
		{"empty", fields{}, false},
		{"all fields", fields{wire.Kind_OPENED, 42, []byte("hello")}, false},
		{"all fields, sealed", fields{wire.Kind_BATCH, 42, pattern(1000)}, true},
		{"unknown kind", fields{wire.Kind(77), 0, nil}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var src *wire.Envelope
			var buf []byte
			if tc.sealed {
				src, buf = sealOn(tc.f.Kind, tc.f.Seq, tc.f.Payload, 0)
			} else {
				src = &wire.Envelope{Kind: tc.f.Kind, Seq: tc.f.Seq, Payload: bytes.Clone(tc.f.Payload)}
			}
			c, ok := proto.Clone(src).(*wire.Envelope)
			if !ok {
				t.Fatalf("proto.Clone: got %T, want *wire.Envelope", proto.Clone(src))
			}
			if got := fieldsOf(c); !got.equal(tc.f) {
				t.Fatalf("clone: got %v, want %v", got, tc.f)
			}
			if !proto.Equal(c, src) {
				t.Fatalf("proto.Equal(clone, original): got false, want true")
			}
			if len(c.Payload) > 0 && &c.Payload[0] == &src.Payload[0] {
				t.Fatalf("clone's payload: got the original's bytes, want a copy")
			}
			out := marshal(t, c)
			if d := diff(out, tc.f.wire()); d != "" {
				t.Fatalf("proto.Marshal(clone): got %s", d)
			}
			if sameEnd(out, buf) {
				t.Fatalf("proto.Marshal(clone): got the original's sealed frame, want its own encoding")
			}
		})
	}
	if got := proto.Clone((*wire.Envelope)(nil)); got.(*wire.Envelope) != nil {
		t.Fatalf("proto.Clone(nil *Envelope): got %v, want nil", got)
	}
}

func TestPrototext(t *testing.T) {
	cases := []struct {
		name string
		e    *wire.Envelope
		want []string // regexps the text must match
	}{
		{"empty", &wire.Envelope{}, nil},
		{"all fields", &wire.Envelope{Kind: wire.Kind_BATCH, Seq: 7, Payload: []byte("hi")},
			[]string{`kind:\s*BATCH`, `seq:\s*7\b`, `payload:\s*"hi"`}},
		{"unknown kind", &wire.Envelope{Kind: 42}, []string{`kind:\s*42\b`}},
		{"seq max", &wire.Envelope{Seq: math.MaxUint64}, []string{`seq:\s*18446744073709551615\b`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			text := prototext.Format(tc.e)
			if tc.want == nil && text != "" {
				t.Fatalf("prototext.Format: got %q, want \"\"", text)
			}
			for _, re := range tc.want {
				if !regexp.MustCompile(re).MatchString(text) {
					t.Fatalf("prototext.Format: got %q, want a match for %s", text, re)
				}
			}
			var back wire.Envelope
			if err := prototext.Unmarshal([]byte(text), &back); err != nil {
				t.Fatalf("prototext.Unmarshal(%q): got error %v, want nil", text, err)
			}
			if got, want := fieldsOf(&back), fieldsOf(tc.e); !got.equal(want) {
				t.Fatalf("prototext round trip: got %v, want %v", got, want)
			}
		})
	}
}

func TestSize(t *testing.T) {
	sealed, _ := sealOn(wire.Kind_BATCH, 1<<33, pattern(70000), 0)
	stale, _ := sealOn(wire.Kind_BATCH, 5, pattern(100), 0)
	stale.Seq = 6
	cases := []struct {
		name string
		e    *wire.Envelope
	}{
		{"empty", &wire.Envelope{}},
		// A nil *Envelope is an empty message, as for generated messages.
		{"nil", nil},
		{"field-built", &wire.Envelope{Kind: wire.Kind_CLOSE, Seq: 300, Payload: []byte("name")}},
		{"negative kind", &wire.Envelope{Kind: -1}},
		{"sealed", sealed},
		{"stale", stale},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := marshalNoPanic(tc.e)
			if err != nil {
				t.Fatalf("proto.Marshal(%#v): got error %v, want nil", tc.e, err)
			}
			if got, want := proto.Size(tc.e), len(out); got != want {
				t.Fatalf("proto.Size: got %d, want %d (len of proto.Marshal)", got, want)
			}
			var f fields
			if tc.e != nil {
				f = fieldsOf(tc.e)
			}
			if d := diff(out, f.wire()); d != "" {
				t.Fatalf("proto.Marshal: got %s", d)
			}
		})
	}
}

func TestDescriptor(t *testing.T) {
	md := (&wire.Envelope{}).ProtoReflect().Descriptor()
	if got, want := md.FullName(), protoreflect.FullName("switchyard.Envelope"); got != want {
		t.Fatalf("FullName: got %q, want %q", got, want)
	}
	if got, want := proto.MessageName(&wire.Envelope{}), protoreflect.FullName("switchyard.Envelope"); got != want {
		t.Fatalf("proto.MessageName: got %q, want %q", got, want)
	}
	if got, want := md.Syntax(), protoreflect.Proto3; got != want {
		t.Fatalf("Syntax: got %v, want %v", got, want)
	}
	if got, want := md.ParentFile().Path(), "envelope.proto"; got != want {
		t.Fatalf("file path: got %q, want %q", got, want)
	}
	if got, want := md.Fields().Len(), 3; got != want {
		t.Fatalf("number of fields: got %d, want %d", got, want)
	}
	fieldCases := []struct {
		num  protowire.Number
		name protoreflect.Name
		kind protoreflect.Kind
		enum protoreflect.FullName
	}{
		{1, "kind", protoreflect.EnumKind, "switchyard.Kind"},
		{2, "seq", protoreflect.Uint64Kind, ""},
		{3, "payload", protoreflect.BytesKind, ""},
	}
	for _, tc := range fieldCases {
		t.Run(string(tc.name), func(t *testing.T) {
			fd := md.Fields().ByNumber(tc.num)
			if fd == nil {
				t.Fatalf("field %d: got none, want %s", tc.num, tc.name)
			}
			if got := fd.Name(); got != tc.name {
				t.Fatalf("field %d name: got %q, want %q", tc.num, got, tc.name)
			}
			if got := fd.Kind(); got != tc.kind {
				t.Fatalf("field %s kind: got %v, want %v", tc.name, got, tc.kind)
			}
			if got, want := fd.Cardinality(), protoreflect.Optional; got != want {
				t.Fatalf("field %s cardinality: got %v, want %v", tc.name, got, want)
			}
			if fd.HasPresence() {
				t.Fatalf("field %s HasPresence: got true, want false (proto3 implicit presence)", tc.name)
			}
			var enum protoreflect.FullName
			if fd.Enum() != nil {
				enum = fd.Enum().FullName()
			}
			if enum != tc.enum {
				t.Fatalf("field %s enum: got %q, want %q", tc.name, enum, tc.enum)
			}
		})
	}

	values := md.Fields().ByNumber(1).Enum().Values()
	if got, want := values.Len(), 8; got != want {
		t.Fatalf("switchyard.Kind values: got %d, want %d", got, want)
	}
	for i := range values.Len() {
		v := values.Get(i)
		if got, want := string(v.Name()), wire.Kind(v.Number()).String(); got != want {
			t.Fatalf("switchyard.Kind value %d: got name %q, want %q (Kind.String)", v.Number(), got, want)
		}
	}
}

func TestRegistry(t *testing.T) {
	mt, err := protoregistry.GlobalTypes.FindMessageByName("switchyard.Envelope")
	if err != nil {
		t.Fatalf("GlobalTypes.FindMessageByName: got error %v, want nil", err)
	}
	if got, want := mt.Descriptor().FullName(), protoreflect.FullName("switchyard.Envelope"); got != want {
		t.Fatalf("type's FullName: got %q, want %q", got, want)
	}
	m := mt.New().Interface()
	e, ok := m.(*wire.Envelope)
	if !ok {
		t.Fatalf("New().Interface(): got %T, want *wire.Envelope", m)
	}
	if e == nil {
		t.Fatalf("New().Interface(): got a nil *wire.Envelope, want a new one")
	}
	if mt.Zero().IsValid() {
		t.Fatalf("Zero().IsValid(): got true, want false")
	}
	if _, err := protoregistry.GlobalTypes.FindMessageByURL("type.googleapis.com/switchyard.Envelope"); err != nil {
		t.Fatalf("GlobalTypes.FindMessageByURL: got error %v, want nil", err)
	}
	if _, err := protoregistry.GlobalFiles.FindDescriptorByName("switchyard.Envelope"); err != nil {
		t.Fatalf("GlobalFiles.FindDescriptorByName: got error %v, want nil", err)
	}
	// As protoactor's proto serializer deserializes: a new message of the
	// type named, then proto.Unmarshal.
	want := fields{wire.Kind_OPEN, 12, []byte("open")}
	if err := proto.Unmarshal(want.wire(), m); err != nil {
		t.Fatalf("proto.Unmarshal into the registry's message: got error %v, want nil", err)
	}
	if got := fieldsOf(e); !got.equal(want) {
		t.Fatalf("proto.Unmarshal into the registry's message: got %v, want %v", got, want)
	}
}

func TestReflection(t *testing.T) {
	fds := envelopeDesc.Fields()
	kindFD, seqFD, payloadFD := fds.ByName("kind"), fds.ByName("seq"), fds.ByName("payload")

	e := &wire.Envelope{Kind: wire.Kind_BATCH, Payload: []byte("ab")}
	m := e.ProtoReflect()
	if got, want := m.Interface(), proto.Message(e); got != want {
		t.Fatalf("Interface(): got %p, want %p", got, want)
	}
	hasCases := []struct {
		fd   protoreflect.FieldDescriptor
		want bool
		get  any
	}{
		{kindFD, true, protoreflect.EnumNumber(wire.Kind_BATCH)},
		{seqFD, false, uint64(0)},
		{payloadFD, true, []byte("ab")},
	}
	for _, tc := range hasCases {
		if got := m.Has(tc.fd); got != tc.want {
			t.Fatalf("Has(%s): got %v, want %v", tc.fd.Name(), got, tc.want)
		}
		got := m.Get(tc.fd).Interface()
		if b, ok := got.([]byte); ok {
			if !bytes.Equal(b, tc.get.([]byte)) {
				t.Fatalf("Get(%s): got %q, want %q", tc.fd.Name(), b, tc.get)
			}
		} else if got != tc.get {
			t.Fatalf("Get(%s): got %v (%T), want %v (%T)", tc.fd.Name(), got, got, tc.get, tc.get)
		}
	}
	var ranged []protowire.Number
	m.Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		ranged = append(ranged, fd.Number())
		return true
	})
	slices.Sort(ranged)
	if got, want := ranged, []protowire.Number{1, 3}; !slices.Equal(got, want) {
		t.Fatalf("Range: got fields %v, want %v", got, want)
	}

	m.Set(seqFD, protoreflect.ValueOfUint64(5))
	m.Set(kindFD, protoreflect.ValueOfEnum(protoreflect.EnumNumber(wire.Kind_STATS)))
	m.Set(payloadFD, protoreflect.ValueOfBytes([]byte("xyz")))
	if got, want := fieldsOf(e), (fields{wire.Kind_STATS, 5, []byte("xyz")}); !got.equal(want) {
		t.Fatalf("after Set: got %v, want %v", got, want)
	}
	m.Clear(kindFD)
	m.Clear(payloadFD)
	if got, want := fieldsOf(e), (fields{0, 5, nil}); !got.equal(want) {
		t.Fatalf("after Clear: got %v, want %v", got, want)
	}
	if got := m.NewField(seqFD).Uint(); got != 0 {
		t.Fatalf("NewField(seq): got %d, want 0", got)
	}
	var nilEnv *wire.Envelope
	if nilEnv.ProtoReflect().IsValid() || nilEnv.ProtoReflect().Has(kindFD) {
		t.Fatalf("nil envelope: got IsValid or Has true, want false")
	}
	if got := nilEnv.ProtoReflect().Get(seqFD).Uint(); got != 0 {
		t.Fatalf("nil envelope Get(seq): got %d, want 0", got)
	}
}

// ---- 5. Fuzz ----------------------------------------------------------------

func FuzzUnmarshal(f *testing.F) {
	sealed, _ := sealOn(wire.Kind_BATCH, 1<<40, pattern(100), 0)
	sealedWire, _ := proto.Marshal(sealed)
	for _, seed := range [][]byte{
		{},
		ref(wire.Kind_BATCH, 1, []byte("hello")),
		ref(wire.Kind(-1), math.MaxUint64, pattern(200)),
		ref(wire.Kind_ACK, 77, nil),
		sealedWire,
		cat(varintField(4, 1), fKind(wire.Kind_OPEN), protowire.AppendFixed32(tag(5, protowire.Fixed32Type), 1),
			fSeq(2), bytesField(2, []byte{1}), fPayload([]byte("p")), fPayload([]byte("q"))),
		cat(tag(8, protowire.StartGroupType), fSeq(3), tag(8, protowire.EndGroupType), fKind(wire.Kind_CLOSE)),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		in := bytes.Clone(data)
		var e wire.Envelope
		err := proto.Unmarshal(data, &e) // a panic fails the fuzz target
		if !bytes.Equal(data, in) {
			t.Fatalf("proto.Unmarshal changed its input: got %x, want %x", data, in)
		}
		refF, refErr := refUnmarshal(data)
		if err != nil {
			if refErr == nil {
				t.Fatalf("proto.Unmarshal(%x): got error %v, want %v (protobuf-go's decoder accepts it)", data, err, refF)
			}
			return
		}
		got := fieldsOf(&e)
		if refErr == nil && !got.equal(refF) {
			t.Fatalf("proto.Unmarshal(%x): got %v, want %v (protobuf-go's decoder)", data, got, refF)
		}
		out, err := proto.Marshal(&e)
		if err != nil {
			t.Fatalf("proto.Marshal(%v): got error %v, want nil", got, err)
		}
		if d := diff(out, got.wire()); d != "" {
			t.Fatalf("proto.Marshal(%v): got %s", got, d)
		}
		var back wire.Envelope
		if err := proto.Unmarshal(out, &back); err != nil {
			t.Fatalf("proto.Unmarshal(proto.Marshal(%v)): got error %v, want nil", got, err)
		}
		if b := fieldsOf(&back); !b.equal(got) {
			t.Fatalf("unmarshal of re-marshalled: got %v, want %v", b, got)
		}
	})
}

// ---- 6. Kind.String ---------------------------------------------------------

func TestKindString(t *testing.T) {
	cases := []struct {
		k    wire.Kind
		want string
	}{
		{wire.Kind_KIND_UNSPECIFIED, "KIND_UNSPECIFIED"},
		{wire.Kind_BATCH, "BATCH"},
		{wire.Kind_ACK, "ACK"},
		{wire.Kind_OPEN, "OPEN"},
		{wire.Kind_OPENED, "OPENED"},
		{wire.Kind_CLOSE, "CLOSE"},
		{wire.Kind_STATS, "STATS"},
		{wire.Kind_SESSION, "SESSION"},
		{8, "Kind(8)"},
		{-1, "Kind(-1)"},
		{math.MaxInt32, "Kind(2147483647)"},
		{math.MinInt32, "Kind(-2147483648)"},
	}
	for _, tc := range cases {
		if got := tc.k.String(); got != tc.want {
			t.Fatalf("Kind(%d).String(): got %q, want %q", int32(tc.k), got, tc.want)
		}
	}
}

func TestEnvelopeString(t *testing.T) {
	cases := []struct {
		e    *wire.Envelope
		want string
	}{
		{&wire.Envelope{}, "switchyard.Envelope{kind: KIND_UNSPECIFIED, seq: 0, payload: 0 bytes}"},
		{&wire.Envelope{Kind: wire.Kind_BATCH, Seq: 7, Payload: []byte("abc")}, "switchyard.Envelope{kind: BATCH, seq: 7, payload: 3 bytes}"},
	}
	for _, tc := range cases {
		if got := tc.e.String(); got != tc.want {
			t.Fatalf("String(): got %q, want %q", got, tc.want)
		}
	}
}

// TestUnmarshalCopiesControlPayloads checks that only a BATCH aliases the
// input: other kinds go to actors that read them after the transport has
// reused the received bytes.
func TestUnmarshalCopiesControlPayloads(t *testing.T) {
	for _, k := range []wire.Kind{wire.Kind_KIND_UNSPECIFIED, wire.Kind_ACK, wire.Kind_OPEN, wire.Kind_OPENED, wire.Kind_CLOSE, wire.Kind_STATS, 99} {
		t.Run(k.String(), func(t *testing.T) {
			// The kind after the payload: the decision is made on the whole message.
			in := cat(fPayload([]byte("abc")), fKind(k))
			e, err := unmarshal(in)
			if err != nil {
				t.Fatalf("proto.Unmarshal: got error %v, want nil", err)
			}
			in[bytes.Index(in, []byte("abc"))] = 'Z'
			if got, want := string(e.Payload), "abc"; got != want {
				t.Fatalf("Payload after changing the input: got %q, want %q (a copy)", got, want)
			}
		})
	}
}

// TestCheck: Check accepts exactly what proto.Unmarshal accepts, without
// allocating (the guard runs it on every envelope).
func TestCheck(t *testing.T) {
	for _, c := range []struct {
		name string
		in   []byte
	}{
		{"batch", cat(fKind(wire.Kind_BATCH), fSeq(3), fPayload([]byte("abc")))},
		{"control with payload", cat(fKind(wire.Kind_STATS), fPayload([]byte("abc")))},
		{"empty", nil},
		{"tag without value", []byte{0x08}},
		{"payload overruns", []byte{0x1a, 0x10, 0x01}},
		{"field number 2^29", []byte{0x80, 0x80, 0x80, 0x80, 0x10, 0x00}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var e wire.Envelope
			want := proto.Unmarshal(c.in, &e) == nil
			if got := wire.Check(c.in) == nil; got != want {
				t.Fatalf("Check ok = %v, want %v (proto.Unmarshal)", got, want)
			}
			if n := testing.AllocsPerRun(100, func() { _ = wire.Check(c.in) }); n != 0 {
				t.Fatalf("Check: %v allocations, want 0", n)
			}
		})
	}
}
