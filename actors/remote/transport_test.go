package remote

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"go.uber.org/zap"

	"switchyard/stats"
)

// TestStartRefuses: a listener that is not on loopback needs mutual TLS,
// and a taken port or unreadable TLS files are errors, not protoactor's
// panic. None of these starts anything.
func TestStartRefuses(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	missing := TLSFiles{CA: "/nonexistent/ca.pem", Cert: "/nonexistent/cert.pem", Key: "/nonexistent/key.pem"}
	cases := []struct {
		name    string
		listen  string
		files   TLSFiles
		wantErr string
	}{
		{"any address without TLS", "0.0.0.0:7100", TLSFiles{}, "mutual TLS required"},
		{"a LAN address without TLS", "10.1.2.3:7100", TLSFiles{}, "mutual TLS required"},
		{"IPv6 any without TLS", "[::]:7100", TLSFiles{}, "mutual TLS required"},
		{"only part of TLS", "0.0.0.0:7100", TLSFiles{CA: "ca.pem", Cert: "cert.pem"}, "mutual TLS required"},
		{"TLS files missing", "0.0.0.0:7100", missing, "remote tls"},
		{"port taken", taken.Addr().String(), TLSFiles{}, "remote listen"},
	}
	system := quietSystem()
	defer system.Shutdown()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tr, err := Start(system, netip.MustParseAddrPort(c.listen), Security{TLS: c.files}, NewGuard(&stats.Counters{}, zap.NewNop()))
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("err = %v, want one about %q", err, c.wantErr)
			}
			if tr != nil {
				t.Error("a refused Start returned a transport")
			}
		})
	}
}
