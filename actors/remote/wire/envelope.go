// Package wire is the one protobuf message Switchyard sends between its
// processes: switchyard.Envelope{kind, seq, payload} (envelope.proto is the
// schema; this file implements it).
//
// protoactor-go's endpoint writer serializes every message with its proto
// serializer (custom serializers are ignored, docs/ARCHITECTURE.md §7), so batches and
// control messages travel as msgpack inside this small envelope. The
// envelope is written by hand rather than generated so that it can use
// protobuf-go's fast-path methods (protoiface.Methods) to cross the
// boundary without the two copies generated code makes of every payload:
//
//  1. Marshal: a sender builds the envelope's wire form in place, in front
//     of the payload it encoded into its own buffer (Seal). proto.Marshal —
//     what protoactor calls — returns that buffer as it is: no allocation,
//     no copy. An envelope built field by field (acks, control messages)
//     is encoded normally.
//  2. Unmarshal: a BATCH's payload aliases the bytes being unmarshalled
//     instead of being copied out of them. protoactor unmarshals from the
//     gRPC message's message_data, which the transport keeps until the
//     endpoint reader has delivered the whole gRPC message; the receiver
//     decodes a batch into its pool on delivery. Other kinds go to actors,
//     which read them later: their payload is copied (they are small).
package wire

import (
	"bytes"
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/runtime/protoiface"
	"google.golang.org/protobuf/types/descriptorpb"
)

// Kind says what the payload holds (switchyard.Kind).
type Kind int32

// The kinds. The names follow protoc-gen-go's, which this package replaced.
const (
	Kind_KIND_UNSPECIFIED Kind = 0
	// A batch of IP packets: a msgpack array of bin, one per packet.
	Kind_BATCH Kind = 1
	// Acknowledges every BATCH up to and including seq.
	Kind_ACK Kind = 2
	// Daemon → host: run a protocol instance (msgpack Open).
	Kind_OPEN Kind = 3
	// Host → daemon: the instance runs (msgpack Opened).
	Kind_OPENED Kind = 4
	// Daemon → host: stop an instance (payload: its name).
	Kind_CLOSE Kind = 5
	// Host → daemon: the host's counters (msgpack snapshot).
	Kind_STATS Kind = 6
	// Host → daemon: an instance's session (msgpack SessionReport).
	Kind_SESSION Kind = 7
)

var kindNames = [...]string{"KIND_UNSPECIFIED", "BATCH", "ACK", "OPEN", "OPENED", "CLOSE", "STATS", "SESSION"}

func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", int32(k))
}

// Field numbers of switchyard.Envelope.
const (
	fieldKind    protowire.Number = 1
	fieldSeq     protowire.Number = 2
	fieldPayload protowire.Number = 3
)

// HeaderRoom (28 bytes) is the room Seal needs in front of a payload for
// the fields before it: kind and seq (a tag and at most 10 bytes of varint
// each) and the payload's tag and length (1 + at most 5).
const HeaderRoom = 1 + maxVarint + 1 + maxVarint + 1 + 5

const maxVarint = 10 // bytes of the longest varint (a uint64)

// Envelope is switchyard.Envelope. The zero value is an empty envelope.
type Envelope struct {
	Kind Kind
	// BATCH: the batch's sequence number on its link; ACK: the highest
	// sequence number received.
	Seq     uint64
	Payload []byte

	// frame is the wire form Seal built; Marshal returns it as is. Setting
	// the fields directly (or Reset) makes Marshal encode them instead.
	frame      []byte
	frameKind  Kind
	frameSeq   uint64
	framedFrom *byte
}

// Seal makes e the envelope {kind, seq, payload} whose payload is
// buf[HeaderRoom:], and writes its wire form in place into the end of
// buf[:HeaderRoom], so that marshalling e returns a slice of buf without
// copying. e borrows buf until it is marshalled; the caller must not
// change buf while an envelope sealed on it may still be marshalled.
func (e *Envelope) Seal(kind Kind, seq uint64, buf []byte) {
	payload := buf[HeaderRoom:]
	var hdr [HeaderRoom]byte
	h := hdr[:0]
	if kind != 0 {
		h = protowire.AppendTag(h, fieldKind, protowire.VarintType)
		h = protowire.AppendVarint(h, uint64(int64(kind)))
	}
	if seq != 0 {
		h = protowire.AppendTag(h, fieldSeq, protowire.VarintType)
		h = protowire.AppendVarint(h, seq)
	}
	if len(payload) > 0 {
		h = protowire.AppendTag(h, fieldPayload, protowire.BytesType)
		h = protowire.AppendVarint(h, uint64(len(payload)))
	}
	start := HeaderRoom - len(h)
	copy(buf[start:HeaderRoom], h)
	e.Kind, e.Seq, e.Payload = kind, seq, payload
	e.frame = buf[start:]
	e.frameKind, e.frameSeq = kind, seq
	if len(payload) > 0 {
		e.framedFrom = &payload[0]
	} else {
		e.framedFrom = nil
	}
}

// sealed reports whether the frame Seal built still matches the fields
// (they are exported, so a caller may have changed them since).
func (e *Envelope) sealed() bool {
	if e.frame == nil || e.Kind != e.frameKind || e.Seq != e.frameSeq {
		return false
	}
	if len(e.Payload) == 0 {
		return e.framedFrom == nil
	}
	return len(e.Payload) <= len(e.frame) && &e.Payload[0] == e.framedFrom &&
		&e.frame[len(e.frame)-len(e.Payload)] == e.framedFrom
}

// Reset clears e.
func (e *Envelope) Reset() { *e = Envelope{} }

func (e *Envelope) String() string {
	return fmt.Sprintf("switchyard.Envelope{kind: %v, seq: %d, payload: %d bytes}", e.Kind, e.Seq, len(e.Payload))
}

// ProtoMessage marks Envelope as a protobuf message (protoiface.MessageV1).
func (*Envelope) ProtoMessage() {}

// ProtoReflect returns e's protobuf reflection, whose ProtoMethods are the
// fast paths.
func (e *Envelope) ProtoReflect() protoreflect.Message { return (*reflectEnvelope)(e) }

// AppendWire appends e's wire form to b (what proto.Marshal returns).
func (e *Envelope) AppendWire(b []byte) []byte {
	if e.Kind != 0 {
		b = protowire.AppendTag(b, fieldKind, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(int64(e.Kind)))
	}
	if e.Seq != 0 {
		b = protowire.AppendTag(b, fieldSeq, protowire.VarintType)
		b = protowire.AppendVarint(b, e.Seq)
	}
	if len(e.Payload) > 0 {
		b = protowire.AppendTag(b, fieldPayload, protowire.BytesType)
		b = protowire.AppendBytes(b, e.Payload)
	}
	return b
}

var errInvalid = errors.New("switchyard.Envelope: invalid wire format")

// Check reports whether b is a valid switchyard.Envelope: nil exactly when
// proto.Unmarshal into an Envelope succeeds (the same decoder, without the
// copy of a control payload). It allocates nothing. The guard calls it
// before protoactor unmarshals, which ends the peer's stream on an error.
func Check(b []byte) error {
	var e Envelope
	return e.decode(b)
}

// unmarshalAlias merges the wire form b into e. A BATCH's payload aliases b;
// another kind's is a copy.
func (e *Envelope) unmarshalAlias(b []byte) error {
	if err := e.decode(b); err != nil {
		return err
	}
	if e.Kind != Kind_BATCH && len(e.Payload) > 0 {
		e.Payload = bytes.Clone(e.Payload)
	}
	e.frame = nil
	return nil
}

// decode merges the wire form b into e, the payload aliasing b. Fields of
// another wire type than the schema's, and unknown fields, are skipped, as
// protobuf does for unknown fields.
func (e *Envelope) decode(b []byte) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num > protowire.MaxValidNumber {
			return errInvalid
		}
		b = b[n:]
		switch {
		case num == fieldKind && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return errInvalid
			}
			e.Kind, b = Kind(int32(v)), b[n:]
		case num == fieldSeq && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return errInvalid
			}
			e.Seq, b = v, b[n:]
		case num == fieldPayload && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return errInvalid
			}
			e.Payload, b = v[:len(v):len(v)], b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return errInvalid
			}
			b = b[n:]
		}
	}
	return nil
}

// methods are the fast paths proto.Marshal and proto.Unmarshal take. There
// is no Size on purpose: with one, proto.Marshal allocates a buffer and
// copies into it; without, Marshal may return the sealed frame itself.
var methods = &protoiface.Methods{
	Flags: protoiface.SupportMarshalDeterministic | protoiface.SupportUnmarshalDiscardUnknown,
	Marshal: func(in protoiface.MarshalInput) (protoiface.MarshalOutput, error) {
		e := (*Envelope)(in.Message.(*reflectEnvelope))
		if e == nil {
			return protoiface.MarshalOutput{Buf: in.Buf}, nil
		}
		// Only when the caller gave no buffer: one that passes an empty
		// buffer with room (MarshalAppend(buf[:0], …), as gRPC's codec
		// does) may ignore the result and read its own buffer.
		if in.Buf == nil && e.sealed() {
			return protoiface.MarshalOutput{Buf: e.frame}, nil
		}
		return protoiface.MarshalOutput{Buf: e.AppendWire(in.Buf)}, nil
	},
	Unmarshal: func(in protoiface.UnmarshalInput) (protoiface.UnmarshalOutput, error) {
		e := (*Envelope)(in.Message.(*reflectEnvelope))
		if err := e.unmarshalAlias(in.Buf); err != nil {
			return protoiface.UnmarshalOutput{}, err
		}
		return protoiface.UnmarshalOutput{Flags: protoiface.UnmarshalInitialized}, nil
	},
	CheckInitialized: func(protoiface.CheckInitializedInput) (protoiface.CheckInitializedOutput, error) {
		return protoiface.CheckInitializedOutput{}, nil // proto3: nothing is required
	},
}

// The descriptor of envelope.proto, built at init and registered so that
// protoactor's serializer finds the type by its name.
var (
	fileDesc     protoreflect.FileDescriptor
	envelopeDesc protoreflect.MessageDescriptor
	kindField    protoreflect.FieldDescriptor
	seqField     protoreflect.FieldDescriptor
	payloadField protoreflect.FieldDescriptor
)

func init() {
	enumValues := make([]*descriptorpb.EnumValueDescriptorProto, len(kindNames))
	for i, n := range kindNames {
		enumValues[i] = &descriptorpb.EnumValueDescriptorProto{Name: proto.String(n), Number: proto.Int32(int32(i))}
	}
	field := func(name string, num protowire.Number, t descriptorpb.FieldDescriptorProto_Type, typeName string) *descriptorpb.FieldDescriptorProto {
		f := &descriptorpb.FieldDescriptorProto{
			Name:     proto.String(name),
			JsonName: proto.String(name),
			Number:   proto.Int32(int32(num)),
			Label:    descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(),
			Type:     t.Enum(),
		}
		if typeName != "" {
			f.TypeName = proto.String(typeName)
		}
		return f
	}
	fd, err := protodesc.NewFile(&descriptorpb.FileDescriptorProto{
		Name:     proto.String("envelope.proto"),
		Package:  proto.String("switchyard"),
		Syntax:   proto.String("proto3"),
		Options:  &descriptorpb.FileOptions{GoPackage: proto.String("switchyard/actors/remote/wire")},
		EnumType: []*descriptorpb.EnumDescriptorProto{{Name: proto.String("Kind"), Value: enumValues}},
		MessageType: []*descriptorpb.DescriptorProto{{
			Name: proto.String("Envelope"),
			Field: []*descriptorpb.FieldDescriptorProto{
				field("kind", fieldKind, descriptorpb.FieldDescriptorProto_TYPE_ENUM, ".switchyard.Kind"),
				field("seq", fieldSeq, descriptorpb.FieldDescriptorProto_TYPE_UINT64, ""),
				field("payload", fieldPayload, descriptorpb.FieldDescriptorProto_TYPE_BYTES, ""),
			},
		}},
	}, nil)
	if err != nil {
		panic("wire: envelope descriptor: " + err.Error())
	}
	fileDesc = fd
	envelopeDesc = fd.Messages().Get(0)
	kindField = envelopeDesc.Fields().ByNumber(fieldKind)
	seqField = envelopeDesc.Fields().ByNumber(fieldSeq)
	payloadField = envelopeDesc.Fields().ByNumber(fieldPayload)
	if err := protoregistry.GlobalFiles.RegisterFile(fd); err != nil {
		panic("wire: " + err.Error())
	}
	if err := protoregistry.GlobalTypes.RegisterMessage(envelopeType{}); err != nil {
		panic("wire: " + err.Error())
	}
}

// envelopeType is Envelope's protoreflect.MessageType.
type envelopeType struct{}

func (envelopeType) New() protoreflect.Message                  { return new(reflectEnvelope) }
func (envelopeType) Zero() protoreflect.Message                 { return (*reflectEnvelope)(nil) }
func (envelopeType) Descriptor() protoreflect.MessageDescriptor { return envelopeDesc }

// reflectEnvelope is Envelope's protoreflect.Message: the three fields,
// no unknown fields kept.
type reflectEnvelope Envelope

func (m *reflectEnvelope) Descriptor() protoreflect.MessageDescriptor { return envelopeDesc }
func (m *reflectEnvelope) Type() protoreflect.MessageType             { return envelopeType{} }
func (m *reflectEnvelope) New() protoreflect.Message                  { return new(reflectEnvelope) }
func (m *reflectEnvelope) Interface() protoreflect.ProtoMessage       { return (*Envelope)(m) }
func (m *reflectEnvelope) IsValid() bool                              { return m != nil }
func (m *reflectEnvelope) ProtoMethods() *protoiface.Methods          { return methods }
func (m *reflectEnvelope) GetUnknown() protoreflect.RawFields         { return nil }
func (m *reflectEnvelope) SetUnknown(protoreflect.RawFields)          {}

func (m *reflectEnvelope) WhichOneof(protoreflect.OneofDescriptor) protoreflect.FieldDescriptor {
	return nil
}

func (m *reflectEnvelope) Range(f func(protoreflect.FieldDescriptor, protoreflect.Value) bool) {
	if m == nil {
		return
	}
	for _, fd := range [...]protoreflect.FieldDescriptor{kindField, seqField, payloadField} {
		if m.Has(fd) && !f(fd, m.Get(fd)) {
			return
		}
	}
}

func (m *reflectEnvelope) Has(fd protoreflect.FieldDescriptor) bool {
	if m == nil {
		return false
	}
	switch fd {
	case kindField:
		return m.Kind != 0
	case seqField:
		return m.Seq != 0
	case payloadField:
		return len(m.Payload) > 0
	}
	panic(fieldPanic(fd))
}

func (m *reflectEnvelope) Get(fd protoreflect.FieldDescriptor) protoreflect.Value {
	var e Envelope
	if m != nil {
		e = Envelope(*m)
	}
	switch fd {
	case kindField:
		return protoreflect.ValueOfEnum(protoreflect.EnumNumber(e.Kind))
	case seqField:
		return protoreflect.ValueOfUint64(e.Seq)
	case payloadField:
		return protoreflect.ValueOfBytes(e.Payload)
	}
	panic(fieldPanic(fd))
}

func (m *reflectEnvelope) Set(fd protoreflect.FieldDescriptor, v protoreflect.Value) {
	switch fd {
	case kindField:
		m.Kind = Kind(v.Enum())
	case seqField:
		m.Seq = v.Uint()
	case payloadField:
		m.Payload = v.Bytes()
	default:
		panic(fieldPanic(fd))
	}
	m.frame = nil
}

func (m *reflectEnvelope) Clear(fd protoreflect.FieldDescriptor) {
	m.Set(fd, fd.Default())
	if fd == payloadField {
		m.Payload = nil
	}
}

func (m *reflectEnvelope) Mutable(fd protoreflect.FieldDescriptor) protoreflect.Value {
	panic(fmt.Sprintf("switchyard.Envelope: field %s is not mutable", fd.FullName()))
}

func (m *reflectEnvelope) NewField(fd protoreflect.FieldDescriptor) protoreflect.Value {
	if fd != kindField && fd != seqField && fd != payloadField {
		panic(fieldPanic(fd))
	}
	return fd.Default()
}

func fieldPanic(fd protoreflect.FieldDescriptor) string {
	return fmt.Sprintf("switchyard.Envelope: no field %s", fd.FullName())
}
