package remote

// The transport: protoactor remote over gRPC, with the guard installed, the
// message limit raised, the codec that does not copy payloads
// (grpccodec.go) and its buffer pool, and mutual TLS when configured.

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/experimental"

	"switchyard/config"
)

// TLSFiles names the PEM files of mutual TLS: the CA that signs every
// peer's certificate, and this process's certificate and key. Certificates
// must carry the peers' listen IPs as IP SANs.
type TLSFiles struct {
	CA, Cert, Key string
}

// Enabled reports whether all three files are set.
func (t TLSFiles) Enabled() bool { return t.CA != "" && t.Cert != "" && t.Key != "" }

// Security is how the processes of one daemon authenticate each other
// (auth.go): mutual TLS, a shared secret, or both. A listener that is not
// on loopback needs TLS.
type Security struct {
	TLS    TLSFiles
	Secret string
}

// Transport is a started remote.
type Transport struct {
	Remote  *remote.Remote
	Address string // the address peers reach this process at
}

// Start starts protoactor remote on system, listening on listen (port 0:
// any free port), with guard filtering what peers send and sec
// authenticating them. A non-loopback listen address without TLS is refused
// (config check refuses it first).
func Start(system *actor.ActorSystem, listen netip.AddrPort, sec Security, guard *Guard) (_ *Transport, err error) {
	files := sec.TLS
	if !listen.Addr().IsLoopback() && !files.Enabled() {
		return nil, fmt.Errorf("remote listen %s is not a loopback address: mutual TLS required", listen)
	}
	if sec.Secret != "" {
		if err := checkSecret(sec.Secret); err != nil {
			return nil, fmt.Errorf("remote secret: %w", err)
		}
	}
	guard.secret = sec.Secret
	streamInterceptors := []grpc.StreamClientInterceptor{closeOnFailedStream} // dialfix.go
	if sec.Secret != "" {
		streamInterceptors = append([]grpc.StreamClientInterceptor{withSecret(sec.Secret)}, streamInterceptors...)
	}
	serverOpts := append(guard.ServerOptions(),
		grpc.InitialWindowSize(FlowWindowBytes),
		grpc.InitialConnWindowSize(FlowWindowBytes),
		grpc.ReadBufferSize(SocketBufferBytes),
		grpc.WriteBufferSize(SocketBufferBytes),
		grpc.ForceServerCodecV2(grpcCodec),
		experimental.BufferPool(bufferPool),
	)
	dialOpts := []grpc.DialOption{
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxGRPCMessageBytes), grpc.MaxCallSendMsgSize(MaxGRPCMessageBytes)),
		grpc.WithInitialWindowSize(FlowWindowBytes),
		grpc.WithInitialConnWindowSize(FlowWindowBytes),
		grpc.WithReadBufferSize(SocketBufferBytes),
		grpc.WithWriteBufferSize(SocketBufferBytes),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(grpcCodec)),
		experimental.WithBufferPool(bufferPool),
		grpc.WithChainStreamInterceptor(streamInterceptors...),
	}
	if files.Enabled() {
		server, client, err := tlsConfigs(files)
		if err != nil {
			return nil, err
		}
		serverOpts = append(serverOpts, grpc.Creds(credentials.NewTLS(server)))
		dialOpts = append(dialOpts, grpc.WithTransportCredentials(credentials.NewTLS(client)))
	} else {
		dialOpts = append(dialOpts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	// Fail with an error, not remote.Start's panic, when the port is taken.
	if listen.Port() != 0 {
		l, err := net.Listen("tcp", listen.String())
		if err != nil {
			return nil, fmt.Errorf("remote listen %s: %w", listen, err)
		}
		l.Close()
	}
	cfg := remote.Configure(listen.Addr().String(), int(listen.Port()),
		remote.WithServerOptions(serverOpts...),
		remote.WithDialOptions(dialOpts...),
		remote.WithEndpointWriterBatchSize(EndpointWriterBatch),
		remote.WithEndpointWriterQueueSize(EndpointWriterQueue),
	)
	r := remote.NewRemote(system, cfg)
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("start remote on %s: %v", listen, p)
		}
	}()
	r.Start()
	return &Transport{Remote: r, Address: system.Address()}, nil
}

// Stop closes the listener and every connection. It is protoactor's
// non-graceful shutdown on purpose: the graceful one writes the endpoint
// reader's state and the endpoint manager's connection map while their
// goroutines read them (data races found by -race), and waits up to 10 s for
// peers that may be stopped. What is in flight is lost, as on any
// connection close; the data path above was stopped first.
func (t *Transport) Stop() {
	t.Remote.Shutdown(false)
}

func tlsConfigs(files TLSFiles) (server, client *tls.Config, err error) {
	// Regular files only: a FIFO named by mistake must not block the start.
	var pem [3][]byte
	for i, path := range []string{files.Cert, files.Key, files.CA} {
		if pem[i], err = config.ReadRegularFile(path, config.MaxTLSFileBytes); err != nil {
			return nil, nil, fmt.Errorf("remote tls: %w", err)
		}
	}
	cert, err := tls.X509KeyPair(pem[0], pem[1])
	if err != nil {
		return nil, nil, fmt.Errorf("remote tls: %s, %s: %w", files.Cert, files.Key, err)
	}
	caPEM := pem[2]
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, nil, errors.New("remote tls: no certificate in " + strconv.Quote(files.CA))
	}
	server = &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	}
	client = &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		MinVersion:   tls.VersionTLS13,
	}
	return server, client, nil
}
