package node

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Sizes of TestAdminConnectionLimits.
const (
	// adminTestConns (3000) is what issue 12 saw stay open: connections
	// that got a 401, and idle ones that never sent a byte.
	adminTestConns = 3000
	// adminTestSlack (3 s) is what the test allows beyond the header
	// timeout for the server to close everything, on a loaded machine.
	adminTestSlack = 3 * time.Second
	// adminTestFDSettle (2 s) bounds waiting for the process's descriptors
	// to come back to their baseline once the clients closed theirs.
	adminTestFDSettle = 2 * time.Second
)

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestAdminConnectionLimits: 3 000 connections to a token-guarded admin
// endpoint — half send a request without the token and get 401, half stay
// idle. The server never holds more than AdminMaxConns of them, closes
// every one within the header timeout (a 401 at once), the process's
// descriptors come back to their baseline, and it still serves.
func TestAdminConnectionLimits(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	n, err := New(adminConfig(t, "127.0.0.1:0", true), Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := n.ServeAdmin("127.0.0.1:0", "switchyard test")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	baseline := openFDs(t)

	conns := make([]net.Conn, 0, adminTestConns)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	start := time.Now()
	for i := 0; i < adminTestConns; i++ {
		c, err := net.Dial("tcp", a.Addr())
		if err != nil {
			t.Fatalf("dial connection %d: %v", i, err)
		}
		conns = append(conns, c)
		if i%2 == 0 {
			// Past the cap the server may have closed it already.
			_, _ = io.WriteString(c, "GET /stats HTTP/1.1\r\nHost: switchyard\r\n\r\n")
		}
	}
	held := openFDs(t) - baseline - len(conns)
	t.Logf("%d connections dialled in %v; the server holds %d descriptors (cap %d)",
		len(conns), time.Since(start).Round(time.Millisecond), held, AdminMaxConns)
	if held > AdminMaxConns+1 { // +1: one accepted past the cap, about to be closed
		t.Errorf("the server holds %d connections, want at most %d", held, AdminMaxConns)
	}

	// Every connection must end from the server's side: a 401 then EOF, or
	// EOF (idle, or refused past the cap).
	dialled := time.Now()
	deadline := dialled.Add(AdminReadTimeout + adminTestSlack)
	var open, got401 atomic.Int64
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.SetReadDeadline(deadline)
			b, err := io.ReadAll(c)
			if len(b) >= 12 && string(b[:12]) == "HTTP/1.1 401" {
				got401.Add(1)
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				open.Add(1)
			}
		}()
	}
	wg.Wait()
	t.Logf("%d answered 401, %d still open %v after the last dial", got401.Load(), open.Load(), time.Since(dialled).Round(time.Millisecond))
	if open.Load() > 0 {
		t.Errorf("%d of %d connections still open %v after the last dial; want all closed by the server",
			open.Load(), len(conns), deadline.Sub(dialled))
	}
	if got401.Load() == 0 {
		t.Errorf("no connection got its 401")
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil

	var now int
	for settle := time.Now().Add(adminTestFDSettle); ; {
		if now = openFDs(t); now <= baseline || time.Now().After(settle) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("descriptors: baseline %d, now %d", baseline, now)
	if now > baseline {
		t.Errorf("open descriptors: %d, want the baseline %d", now, baseline)
	}
	if code, body := getStatus(t, "http://"+a.Addr()+"/stats", "Bearer "+adminTestToken); code != http.StatusOK {
		t.Errorf("GET /stats afterwards: %d %s, want 200", code, body)
	}
}
