package main

// switchyard genkey and pubkey: WireGuard keys as `wg genkey` and
// `wg pubkey` make them (base64 of 32 bytes, one line).

import (
	"bufio"
	"crypto/rand"
	"fmt"
	"io"
	"os"

	"switchyard/protocols/wireguard"
)

// runGenkey prints a new private key: 32 random bytes clamped for
// Curve25519, as `wg genkey` does.
func runGenkey(args []string) int {
	if len(args) != 0 {
		fmt.Fprintln(os.Stderr, "usage: switchyard genkey")
		return 2
	}
	k, err := genkey(rand.Reader)
	if err != nil {
		fmt.Fprintf(os.Stderr, "switchyard genkey: %v\n", err)
		return 1
	}
	fmt.Println(k)
	return 0
}

func genkey(r io.Reader) (wireguard.Key, error) {
	var k wireguard.Key
	if _, err := io.ReadFull(r, k[:]); err != nil {
		return k, fmt.Errorf("random bytes: %w", err)
	}
	k[0] &= 248
	k[31] = (k[31] & 127) | 64
	return k, nil
}

// runPubkey reads a private key from stdin and prints its public key.
func runPubkey(args []string) int {
	if len(args) != 0 {
		fmt.Fprintln(os.Stderr, "usage: switchyard pubkey < private.key")
		return 2
	}
	pub, err := pubkey(os.Stdin)
	if err != nil {
		fmt.Fprintf(os.Stderr, "switchyard pubkey: %v\n", err)
		return 1
	}
	fmt.Println(pub)
	return 0
}

func pubkey(r io.Reader) (wireguard.Key, error) {
	line, err := bufio.NewReader(io.LimitReader(r, 1<<10)).ReadString('\n')
	if err != nil && err != io.EOF {
		return wireguard.Key{}, fmt.Errorf("read stdin: %w", err)
	}
	priv, err := wireguard.ParseKey(line)
	if err != nil {
		return wireguard.Key{}, fmt.Errorf("private key on stdin %v", err)
	}
	return wireguard.PublicKey(priv), nil
}
