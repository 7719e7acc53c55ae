package remote

import (
	"context"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"switchyard/stats"
)

// TestAuthRefusesStrangers: a client without the transport's secret, or
// with another one, is refused on the stream and on the unary RPCs with
// Unauthenticated before protoactor reads anything, each refusal counted
// as unauthenticated; a client with the secret is served (the handshake
// answers). The transport keeps serving its real peer.
func TestAuthRefusesStrangers(t *testing.T) {
	verifyNoLeaks(t)
	tests := []struct {
		name   string
		secret string
		want   codes.Code // of the stream's first receive
	}{
		{"no secret", "", codes.Unauthenticated},
		{"wrong secret", "another-secret-0123456789", codes.Unauthenticated},
		{"a prefix of the secret", testSecret[:len(testSecret)-1], codes.Unauthenticated},
		{"the secret", testSecret, codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := dropsOf(sideB.guard)
			c := dialWithSecret(t, sideB.tr.Address, tt.secret)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			stream, err := c.client.Receive(ctx)
			if err != nil {
				t.Fatal(err)
			}
			err = stream.Send(&remote.RemoteMessage{MessageType: &remote.RemoteMessage_ConnectRequest{ConnectRequest: &remote.ConnectRequest{
				ConnectionType: &remote.ConnectRequest_ServerConnection{ServerConnection: &remote.ServerConnection{SystemId: "auth-test", Address: "127.0.0.1:9"}},
			}}})
			if err != nil && tt.want == codes.OK {
				t.Fatal(err)
			}
			resp, err := stream.Recv()
			if got := status.Code(err); got != tt.want {
				t.Fatalf("first receive: code %v (%v), want %v", got, err, tt.want)
			}
			if tt.want == codes.OK && resp.GetConnectResponse() == nil {
				t.Fatalf("handshake answered %v", resp)
			}
			_, uerr := c.client.ListProcesses(ctx, &remote.ListProcessesRequest{})
			wantUnary := codes.Unimplemented
			if tt.want == codes.Unauthenticated {
				wantUnary = codes.Unauthenticated
			}
			if got := status.Code(uerr); got != wantUnary {
				t.Errorf("ListProcesses: code %v, want %v", got, wantUnary)
			}
			want := map[stats.Reason]uint64{}
			if tt.want == codes.Unauthenticated {
				want[Unauthenticated] = 2 // the stream and the call
			} else {
				want[stats.UnknownType] = 1 // the unary RPC, refused as always
			}
			sameDrops(t, "guard", since(sideB.guard, base), want)
		})
	}
	// The real peer still gets through.
	warm := warmUp(sideA, sideB)
	if warm != nil {
		t.Fatalf("the peer after the refusals: %v", warm)
	}
}

// TestReadSecretFD: a spawned host reads its secret from a pipe; empty,
// short or multi-word secrets are refused.
func TestReadSecretFD(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{testSecret + "\n", testSecret, ""},
		{"  " + testSecret + "  \n", testSecret, ""},
		{"\n", "", "empty"},
		{"short\n", "", "5 characters, want at least 16"},
		{"two words-0123456789abcdef\n", "", "printable ASCII"},
		{strings.Repeat("x", 5000), "", "more than 4096 bytes"},
	}
	for _, tt := range tests {
		r, err := secretPipe(tt.in)
		if len(tt.in) > 4096 {
			// Larger than a secret: write it through a plain pipe.
			r, err = bigPipe(tt.in)
		}
		if err != nil {
			t.Fatal(err)
		}
		// ReadSecretFD takes the descriptor and closes it: hand it a
		// duplicate, so r's own close is not a second close of a number
		// that may be reused.
		fd, err := syscall.Dup(int(r.Fd()))
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		got, err := ReadSecretFD(fd)
		if got != tt.want || (err == nil) != (tt.err == "") || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("ReadSecretFD(%.20q) = %q, %v; want %q, error containing %q", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func bigPipe(s string) (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	go func() { _, _ = w.WriteString(s); w.Close() }()
	return r, nil
}
