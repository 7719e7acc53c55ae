package remote

// A workaround for a connection leak in protoactor-go's endpoint writer
// (remote/endpoint_writer.go, initializeInternal): it dials with grpc.Dial,
// keeps the ClientConn, and returns without closing it when opening the
// stream or the connect handshake on it fails; its retry dials again and
// overwrites the field. Each failed attempt — a protocol host killed while
// the daemon reconnects — left a ClientConn and its goroutines (gRPC's
// callback serializers) behind for the life of the process.
//
// The stream interceptor below sees every stream the writer opens, with its
// ClientConn: a stream that cannot be opened, or that fails, closes its
// connection. Closing twice is harmless, so the library's own close (when
// the writer stops) still works.

import (
	"context"

	"google.golang.org/grpc"
)

// closeOnFailedStream is a grpc.StreamClientInterceptor; see the file
// comment.
func closeOnFailedStream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		_ = cc.Close()
		return nil, err
	}
	return &closingStream{ClientStream: s, cc: cc}, nil
}

// closingStream closes its connection on the first failed send or receive:
// the stream is dead, and the endpoint writer would drop the connection
// without closing it.
type closingStream struct {
	grpc.ClientStream
	cc *grpc.ClientConn
}

func (s *closingStream) SendMsg(m any) error {
	err := s.ClientStream.SendMsg(m)
	if err != nil {
		_ = s.cc.Close()
	}
	return err
}

func (s *closingStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err != nil {
		_ = s.cc.Close()
	}
	return err
}
