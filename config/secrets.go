package config

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
)

// readSecrets reads the files a parsed config points at for secrets: the
// admin token file, and checks the remote TLS files. Errors point at the
// key that names the file.
func (c *Config) readSecrets(p *positions) Errors {
	k := &checker{file: c.File, p: p}
	if c.Admin.TokenFile != "" {
		token, err := ReadTokenFile(c.Admin.TokenFile, c.File)
		if err != nil {
			k.errorf("admin.token_file", Position{}, "%v", err)
		} else {
			c.Admin.Token = token
		}
	}
	if c.Remote.SecretFile != "" {
		secret, err := ReadTokenFile(c.Remote.SecretFile, "")
		if err != nil {
			k.errorf("remote.secret_file", c.Remote.Pos, "%v", err)
		} else {
			c.Remote.Secret = secret
		}
	}
	for _, f := range []struct {
		path, file string
		private    bool
	}{
		{"remote.tls.ca", c.Remote.TLS.CA, false},
		{"remote.tls.cert", c.Remote.TLS.Cert, false},
		{"remote.tls.key", c.Remote.TLS.Key, true},
	} {
		if f.file == "" {
			continue
		}
		if err := checkTLSFile(f.file, f.private); err != nil {
			k.errorf(f.path, c.Remote.Pos, "%v", err)
		}
	}
	return k.errs
}

// checkTLSFile checks that path (already joined to the config file's
// directory) is a regular file this process can read and, for a private
// key, that group and others cannot access it, and at most MaxTLSFileBytes
// long. It reads one byte: the files are parsed when the transport starts.
func checkTLSFile(path string, private bool) error {
	f, fi, err := OpenRegularFile(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if perm := fi.Mode().Perm(); private && perm&0o077 != 0 {
		return fmt.Errorf("%s is accessible to group or others (mode %04o); chmod 600 it", path, perm)
	}
	if fi.Size() > MaxTLSFileBytes {
		return fmt.Errorf("%s: larger than %d bytes, not a PEM file of TLS", path, MaxTLSFileBytes)
	}
	if _, err := f.Read(make([]byte, 1)); err != nil {
		if err == io.EOF {
			return fmt.Errorf("%s is empty", path)
		}
		return fmt.Errorf("%s: %w", path, pathErr(err))
	}
	return nil
}

// configRelative joins a relative path to the directory of configFile;
// absolute paths, "" and paths of the embedded default stay as they are.
func configRelative(path, configFile string) string {
	if path == "" || filepath.IsAbs(path) || configFile == "" || configFile == DefaultFile {
		return path
	}
	return filepath.Join(filepath.Dir(configFile), path)
}

// ReadTokenFile reads a bearer token from path; a relative path is relative
// to the directory of configFile. The file must be a regular file (checked
// before opening it, see OpenRegularFile) that
// group and others cannot access (a token others can read is no secret),
// and hold one token of MinTokenBytes..MaxTokenFileBytes printable ASCII
// characters without spaces; surrounding white space (a final newline) is
// ignored.
func ReadTokenFile(path, configFile string) (string, error) {
	path = configRelative(path, configFile)
	f, fi, err := OpenRegularFile(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return "", fmt.Errorf("%s is accessible to group or others (mode %04o); chmod 600 it", path, perm)
	}
	b, err := readLimited(f, path, MaxTokenFileBytes)
	if err != nil {
		var tl *TooLargeError
		if errors.As(err, &tl) {
			return "", fmt.Errorf("%s: larger than %d bytes, not a token file", path, MaxTokenFileBytes)
		}
		return "", err
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return "", fmt.Errorf("%s is empty; put a token in it, e.g. openssl rand -hex 32", path)
	}
	if err := CheckToken(token); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return token, nil
}

// CheckToken checks a non-empty token or secret, already trimmed: one word
// of printable ASCII, at least MinTokenBytes long. The admin token file
// and the remote secret (a file or a spawned host's pipe) follow it.
func CheckToken(token string) error {
	switch {
	case strings.ContainsFunc(token, func(r rune) bool { return r <= ' ' || r > '~' }):
		return errors.New("the token must be one word of printable ASCII (no spaces or line breaks)")
	case len(token) < MinTokenBytes:
		return fmt.Errorf("the token has %d characters, want at least %d (e.g. openssl rand -hex 32)", len(token), MinTokenBytes)
	}
	return nil
}
