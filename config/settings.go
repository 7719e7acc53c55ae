package config

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/goccy/go-yaml/ast"
)

// Position is a place in a config file.
type Position struct {
	File      string
	Line, Col int
}

func (p Position) String() string { return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col) }

// Error is one problem in a config: where it is, the config path of the
// value (`routes[1].prefix`) and a lowercase message.
type Error struct {
	Pos  Position
	Path string
	Msg  string
}

// Error formats the error as "file:line:col: path: msg". The path is left
// out when empty and line:col when unknown (a config built in code).
func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.Pos.Line > 0:
		b.WriteString(e.Pos.String())
		b.WriteString(": ")
	case e.Pos.File != "":
		b.WriteString(e.Pos.File)
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in a config, in file order.
type Errors []*Error

// Error joins the errors, one per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.As find the single errors.
func (es Errors) Unwrap() []error {
	errs := make([]error, len(es))
	for i, e := range es {
		errs[i] = e
	}
	return errs
}

// Settings is a protocol's raw `settings:` block. The config package does
// not know what a protocol's settings mean: the protocol decodes them with
// Decode and reports semantic problems with Errorf, so that its errors carry
// file:line:col and the full config path like every other config error.
type Settings struct {
	doc  *document // nil for an absent block outside any document
	node ast.Node  // nil when the block is absent or null
	path string
	pos  Position
}

// NewSettings builds Settings from a standalone YAML mapping, as if it were
// the block at path in file. It is meant for protocol unit tests.
func NewSettings(file, path string, yamlText []byte) (Settings, error) {
	doc, errs := parseDocument(file, yamlText)
	if errs != nil {
		return Settings{}, errs
	}
	s := Settings{doc: doc, node: doc.root, path: path, pos: Position{File: file, Line: 1, Col: 1}}
	if doc.root != nil {
		s.pos = nodePos(file, doc.root)
	}
	return s, nil
}

// Path is the config path of the block, e.g. "protocols[0].settings".
func (s Settings) Path() string { return s.path }

// Pos is where the block starts; for an absent block, where its protocol
// entry starts.
func (s Settings) Pos() Position { return s.pos }

// Decode decodes the block into v, a non-nil pointer, strictly: keys are
// matched to `yaml:"snake_key"` struct tags and unknown keys are errors.
// It handles strings, bools, numbers, slices, arrays, maps with string
// keys, nested structs, pointers, any, Duration and every
// encoding.TextUnmarshaler (netip.Addr, netip.AddrPort, netip.Prefix, …).
// Fields whose keys are absent keep their values, so a protocol can fill
// in its defaults before calling Decode. Problems are returned as Errors
// (all of them, in file order) with positions and full paths such as
// "protocols[0].settings.peers[1].endpoint".
func (s Settings) Decode(v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("config: Settings.Decode needs a non-nil pointer, got %T", v)
	}
	if s.node == nil {
		return nil
	}
	d := newDecoder(s.doc)
	d.decode(s.node, s.path, rv.Elem(), 0)
	if len(d.errs) == 0 {
		return nil
	}
	return d.errs.sorted()
}

// Errorf returns an error about field, a path relative to the block
// ("listen", "peers[0].endpoint"). It is positioned at the field's value,
// or, when the field is absent, at its nearest enclosing value that is
// present (the block itself for a missing top-level key).
func (s Settings) Errorf(field, format string, args ...any) *Error {
	pos := s.pos
	if s.node != nil {
		if n, _ := lookup(s.doc, s.node, field); n != nil {
			pos = nodePos(s.pos.File, n)
		}
	}
	return &Error{Pos: pos, Path: joinPath(s.path, field), Msg: fmt.Sprintf(format, args...)}
}

// joinPath appends a relative path ("listen", "[0].x") to a base path.
func joinPath(base, rel string) string {
	switch {
	case rel == "":
		return base
	case base == "" && strings.HasPrefix(rel, "["):
		return rel
	case base == "":
		return rel
	case strings.HasPrefix(rel, "["):
		return base + rel
	}
	return base + "." + rel
}
