package remote

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
)

// TestFailedStreamClosesItsConnection: a stream to an address where nothing
// listens fails to open, and the interceptor closes the ClientConn that the
// endpoint writer would have kept (and leaked).
func TestFailedStreamClosesItsConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now

	for _, tc := range []struct {
		name        string
		interceptor bool
		want        connectivity.State
	}{
		{"with the interceptor", true, connectivity.Shutdown},
		{"without it (protoactor's own behaviour)", false, connectivity.TransientFailure},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
			if tc.interceptor {
				opts = append(opts, grpc.WithStreamInterceptor(closeOnFailedStream))
			}
			cc, err := grpc.NewClient("passthrough:///"+addr, opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err = cc.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, "/remote.Remoting/Receive")
			if err == nil {
				t.Fatal("a stream to a closed port opened")
			}
			if got := cc.GetState(); got != tc.want && !(tc.want == connectivity.TransientFailure && got != connectivity.Shutdown) {
				t.Errorf("connection state after the failed stream = %v, want %v", got, tc.want)
			}
		})
	}
}
