package main

// `switchyard-lab hostile`: a hidden test client that speaks protoactor remote
// to a protocol host's or a daemon's remote listener and sends what an
// honest peer never would (issue 4's hostile-input tests):
//
//	unknown-type        one envelope of a type name no process registers
//	garbage-msgpack     switchyard.Envelope BATCHes whose msgpack payloads are
//	                    truncated or garbage, to the receiver sy-in/<protocol>
//	oversized-envelope  one switchyard.Envelope whose payload is above
//	                    MaxEnvelopeBytes
//	oversized-grpc      one gRPC message above MaxGRPCMessageBytes, made of
//	                    envelopes each within the envelope limit
//	unary               the unary RPCs ListProcesses and GetProcessDiagnostics
//	                    (protoactor's server panics on them: "implement me")
//	open                an OPEN of instance --open-name to a host's control
//	                    actor, from a sender that is not the instance's
//	                    daemon: a take-over of a live tunnel (issue 12)
//
// With --secret-file it presents that secret as a daemon's processes do
// (actors/remote/auth.go); without, a server that requires one ends the
// stream with Unauthenticated and the report says "refused: Unauthenticated".
//
// Like the real peer it first sends ConnectRequest{ServerConnection} and
// waits for the ConnectResponse; then it sends the case as one MessageBatch,
// half-closes the stream and waits for the server to end it, so the server
// has read everything when the command returns. It prints one JSON line
// (what it sent and how the server answered) and exits 0 when the server
// was reached, 1 when it could not connect (a refused TLS handshake, say),
// 2 on a usage error. Whether the input was rejected and counted is for the
// caller to check in the target's stats.

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"switchyard/internal/lab"
	"time"

	protoactor "github.com/asynkron/protoactor-go/actor"
	protoremote "github.com/asynkron/protoactor-go/remote"
	"github.com/vmihailenco/msgpack/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"switchyard/actors/remote"
	"switchyard/actors/remote/wire"
)

// Limits of the hostile client, each with its unit and reason.
const (
	// hostileTimeout (20 s) bounds the whole exchange by default: the
	// largest case is one 17 MiB message over loopback.
	hostileTimeout = 20 * time.Second

	// hostileMaxSend (64 MiB) is the client's own gRPC send limit: above the
	// oversized-grpc message, so the server, not the client, refuses it.
	hostileMaxSend = 4 * remote.MaxGRPCMessageBytes

	// hostileUnknownType is a type name no process registers.
	hostileUnknownType = "switchyard.hostile.NoSuchType"
)

// hostileCases are the cases, in the order of the usage text.
var hostileCases = []string{"unknown-type", "garbage-msgpack", "oversized-envelope", "oversized-grpc", "unary", "open"}

// errConnect marks a failure to reach the server at all (exit code 1).
var errConnect = errors.New("connect")

func runHostile(args []string) int {
	fs := flag.NewFlagSet("hostile", flag.ContinueOnError)
	addr := fs.String("addr", "", "ip:port of a host's or daemon's remote listener (required)")
	which := fs.String("case", "", "what to send: "+strings.Join(hostileCases, ", "))
	target := fs.String("target", "sy-in/peer", "process id the batch is addressed to")
	pidAddr := fs.String("pid-address", "", "address in the target PID (default: --addr, the server's own address)")
	ca := fs.String("tls-ca", "", "PEM file of the CA that signs the server's certificate (TLS)")
	cert := fs.String("tls-cert", "", "PEM file of a client certificate (mutual TLS)")
	key := fs.String("tls-key", "", "PEM file of the client certificate's key")
	timeout := fs.Duration("timeout", hostileTimeout, "give up after this long")
	secretFile := fs.String("secret-file", "", "present the secret in this file, as the daemon's processes do")
	secretText := fs.String("secret", "", "present this secret (a wrong one, say)")
	openName := fs.String("open-name", "peer", "the instance the open case re-opens")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	known := false
	for _, c := range hostileCases {
		known = known || c == *which
	}
	if *addr == "" || !known {
		fmt.Fprintf(os.Stderr, "switchyard-lab hostile: --addr and --case (%s) are required\n", strings.Join(hostileCases, ", "))
		return 2
	}
	if (*cert == "") != (*key == "") {
		fmt.Fprintln(os.Stderr, "switchyard-lab hostile: --tls-cert and --tls-key go together")
		return 2
	}
	creds, err := hostileCreds(*ca, *cert, *key)
	if err != nil {
		fmt.Fprintf(os.Stderr, "switchyard-lab hostile: %v\n", err)
		return 2
	}
	if *pidAddr == "" {
		*pidAddr = *addr
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	secret := *secretText
	if *secretFile != "" {
		b, err := os.ReadFile(*secretFile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "switchyard-lab hostile: %v\n", err)
			return 2
		}
		secret = strings.TrimSpace(string(b))
	}
	if secret != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, remote.SecretMetadataKey, secret)
	}
	tgt := &protoactor.PID{Address: *pidAddr, Id: *target}
	if *which == "open" {
		tgt.Id = remote.HostActorID
	}
	rep, err := hostile(ctx, *addr, *which, *openName, tgt, creds)
	if err != nil {
		fmt.Fprintf(os.Stderr, "switchyard-lab hostile %s: %v\n", *which, err)
		return 1
	}
	if err := printJSON(rep); err != nil {
		return 1
	}
	return 0
}

// hostileCreds are plaintext credentials, or TLS trusting ca with an
// optional client certificate.
func hostileCreds(ca, cert, key string) (credentials.TransportCredentials, error) {
	if ca == "" && cert == "" {
		return insecure.NewCredentials(), nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS13}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no certificate in %s", ca)
		}
	}
	if cert != "" {
		c, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	return credentials.NewTLS(cfg), nil
}

// hostile connects to addr and sends case which.
func hostile(ctx context.Context, addr, which, openName string, target *protoactor.PID, creds credentials.TransportCredentials) (lab.HostileReport, error) {
	rep := lab.HostileReport{Case: which, Addr: addr}
	conn, err := grpc.DialContext(ctx, addr,
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(hostileMaxSend), grpc.MaxCallRecvMsgSize(hostileMaxSend)))
	if err != nil {
		return rep, fmt.Errorf("%w: dial %s: %v", errConnect, addr, err)
	}
	defer conn.Close()
	client := protoremote.NewRemotingClient(conn)

	if which == "unary" {
		return hostileUnary(ctx, client, target, rep)
	}
	rep.Target = target.Id
	mb, err := hostileBatch(which, openName, target)
	if err != nil {
		return rep, err
	}
	rep.Messages = len(mb.Envelopes)
	for _, e := range mb.Envelopes {
		rep.Bytes += len(e.MessageData)
	}

	stream, err := client.Receive(ctx)
	if err != nil {
		return rep, fmt.Errorf("%w: open stream: %v", errConnect, err)
	}
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	if err := stream.Send(&protoremote.RemoteMessage{MessageType: &protoremote.RemoteMessage_ConnectRequest{
		ConnectRequest: &protoremote.ConnectRequest{ConnectionType: &protoremote.ConnectRequest_ServerConnection{
			ServerConnection: &protoremote.ServerConnection{SystemId: "hostile-" + hex.EncodeToString(id), Address: "hostile:0"},
		}},
	}}); err != nil && !errors.Is(err, io.EOF) {
		return rep, fmt.Errorf("%w: send ConnectRequest: %v", errConnect, err)
	}
	// io.EOF from Send: the server already ended the stream (a refusal
	// can arrive before the first message is sent); Recv has its status.
	resp, err := stream.Recv()
	if status.Code(err) == codes.Unauthenticated {
		rep.Outcome = "refused: Unauthenticated: " + status.Convert(err).Message()
		return rep, nil
	}
	if err != nil {
		return rep, fmt.Errorf("%w: no ConnectResponse: %v", errConnect, err)
	}
	cr := resp.GetConnectResponse()
	if cr == nil {
		return rep, fmt.Errorf("%w: got %T, want a ConnectResponse", errConnect, resp.MessageType)
	}
	if cr.Blocked {
		return rep, fmt.Errorf("%w: blocked by the server", errConnect)
	}

	if err := stream.Send(&protoremote.RemoteMessage{MessageType: &protoremote.RemoteMessage_MessageBatch{MessageBatch: mb}}); err != nil && !errors.Is(err, io.EOF) {
		rep.Outcome = "send failed: " + err.Error()
		return rep, nil
	}
	_ = stream.CloseSend()
	// The server reads in order: when it ends the stream, it has read (and
	// filtered or delivered) the batch.
	for {
		m, err := stream.Recv()
		if err == nil {
			if m.GetDisconnectRequest() != nil {
				rep.Outcome = "server sent DisconnectRequest"
			}
			continue
		}
		if errors.Is(err, io.EOF) {
			if rep.Outcome == "" {
				rep.Outcome = "stream closed by the server"
			}
		} else {
			rep.Outcome = "stream ended: " + status.Code(err).String() + ": " + status.Convert(err).Message()
		}
		return rep, nil
	}
}

// hostileUnary calls the unary RPCs protoactor's server leaves
// unimplemented (they panic there).
func hostileUnary(ctx context.Context, client protoremote.RemotingClient, target *protoactor.PID, rep lab.HostileReport) (lab.HostileReport, error) {
	var outcomes []string
	call := func(name string, err error) error {
		rep.Messages++
		code := status.Code(err)
		outcomes = append(outcomes, name+": "+code.String())
		if code == codes.Unavailable {
			return fmt.Errorf("%w: %s: %v", errConnect, name, err)
		}
		return nil
	}
	_, err := client.ListProcesses(ctx, &protoremote.ListProcessesRequest{Pattern: ""})
	if err := call("ListProcesses", err); err != nil {
		return rep, err
	}
	_, err = client.GetProcessDiagnostics(ctx, &protoremote.GetProcessDiagnosticsRequest{Pid: target})
	if err := call("GetProcessDiagnostics", err); err != nil {
		return rep, err
	}
	rep.Outcome = strings.Join(outcomes, "; ")
	return rep, nil
}

// hostileBatch builds the MessageBatch of a stream case.
// openName is the instance the open case re-opens.
func hostileBatch(which, openName string, target *protoactor.PID) (*protoremote.MessageBatch, error) {
	envelopeType := string(proto.MessageName(&wire.Envelope{}))
	var typeName string
	var datas [][]byte
	batch := func(seq uint64, payload []byte) error {
		b, err := proto.Marshal(&wire.Envelope{Kind: wire.Kind_BATCH, Seq: seq, Payload: payload})
		datas = append(datas, b)
		return err
	}
	switch which {
	case "unknown-type":
		typeName = hostileUnknownType
		datas = [][]byte{[]byte("not a message anyone knows")}
	case "garbage-msgpack":
		typeName = envelopeType
		for i, g := range lab.HostileGarbage {
			if err := batch(uint64(i+1), g.Payload); err != nil {
				return nil, err
			}
		}
	case "oversized-envelope":
		// A well-formed batch of 64 000-byte packets, one packet more than
		// fits in MaxEnvelopeBytes.
		typeName = envelopeType
		const pkt = 64_000
		if err := batch(1, msgpackBatch(remote.MaxEnvelopeBytes/pkt+1, pkt)); err != nil {
			return nil, err
		}
	case "oversized-grpc":
		// Envelopes each within the envelope limit (zero bytes: malformed
		// if a receiver ever decoded them), more than MaxGRPCMessageBytes
		// together.
		typeName = envelopeType
		payload := make([]byte, remote.MaxEnvelopeBytes-64)
		for i := 0; i < remote.MaxGRPCMessageBytes/len(payload)+2; i++ {
			if err := batch(uint64(i+1), payload); err != nil {
				return nil, err
			}
		}
	case "open":
		// A udp instance under the live one's name, bound to port 53, its
		// peer the attacker: what a take-over would look like.
		typeName = envelopeType
		o, err := msgpack.Marshal(remote.Open{Name: openName, Type: "udp",
			Settings: []byte("listen: 0.0.0.0:53\npeer: 192.0.2.66:53\n"), SettingsPath: "protocols[0].settings",
			MaxBatch: 128, Capacity: 64, Policy: "drop_newest", Window: 32, MaxRestarts: 3})
		if err != nil {
			return nil, err
		}
		b, err := proto.Marshal(&wire.Envelope{Kind: wire.Kind_OPEN, Payload: o})
		if err != nil {
			return nil, err
		}
		datas = [][]byte{b}
	default:
		return nil, fmt.Errorf("unknown case %q", which)
	}
	mb := &protoremote.MessageBatch{TypeNames: []string{typeName}, Targets: []*protoactor.PID{target}}
	sender := int32(0)
	if which == "open" {
		// The host answers an OPEN to its sender; this one is nobody.
		mb.Senders = []*protoactor.PID{{Address: "192.0.2.66:9", Id: "hostile"}}
		sender = 1
	}
	for _, d := range datas {
		mb.Envelopes = append(mb.Envelopes, &protoremote.MessageEnvelope{TypeId: 0, MessageData: d, Target: 0, Sender: sender})
	}
	return mb, nil
}

// msgpackBatch is a msgpack array of n bin values of size zero bytes each.
func msgpackBatch(n, size int) []byte {
	b := []byte{0xdd, 0, 0, 0, 0} // array32
	binary.BigEndian.PutUint32(b[1:], uint32(n))
	for range n {
		h := []byte{0xc6, 0, 0, 0, 0} // bin32
		binary.BigEndian.PutUint32(h[1:], uint32(size))
		b = append(b, h...)
		b = append(b, make([]byte, size)...)
	}
	return b
}
