package wireguard

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestKeyFileFIFO is finding 6 of issue 12: a FIFO as private_key_file must
// be refused at once; opening it for reading blocked `check` and `run`
// until a writer came.
func TestKeyFileFIFO(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "key")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := parseText(t, "private_key_file: "+fifo+"\npeers:\n  - public_key: "+pubB+"\n    allowed_ips: [10.0.0.1/32]\n")
		done <- err
	}()
	select {
	case err := <-done:
		want := "protocols[2].settings.private_key_file: " + fifo + " is not a regular file but a named pipe (FIFO)"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("parse() error = %v, want it to contain %q", err, want)
		}
	case <-time.After(time.Second):
		if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Close() // release the blocked reader
		}
		<-done
		t.Fatal("parse blocked on a FIFO as private_key_file")
	}
}
