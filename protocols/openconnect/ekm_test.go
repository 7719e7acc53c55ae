package openconnect

import (
	"bytes"
	"crypto/tls"
	"net"
	"testing"

	"switchyard/protocols/openconnect/cstp"
)

// The exporter computed from the key log and the sniffed ServerHello equals
// crypto/tls's own on a TLS 1.2 connection where crypto/tls allows it (with
// EMS): the formula does not depend on how the master secret was made.
func TestExportKey12MatchesCryptoTLS(t *testing.T) {
	pki := newPKI(t, t.TempDir(), net.IPv4(127, 0, 0, 1), "alice")
	cert, err := tls.LoadX509KeyPair(pki.certFile, pki.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, suite := range []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384} {
		t.Run(tls.CipherSuiteName(suite), func(t *testing.T) {
			cc, sc := net.Pipe()
			defer cc.Close()
			defer sc.Close()
			srv := tls.Server(sc, &tls.Config{Certificates: []tls.Certificate{cert}, MaxVersion: tls.VersionTLS12,
				CipherSuites: []uint16{suite}})
			go func() { _ = srv.Handshake() }()
			kl := &keyLog{}
			sniffer := &wireConn{Conn: cc}
			cli := tls.Client(sniffer, &tls.Config{InsecureSkipVerify: true, KeyLogWriter: kl, MaxVersion: tls.VersionTLS12})
			if err := cli.Handshake(); err != nil {
				t.Fatal(err)
			}
			cs := cli.ConnectionState()
			want, err := cs.ExportKeyingMaterial(cstp.ExporterLabel, nil, cstp.ExporterBytes)
			if err != nil {
				t.Fatal(err)
			}
			got, err := exportKey12(cs, kl, sniffer)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("got %x, want %x", got, want)
			}
			// What the session uses: crypto/tls's own here.
			if k, err := exportKey(cli, kl, sniffer); err != nil || !bytes.Equal(k, want) {
				t.Errorf("exportKey: got %x %v", k, err)
			}
		})
	}
}

func TestExportKey12WithoutKeyLog(t *testing.T) {
	if _, err := exportKey12(tls.ConnectionState{}, &keyLog{}, &wireConn{}); err == nil {
		t.Error("got no error without a key log")
	}
}
