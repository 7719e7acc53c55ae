package ike

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/hex"
	"errors"
	"net/netip"
	"reflect"
	"testing"
)

func TestEncodeParse(t *testing.T) {
	props := []Proposal{{Num: 1, Protocol: ProtoIKE, SPI: []byte{}, Transforms: []Transform{
		{Type: TransformENCR, ID: ENCR_AES_GCM_16, KeyLen: 256}, {Type: TransformPRF, ID: PRF_HMAC_SHA2_256}, {Type: TransformDH, ID: DH_CURVE25519}}},
		{Num: 2, Protocol: ProtoESP, SPI: []byte{1, 2, 3, 4}, Transforms: []Transform{{Type: TransformENCR, ID: ENCR_CHACHA20_POLY1305}, {Type: TransformESN, ID: ESN_ON}}}}
	ps := []Payload{
		{Type: PayloadSA, Body: AppendSA(nil, props)},
		{Type: PayloadNonce, Body: bytes.Repeat([]byte{9}, 32)},
		{Type: PayloadNotify, Body: NotifyBody(0, nil, NotifyCookie, []byte("cookie"))},
	}
	h := Header{SPIi: 0x1122334455667788, Exchange: IKE_SA_INIT, Flags: FlagInitiator}
	msg := Encode(h, ps)
	got, err := ParseHeader(msg)
	if err != nil {
		t.Fatal(err)
	}
	if got.SPIi != h.SPIi || got.Exchange != IKE_SA_INIT || got.NextPayload != PayloadSA || int(got.Length) != len(msg) {
		t.Fatalf("header %+v", got)
	}
	back, err := ParsePayloads(got.NextPayload, msg[HeaderLen:], nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(back) != 3 || back[2].Type != PayloadNotify {
		t.Fatalf("payloads %+v", back)
	}
	gotProps, err := ParseSA(back[0].Body)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gotProps, props) {
		t.Fatalf("SA: got %+v, want %+v", gotProps, props)
	}
	n, err := ParseNotify(back[2].Body)
	if err != nil || n.Type != NotifyCookie || string(n.Data) != "cookie" {
		t.Fatalf("notify %+v %v", n, err)
	}
}

func TestParseErrors(t *testing.T) {
	good := Encode(Header{SPIi: 1, Exchange: IKE_SA_INIT}, []Payload{{Type: PayloadNonce, Body: make([]byte, 16)}})
	tests := []struct {
		name string
		msg  []byte
	}{
		{"short", good[:20]},
		{"length field", append(append([]byte(nil), good...), 0)},
		{"payload length beyond", func() []byte { b := append([]byte(nil), good...); b[HeaderLen+3] = 200; return b }()},
		{"payload length below 4", func() []byte { b := append([]byte(nil), good...); b[HeaderLen+3] = 2; return b }()},
		{"version 1", func() []byte { b := append([]byte(nil), good...); b[17] = 0x10; return b }()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := ParseHeader(tc.msg)
			if err == nil {
				_, err = ParsePayloads(h.NextPayload, tc.msg[HeaderLen:], nil)
			}
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %v, want ErrMalformed", err)
			}
		})
	}
}

func TestSelectors(t *testing.T) {
	tests := []struct {
		prefix string
		start  string
		end    string
	}{
		{"10.1.0.0/24", "10.1.0.0", "10.1.0.255"},
		{"10.1.2.3/32", "10.1.2.3", "10.1.2.3"},
		{"0.0.0.0/0", "0.0.0.0", "255.255.255.255"},
		{"fd00::/64", "fd00::", "fd00::ffff:ffff:ffff:ffff"},
	}
	for _, tc := range tests {
		s := SelectorFromPrefix(netip.MustParsePrefix(tc.prefix))
		if s.Start.String() != tc.start || s.End.String() != tc.end {
			t.Errorf("%s: got %s-%s, want %s-%s", tc.prefix, s.Start, s.End, tc.start, tc.end)
		}
		back, err := ParseTS(AppendTS(nil, []Selector{s}))
		if err != nil || len(back) != 1 || back[0] != s {
			t.Errorf("%s: round trip %+v %v", tc.prefix, back, err)
		}
		if got := s.Prefixes(); len(got) != 1 || got[0] != netip.MustParsePrefix(tc.prefix) {
			t.Errorf("%s: prefixes %v", tc.prefix, got)
		}
	}
	// A range that is not one prefix.
	s := Selector{Start: netip.MustParseAddr("10.0.0.1"), End: netip.MustParseAddr("10.0.0.6")}
	if got, want := s.Prefixes(), "[10.0.0.1/32 10.0.0.2/31 10.0.0.4/31 10.0.0.6/32]"; fmtPrefixes(got) != want {
		t.Errorf("range prefixes %s, want %s", fmtPrefixes(got), want)
	}
}

func fmtPrefixes(ps []netip.Prefix) string {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, p := range ps {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(p.String())
	}
	b.WriteByte(']')
	return b.String()
}

// TestPRFPlus checks prf+ against RFC 4231 test case 2's HMAC-SHA-256
// (prf+ with one block is HMAC(key, seed | 0x01)).
func TestPRFPlus(t *testing.T) {
	prf := PRF(PRF_HMAC_SHA2_256)
	want, _ := hex.DecodeString("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
	if got := prf.Sum([]byte("Jefe"), []byte("what do ya want "), []byte("for nothing?")); !bytes.Equal(got, want) {
		t.Fatalf("HMAC-SHA-256 = %x", got)
	}
	out := prf.Plus([]byte("k"), []byte("seed"), 80)
	t1 := prf.Sum([]byte("k"), []byte("seed"), []byte{1})
	t2 := prf.Sum([]byte("k"), t1, []byte("seed"), []byte{2})
	t3 := prf.Sum([]byte("k"), t2, []byte("seed"), []byte{3})
	if !bytes.Equal(out, append(append(t1, t2...), t3...)[:80]) {
		t.Fatal("prf+ blocks")
	}
}

func TestSKRoundTrip(t *testing.T) {
	blk, _ := aes.NewCipher(make([]byte, 32))
	g, _ := cipher.NewGCM(blk)
	enc := &SKCipher{AEAD: g, Salt: [4]byte{1, 2, 3, 4}}
	dec := &SKCipher{AEAD: g, Salt: [4]byte{1, 2, 3, 4}}
	inner := []Payload{{Type: PayloadIDi, Body: IDBody(IDFQDN, []byte("a"))}, {Type: PayloadAUTH, Body: AUTHBody(AuthPSK, make([]byte, 32))}}
	msg := enc.Seal(Header{SPIi: 1, SPIr: 2, Exchange: IKE_AUTH, MessageID: 1}, inner)
	h, err := ParseHeader(msg)
	if err != nil {
		t.Fatal(err)
	}
	outer, err := ParsePayloads(h.NextPayload, msg[HeaderLen:], nil)
	if err != nil || len(outer) != 1 || outer[0].Type != PayloadSK {
		t.Fatalf("outer %v %v", outer, err)
	}
	first := msg[len(msg)-len(outer[0].Body)-4]
	got, err := dec.Open(msg, outer[0], first)
	if err != nil || len(got) != 2 || got[1].Type != PayloadAUTH {
		t.Fatalf("inner %+v %v", got, err)
	}
	msg[len(msg)-1] ^= 1
	if _, err := dec.Open(msg, outer[0], first); err == nil {
		t.Fatal("tampered SK opened")
	}
}

// FuzzParse: no input makes the parsers panic or loop.
func FuzzParse(f *testing.F) {
	f.Add(Encode(Header{SPIi: 1, Exchange: IKE_SA_INIT}, []Payload{
		{Type: PayloadSA, Body: AppendSA(nil, []Proposal{{Num: 1, Protocol: ProtoIKE, Transforms: []Transform{{Type: TransformENCR, ID: ENCR_AES_GCM_16, KeyLen: 128}}}})},
		{Type: PayloadTSi, Body: AppendTS(nil, []Selector{SelectorFromPrefix(netip.MustParsePrefix("10.0.0.0/8"))})},
		{Type: PayloadDelete, Body: DeleteBody(ProtoESP, 5)},
		{Type: PayloadCP, Body: AppendCP(nil, CFGRequest, []CPAttr{{Type: AttrInternalIP4Address}})},
	}))
	f.Fuzz(func(t *testing.T, msg []byte) {
		h, err := ParseHeader(msg)
		if err != nil {
			return
		}
		ps, err := ParsePayloads(h.NextPayload, msg[HeaderLen:], nil)
		if err != nil {
			return
		}
		for _, p := range ps {
			switch p.Type {
			case PayloadSA:
				_, _ = ParseSA(p.Body)
			case PayloadTSi, PayloadTSr:
				if sels, err := ParseTS(p.Body); err == nil {
					for _, s := range sels {
						_ = s.Prefixes()
					}
				}
			case PayloadNotify:
				_, _ = ParseNotify(p.Body)
			case PayloadDelete:
				_, _ = ParseDelete(p.Body)
			case PayloadCP:
				_, _, _ = ParseCP(p.Body)
			case PayloadKE:
				_, _, _ = ParseKE(p.Body)
			case PayloadAUTH:
				_, _, _ = ParseAUTH(p.Body)
			}
		}
	})
}
