package main

import (
	"bytes"
	"crypto/rand"
	"os/exec"
	"strings"
	"testing"

	"switchyard/protocols/wireguard"
)

// TestGenkeyPubkeyMatchWG: our genkey makes clamped keys, and our pubkey of
// a key (ours or wg's) equals `wg pubkey` of it.
func TestGenkeyPubkeyMatchWG(t *testing.T) {
	k, err := genkey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if k[0]&7 != 0 || k[31]&128 != 0 || k[31]&64 == 0 {
		t.Errorf("genkey %s is not clamped", k)
	}
	needTool(t, "wg") // to compare with it
	out, err := exec.Command("wg", "genkey").Output()
	if err != nil {
		t.Fatalf("wg genkey: %v", err)
	}
	for _, priv := range []string{k.String(), strings.TrimSpace(string(out)),
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE=", // unclamped: wg clamps too
		"//////////////////////////////////////////8="} {
		cmd := exec.Command("wg", "pubkey")
		cmd.Stdin = strings.NewReader(priv + "\n")
		want, err := cmd.Output()
		if err != nil {
			t.Fatalf("wg pubkey: %v", err)
		}
		got, err := pubkey(strings.NewReader(priv + "\n"))
		if err != nil {
			t.Fatalf("pubkey(%s): %v", priv, err)
		}
		if got.String() != strings.TrimSpace(string(want)) {
			t.Errorf("pubkey(%s) = %s, wg pubkey = %s", priv, got, bytes.TrimSpace(want))
		}
	}
}

func TestPubkeyBadInput(t *testing.T) {
	for _, in := range []string{"", "hello\n", "AAAA\n"} {
		if _, err := pubkey(strings.NewReader(in)); err == nil {
			t.Errorf("pubkey(%q) accepted", in)
		}
	}
	if _, err := wireguard.ParseKey("  " + strings.Repeat("A", 43) + "=\n"); err != nil {
		t.Errorf("ParseKey with spaces: %v", err)
	}
}
