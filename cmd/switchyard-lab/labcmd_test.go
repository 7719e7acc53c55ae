package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"switchyard/internal/lab"
)

// buildSelf builds this command into a temporary directory.
func buildSelf(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "switchyard-lab")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestLabTools checks the built-in traffic tools on loopback: what tcp-send
// sends, tcp-recv receives, hashed alike. It needs no root.
func TestLabTools(t *testing.T) {
	bin := buildSelf(t)
	for _, tc := range []struct {
		name  string
		bytes int64
	}{
		{"one byte", 1},
		{"a chunk and a tail", labChunkBytes + 7},
		{"16 MiB", 16 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := "127.0.0.1:" + freePort(t)
			recv := exec.Command(bin, "tcp-recv", "--listen", addr, "--expect", fmt.Sprint(tc.bytes), "--timeout", "20s")
			var rOut strings.Builder
			recv.Stdout = &rOut
			if err := recv.Start(); err != nil {
				t.Fatal(err)
			}
			sOut, err := exec.Command(bin, "tcp-send", "--to", addr, "--bytes", fmt.Sprint(tc.bytes), "--seed", "7").Output()
			if err != nil {
				_ = recv.Process.Kill()
				t.Fatalf("tcp-send: %v", err)
			}
			if err := recv.Wait(); err != nil {
				t.Fatalf("tcp-recv: %v", err)
			}
			var got lab.Transfer
			if err := lab.DecodeJSONLine(string(sOut), &got.Sent); err != nil {
				t.Fatal(err)
			}
			if err := lab.DecodeJSONLine(rOut.String(), &got.Received); err != nil {
				t.Fatal(err)
			}
			if !got.Match() || got.Sent.Bytes != tc.bytes {
				t.Errorf("sent %d bytes %s, received %d bytes %s; want %d bytes, equal hashes",
					got.Sent.Bytes, got.Sent.SHA256, got.Received.Bytes, got.Received.SHA256, tc.bytes)
			}
		})
	}
}

func TestXorshift(t *testing.T) {
	a, b, c := make([]byte, 1000), make([]byte, 1000), make([]byte, 1000)
	newXorshift4(42).fill(a)
	newXorshift4(42).fill(b)
	newXorshift4(43).fill(c)
	if string(a) != string(b) {
		t.Error("seed 42 twice: different bytes, want the same")
	}
	if string(a) == string(c) {
		t.Error("seeds 42 and 43: the same bytes, want different")
	}
	if tail := a[len(a)-8:]; string(tail) == string(make([]byte, 8)) {
		t.Errorf("the tail after the last 32-byte step is %x, want it filled", tail)
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	port, err := lab.FreeTCPPort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}
