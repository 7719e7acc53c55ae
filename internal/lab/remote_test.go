package lab

import (
	"crypto/tls"
	"crypto/x509"
	"net/netip"
	"os"
	"testing"
	"time"
)

func TestHostListen(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
		ok   bool
	}{
		{[]string{"/tmp/switchyard", "host", "--listen", "127.0.0.1:7100", "--pool-buffers", "1024"}, "127.0.0.1:7100", true},
		{[]string{"/tmp/switchyard", "host", "--pool-buffers", "8", "--listen=10.91.0.1:7100"}, "10.91.0.1:7100", true},
		{[]string{"/tmp/switchyard", "run", "-c", "a.yaml"}, "", false},
		{[]string{"/tmp/switchyard-lab", "tcp-recv", "--listen", "10.90.0.2:5201"}, "", false},
		{[]string{"host", "--listen", "1.2.3.4:5"}, "", false}, // "host" as the program, not the subcommand
		{[]string{"/tmp/switchyard", "host"}, "", false},
	} {
		got, ok := hostArg(tc.args, "--listen")
		if got != tc.want || ok != tc.ok {
			t.Errorf("hostArg(%q, --listen) = %q, %v; want %q, %v", tc.args, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParseProcStatParent(t *testing.T) {
	got, err := parseProcStatParent([]byte("4242 (switch yard) (x)) S 4200 4242 4200 0 -1 4194560 0 0"))
	if err != nil || got != 4200 {
		t.Errorf("parseProcStatParent = %d, %v; want 4200, nil", got, err)
	}
	if _, err := parseProcStatParent([]byte("4242 no parens")); err == nil {
		t.Error("parseProcStatParent without a command name: no error")
	}
	if ppid, err := procParent(os.Getpid()); err != nil || ppid != os.Getppid() {
		t.Errorf("procParent(self) = %d, %v; want %d", ppid, err, os.Getppid())
	}
}

func TestParsePingTrace(t *testing.T) {
	out := `PING 10.90.0.2 (10.90.0.2) 56(84) bytes of data.
[1700000000.100000] 64 bytes from 10.90.0.2: icmp_seq=1 ttl=64 time=0.4 ms
[1700000000.150000] 64 bytes from 10.90.0.2: icmp_seq=2 ttl=64 time=0.4 ms
[1700000000.400000] no answer yet for icmp_seq=3
[1700000001.900000] 64 bytes from 10.90.0.2: icmp_seq=30 ttl=64 time=0.4 ms
[1700000001.95] 64 bytes from 10.90.0.2: icmp_seq=31 ttl=64 time=0.4 ms

--- 10.90.0.2 ping statistics ---
31 packets transmitted, 4 received, 87% packet loss, time 1500ms
`
	r, err := ParsePingTrace([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(r) != 4 {
		t.Fatalf("got %d replies, want 4: %v", len(r), r)
	}
	gap, from := r.MaxGap()
	if want := 1750 * time.Millisecond; gap != want || !from.Equal(time.Unix(1700000000, 150e6)) {
		t.Errorf("MaxGap = %v from %v, want %v from 1700000000.15", gap, from, want)
	}
	kill := time.Unix(1700000000, 200e6)
	if first, ok := r.FirstAfter(kill); !ok || !first.Equal(time.Unix(1700000001, 900e6)) {
		t.Errorf("FirstAfter = %v, %v; want 1700000001.9", first, ok)
	}
	if last, ok := r.LastBefore(kill); !ok || !last.Equal(time.Unix(1700000000, 150e6)) {
		t.Errorf("LastBefore = %v, %v; want 1700000000.15", last, ok)
	}
	if _, ok := r.FirstAfter(time.Unix(1700000002, 0)); ok {
		t.Error("FirstAfter past the last reply: found one")
	}
	at := func(ms int64) time.Time { return time.Unix(1700000000, 0).Add(time.Duration(ms) * time.Millisecond) }
	for _, c := range []struct {
		name     string
		lo, hi   time.Time
		wantGap  time.Duration
		wantFrom time.Time
	}{
		{"window holding the longest gap's start", at(150), at(150), 1750 * time.Millisecond, at(150)},
		{"window before it", at(0), at(149), 50 * time.Millisecond, at(100)},
		{"window after it", at(151), at(2000), 50 * time.Millisecond, at(1900)},
		{"no reply starts a gap in it", at(1950), at(3000), 0, time.Time{}},
	} {
		gap, from := r.MaxGapStarting(c.lo, c.hi)
		if gap != c.wantGap || !from.Equal(c.wantFrom) {
			t.Errorf("%s: MaxGapStarting = %v from %v, want %v from %v", c.name, gap, from, c.wantGap, c.wantFrom)
		}
	}
}

func TestWriteTLSFiles(t *testing.T) {
	ip := netip.MustParseAddr("10.91.0.1")
	f, err := WriteTLSFiles(t.TempDir(), "t-", ip, netip.MustParseAddr("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(f.Key); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %v (%v), want 0600", st.Mode().Perm(), err)
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(f.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("no CA certificate in ca.pem")
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: ip.String(), KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			t.Errorf("verify for %s, usage %v: %v", ip, usage, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "10.91.0.2"}); err == nil {
		t.Error("certificate verifies for 10.91.0.2, which is not among its SANs")
	}
}

func TestParseListen(t *testing.T) {
	table := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1BBC 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:A1B2 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 9999 1 0000000000000000 100 0 0 10 0
   2: 0100007F:8000 0100007F:1BBC 01 00000000:00000000 00:00000000 00000000     0        0 4243 1 0000000000000000 100 0 0 10 0
`
	for _, tc := range []struct {
		inodes map[string]bool
		want   string
	}{
		{map[string]bool{"9999": true}, "127.0.0.1:41394"},
		{map[string]bool{"4242": true, "4243": true}, "127.0.0.1:7100"},
		{map[string]bool{"4243": true}, ""}, // established, not listening
	} {
		got, err := parseListen(table, tc.inodes)
		if tc.want == "" {
			if err == nil {
				t.Errorf("parseListen(%v) = %v, want an error", tc.inodes, got)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("parseListen(%v) = %v, %v; want %s", tc.inodes, got, err, tc.want)
		}
	}
}
