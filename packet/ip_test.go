package packet

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
)

func v4(total int) []byte {
	p := make([]byte, total)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:4], uint16(total))
	copy(p[12:16], []byte{10, 0, 0, 1})
	copy(p[16:20], []byte{10, 0, 0, 2})
	return p
}

func v6(payload int) []byte {
	p := make([]byte, IPv6HeaderBytes+payload)
	p[0] = 0x60
	binary.BigEndian.PutUint16(p[4:6], uint16(payload))
	p[24], p[39] = 0xfd, 2
	return p
}

func TestCheck(t *testing.T) {
	badIHL := v4(40)
	badIHL[0] = 0x44
	tests := []struct {
		name string
		pkt  []byte
		want error
	}{
		{"ipv4 ok", v4(60), nil},
		{"ipv6 ok", v6(20), nil},
		{"empty", nil, ErrTooShort},
		{"ipv4 truncated header", v4(60)[:19], ErrTooShort},
		{"ipv4 truncated payload", v4(60)[:50], ErrBadTotalLen},
		{"ipv4 ihl 16", badIHL, ErrBadIHL},
		{"ipv6 truncated", v6(20)[:50], ErrBadTotalLen},
		{"version 5", []byte{0x50, 1, 2, 3}, ErrBadVersion},
	}
	for _, tt := range tests {
		if got := Check(tt.pkt); !errors.Is(got, tt.want) {
			t.Errorf("%s: Check() = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestDestination(t *testing.T) {
	tests := []struct {
		pkt    []byte
		want   netip.Addr
		wantOK bool
	}{
		{v4(20), netip.MustParseAddr("10.0.0.2"), true},
		{v6(0), netip.MustParseAddr("fd00::2"), true},
		{[]byte{0x45, 0}, netip.Addr{}, false},
		{nil, netip.Addr{}, false},
	}
	for _, tt := range tests {
		got, ok := Destination(tt.pkt)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("Destination() = %v, %v; want %v, %v", got, ok, tt.want, tt.wantOK)
		}
	}
	if n := testing.AllocsPerRun(100, func() { Destination(v6buf) }); n != 0 {
		t.Fatalf("Destination allocates %v times", n)
	}
}

var v6buf = v6(0)

func TestChecksumKnownHeader(t *testing.T) {
	// RFC 1071 example header with its checksum zeroed; the known answer is 0xb861.
	h := []byte{0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0, 0, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7}
	if got, want := Checksum(h, 0), uint16(0xb861); got != want {
		t.Fatalf("Checksum = %#04x, want %#04x", got, want)
	}
}
