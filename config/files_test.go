package config

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// fifoDeadline bounds how long refusing a FIFO may take. Opening one
// blocking waits for a writer forever; refusing it is a stat and an open
// that returns at once.
const fifoDeadline = time.Second

// mkfifo makes a named pipe dir/name and returns its path.
func mkfifo(t *testing.T, dir, name string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	return path
}

// within runs f and fails the test if it takes longer than fifoDeadline.
// A reader blocked on the FIFO is released by opening it for writing, so a
// failing test does not leave it behind.
func within(t *testing.T, fifo string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(fifoDeadline):
		if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
		<-done
		t.Fatalf("still blocked after %v: a FIFO was opened for reading", fifoDeadline)
		return nil
	}
}

// TestFIFORefused is finding 6 of issue 12: a FIFO as the config, the
// admin token file or a TLS key must be refused at once, not block check,
// run and reload until a writer comes.
func TestFIFORefused(t *testing.T) {
	dir := t.TempDir()
	fifo := mkfifo(t, dir, "fifo")
	cfgFile := filepath.Join(dir, "gw.yaml")
	tlsFiles(t, dir)
	notRegular := fifo + " is not a regular file but a named pipe (FIFO)"

	tests := []struct {
		name string
		run  func() error
		want string
	}{
		{"config file", func() error { _, err := Load(fifo); return err },
			"read config: " + notRegular},
		{"admin.token_file", func() error {
			_, err := Parse(cfgFile, []byte(minimal+"admin:\n  token_file: fifo\n"))
			return err
		}, cfgFile + ":4:15: admin.token_file: " + notRegular},
		{"ReadTokenFile", func() error { _, err := ReadTokenFile("fifo", cfgFile); return err },
			notRegular},
		{"remote.tls.key", func() error {
			_, err := Parse(cfgFile, []byte(minimal+"remote:\n  tls: {ca: ca.pem, cert: node.pem, key: fifo}\n"))
			return err
		}, cfgFile + ":4:42: remote.tls.key: " + notRegular},
		{"remote.tls.ca", func() error {
			_, err := Parse(cfgFile, []byte(minimal+"remote:\n  tls: {ca: fifo, cert: node.pem, key: node.key}\n"))
			return err
		}, cfgFile + ":4:13: remote.tls.ca: " + notRegular},
		{"ReadRegularFile", func() error { _, err := ReadRegularFile(fifo, 100); return err },
			notRegular},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := within(t, fifo, tt.run)
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestOpenRegularFile(t *testing.T) {
	dir := t.TempDir()
	good := writeToken(t, dir, "good", "hello", 0o600)
	link := filepath.Join(dir, "link")
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{good, link} {
		b, err := ReadRegularFile(p, 5)
		if err != nil || string(b) != "hello" {
			t.Errorf("ReadRegularFile(%s) = %q, %v", p, b, err)
		}
	}
	if _, err := ReadRegularFile(good, 4); err == nil || err.Error() != good+": larger than 4 bytes" {
		t.Errorf("ReadRegularFile over the limit: %v", err)
	}

	tests := []struct {
		path, want string
	}{
		{dir, dir + " is not a regular file but a directory"},
		{"/dev/null", "/dev/null is not a regular file but a character device"},
		{filepath.Join(dir, "nope"), filepath.Join(dir, "nope") + ": no such file or directory"},
	}
	for _, tt := range tests {
		f, _, err := OpenRegularFile(tt.path)
		if err == nil {
			f.Close()
			t.Errorf("OpenRegularFile(%s) succeeded", tt.path)
			continue
		}
		if got := err.Error(); got != tt.want {
			t.Errorf("OpenRegularFile(%s) = %q, want %q", tt.path, got, tt.want)
		}
	}
	var nr *NotRegularError
	if _, _, err := OpenRegularFile(dir); !errors.As(err, &nr) {
		t.Errorf("a directory gives %T, want *NotRegularError", err)
	}
	if _, _, err := OpenRegularFile(filepath.Join(dir, "nope")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing file gives %v, want os.ErrNotExist", err)
	}
}
