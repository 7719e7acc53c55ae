package config

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/token"
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

// YAML returns the block as standalone YAML text, for a process that has
// no config file (a protocol host): NewSettings(file, s.Path(), s.YAML())
// decodes to the same values as s. Aliases (also to anchors outside the
// block) are expanded, tags dropped and comments left out; merge keys (<<)
// and duplicate keys stay, so Decode merges and refuses as it does here.
// Mappings and lists are written in block style, strings double-quoted
// unless they are plain words. An absent, null or empty block gives nil.
// A block Decode refuses renders as best it can: an alias it cannot expand
// (a cycle, more than MaxAliasValues values) stays an alias, which Decode
// refuses again, and a key that is not a string becomes its text.
func (s Settings) YAML() []byte {
	if s.node == nil {
		return nil
	}
	r := &render{doc: s.doc}
	if r.doc == nil {
		r.doc = &document{}
	}
	switch n := resolve(r.doc, s.node).(type) {
	case *ast.NullNode:
		return nil
	case *ast.MappingNode:
		if len(n.Values) == 0 {
			return nil
		}
	}
	r.node(s.node, 0, 0)
	return r.b
}

// render writes AST nodes as block-style YAML.
type render struct {
	doc      *document
	b        []byte
	active   []*ast.AnchorNode // aliases being expanded
	expanded int               // values written inside aliases
}

// node writes n as lines at column indent, each ending in a newline.
func (r *render) node(n ast.Node, indent, depth int) {
	n, pop := r.deref(n)
	defer pop()
	if text, ok := r.inline(n, depth); ok {
		r.b = append(r.b, strings.Repeat(" ", indent)...)
		r.b = append(append(r.b, text...), '\n')
		return
	}
	r.block(n, indent, depth)
}

// block writes a mapping or list that inline refused.
func (r *render) block(n ast.Node, indent, depth int) {
	switch t := n.(type) {
	case *ast.MappingNode:
		for _, mv := range t.Values {
			r.entry(mv, indent, depth)
		}
	case *ast.MappingValueNode:
		r.entry(t, indent, depth)
	case *ast.SequenceNode:
		for _, v := range t.Values {
			// The item is written at indent+2; "- " replaces the
			// indentation of its first line.
			at := len(r.b) + indent
			r.node(v, indent+2, depth+1)
			if at+1 < len(r.b) {
				r.b[at], r.b[at+1] = '-', ' '
			}
		}
	}
}

// entry writes one `key: value` of a mapping at column indent.
func (r *render) entry(mv *ast.MappingValueNode, indent, depth int) {
	if mv == nil || mv.Key == nil {
		return
	}
	r.b = append(r.b, strings.Repeat(" ", indent)...)
	if mv.Key.IsMergeKey() {
		r.b = append(r.b, "<<"...)
	} else {
		k, ok := keyText(r.doc, mv.Key)
		if !ok {
			k = mv.Key.String()
		}
		r.b = append(r.b, yamlString(k)...)
	}
	r.b = append(r.b, ':')
	v, pop := r.deref(mv.Value)
	defer pop()
	if text, ok := r.inline(v, depth+1); ok {
		r.b = append(append(append(r.b, ' '), text...), '\n')
		return
	}
	r.b = append(r.b, '\n')
	r.block(v, indent+2, depth+1)
}

// inline returns n's text when it fits after "key: " or "- ": a scalar,
// an empty mapping or list, or an alias left unexpanded.
func (r *render) inline(n ast.Node, depth int) (string, bool) {
	if len(r.active) > 0 {
		r.expanded++
	}
	if depth > MaxDepth {
		return "null", true // Decode refuses the original as nested too deeply, and this too
	}
	switch t := n.(type) {
	case nil, *ast.NullNode:
		return "null", true
	case *ast.MappingNode:
		if len(t.Values) == 0 {
			return "{}", true
		}
		return "", false
	case *ast.MappingValueNode:
		return "", false
	case *ast.SequenceNode:
		if len(t.Values) == 0 {
			return "[]", true
		}
		return "", false
	case *ast.AliasNode:
		return "*" + tokenText(t.Value), true
	case *ast.BoolNode, *ast.IntegerNode, *ast.FloatNode, *ast.InfinityNode, *ast.NanNode:
		if s := tokenText(n); s != "" {
			return s, true
		}
	}
	s, ok := scalarText(n)
	if !ok {
		s = tokenText(n)
	}
	return yamlString(s), true
}

// deref follows tags, anchors and aliases to a value. An alias that would
// expand into itself, or past MaxAliasValues values or MaxFileBytes of
// text, is returned as is. pop ends the expansion.
func (r *render) deref(n ast.Node) (_ ast.Node, pop func()) {
	pushed := 0
	for range MaxDepth {
		switch t := n.(type) {
		case *ast.TagNode:
			n = t.Value
			continue
		case *ast.AnchorNode:
			n = t.Value
			continue
		case *ast.AliasNode:
			a := r.doc.anchorFor(t)
			if a == nil || slices.Contains(r.active, a) || r.expanded >= MaxAliasValues || len(r.b) > MaxFileBytes {
				break
			}
			r.active = append(r.active, a)
			pushed++
			n = a.Value
			continue
		}
		break
	}
	return n, func() { r.active = r.active[:len(r.active)-pushed] }
}

// yamlString writes s as a plain scalar when it is a word that reads back
// as the same string ([A-Za-z_][A-Za-z0-9_.-]*, not null, true, yes, …),
// else double-quoted with escapes.
func yamlString(s string) string {
	plain := s != "" && (isLetter(s[0]) || s[0] == '_') && !token.IsNeedQuoted(s)
	for i := 1; plain && i < len(s); i++ {
		c := s[i]
		plain = isLetter(c) || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-'
	}
	if plain {
		return s
	}
	b := make([]byte, 0, len(s)+2)
	b = append(b, '"')
	for _, c := range s { // invalid UTF-8 becomes U+FFFD, as the parser reads it
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', byte(c))
		case c == '\n':
			b = append(b, `\n`...)
		case c == '\t':
			b = append(b, `\t`...)
		case c < 0x20 || c == 0x7f || c >= 0x80 && c < 0xa0 || c == 0x2028 || c == 0x2029 || c == 0xfeff:
			b = fmt.Appendf(b, `\u%04x`, c)
		default:
			b = utf8.AppendRune(b, c)
		}
	}
	return string(append(b, '"'))
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
