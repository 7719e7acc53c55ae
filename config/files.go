package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// Files a config names (the config itself, the admin token, TLS and
// protocol keys) are read only when they are regular files. Anything else
// is refused before it is opened, since opening could block or act: a FIFO
// blocks the open until a writer comes (`switchyard check`, `run` and a
// reload would hang), a device may do something on open. The open that
// follows is non-blocking and checks the opened file again, so a file
// swapped for a FIFO between the two is refused too, never read.

// NotRegularError is the error for a path that is not a regular file.
type NotRegularError struct {
	Path string
	Kind string // "a directory", "a named pipe (FIFO)", …
}

func (e *NotRegularError) Error() string {
	return fmt.Sprintf("%s is not a regular file but %s", e.Path, e.Kind)
}

// OpenRegularFile opens path for reading if it is a regular file (after
// symbolic links), without ever blocking on the open, and returns it with
// its FileInfo. Errors name path once: "PATH: no such file or directory",
// or a *NotRegularError.
func OpenRegularFile(path string) (*os.File, fs.FileInfo, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, pathErr(err))
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, &NotRegularError{Path: path, Kind: fileKind(fi.Mode())}
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, pathErr(err))
	}
	fi, err = f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%s: %w", path, pathErr(err))
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, &NotRegularError{Path: path, Kind: fileKind(fi.Mode())}
	}
	return f, fi, nil
}

// ReadRegularFile reads the regular file at path (see OpenRegularFile),
// refusing one larger than maxBytes.
func ReadRegularFile(path string, maxBytes int) ([]byte, error) {
	f, _, err := OpenRegularFile(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readLimited(f, path, maxBytes)
}

// readLimited reads f to its end, at most maxBytes.
func readLimited(f *os.File, path string, maxBytes int) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(f, int64(maxBytes)+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, pathErr(err))
	}
	if len(b) > maxBytes {
		return nil, &TooLargeError{Path: path, Max: maxBytes}
	}
	return b, nil
}

// TooLargeError is the error for a file larger than its limit.
type TooLargeError struct {
	Path string
	Max  int // bytes
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("%s: larger than %d bytes", e.Path, e.Max)
}

// fileKind names what a mode that is not regular is.
func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	}
	return "of type " + m.Type().String()
}

// pathErr drops the *os.PathError wrapper, whose path the message already
// names.
func pathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
