package remote

// Authentication between a daemon and its protocol hosts.
//
// A host's port and the daemon's remote port are reachable by every local
// user (loopback TCP has no owner). Without a check, anyone could OPEN an
// instance on a host (bind a port as the host, read a tunnel's plaintext by
// re-opening it with settings of their own) or send BATCH envelopes into the
// daemon's receivers (inject packets into its TUN). So every gRPC stream
// between the processes of one daemon carries a shared secret:
//
//  1. The daemon makes a fresh random secret when it starts (NewSecret), or
//     reads remote.secret_file when it reaches hosts it does not spawn.
//  2. A spawned host receives the secret on an inherited pipe (--secret-fd),
//     never on its command line or in its environment, which other users
//     can read in /proc. A host started by hand reads --secret-file.
//  3. Every stream a process opens carries the secret in its metadata
//     (SecretMetadataKey). The guard checks it, in constant time, before
//     protoactor reads a byte of the stream: a stream without it or with
//     another one ends with codes.Unauthenticated and is counted as
//     `unauthenticated` on the process's remote row.
//
// Mutual TLS (remote.tls) authenticates by certificate instead; with both,
// both are checked.

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"switchyard/config"
	"switchyard/stats"
)

// SecretMetadataKey is the gRPC metadata key that carries the secret.
const SecretMetadataKey = "switchyard-secret"

// SecretRandomBytes (32 bytes, 256 bits) is the entropy of a secret NewSecret
// makes; it is written as 64 hex digits.
const SecretRandomBytes = 32

// Unauthenticated counts streams refused for a missing or wrong secret.
var Unauthenticated = stats.NewReason("unauthenticated")

// NewSecret returns a fresh random secret.
func NewSecret() (string, error) {
	b := make([]byte, SecretRandomBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("make the remote secret: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// ReadSecretFD reads a secret from the file descriptor fd (the pipe a
// daemon hands a spawned host) and closes it. The secret follows the rules
// of a token file (config.ReadTokenFile): one word of at least
// config.MinTokenBytes printable characters.
func ReadSecretFD(fd int) (string, error) {
	f := os.NewFile(uintptr(fd), "secret")
	if f == nil {
		return "", fmt.Errorf("secret fd %d: not a file descriptor", fd)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, config.MaxTokenFileBytes+1))
	if err != nil {
		return "", fmt.Errorf("secret fd %d: %w", fd, err)
	}
	if len(b) > config.MaxTokenFileBytes {
		return "", fmt.Errorf("secret fd %d: more than %d bytes", fd, config.MaxTokenFileBytes)
	}
	s := strings.TrimSpace(string(b))
	if err := checkSecret(s); err != nil {
		return "", fmt.Errorf("secret fd %d: %w", fd, err)
	}
	return s, nil
}

// checkSecret checks a secret by the rules of a token (config.CheckToken).
func checkSecret(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	return config.CheckToken(s)
}

// authorized reports whether the stream's metadata carries secret.
func authorized(ctx context.Context, secret string) bool {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return false
	}
	vals := md.Get(SecretMetadataKey)
	if len(vals) != 1 {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(vals[0]), []byte(secret)) == 1
}

// errUnauthenticated is what a refused stream's peer reads.
var errUnauthenticated = status.Error(codes.Unauthenticated, "switchyard: missing or wrong remote secret")

// withSecret is a grpc.StreamClientInterceptor that puts secret into every
// stream's metadata.
func withSecret(secret string) grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		return streamer(metadata.AppendToOutgoingContext(ctx, SecretMetadataKey, secret), desc, cc, method, opts...)
	}
}
