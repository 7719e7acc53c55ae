package config

// Decoding walks the goccy/go-yaml AST itself rather than using goccy's
// decoder, so that every error has an exact position and config path and
// reads as one line:
//
//  1. parseDocument parses the text into one YAML document and indexes its
//     anchors (aliases anywhere, settings blocks included, resolve against
//     them).
//  2. decoder.decode walks a node against a Go value by reflection, strictly:
//     unknown keys, duplicate keys and type mismatches are collected as
//     Errors, and the paths that failed are remembered so validation does
//     not report them twice.
//  3. lookup finds the node at a config path, for errors raised after
//     decoding (validation, Settings.Errorf).

import (
	"encoding"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode"
	"unicode/utf8"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// document is one parsed YAML document.
type document struct {
	file    string
	root    ast.Node                     // nil for an empty document
	anchors map[string][]*ast.AnchorNode // by name, in document order
	merges  atomic.Int64                 // merged mappings lookups followed (child)
}

// parseDocument parses data. An empty text gives a document with a nil root;
// a text beyond the parsing limits (scanYAML), syntax errors and a second
// document are Errors.
func parseDocument(file string, data []byte) (*document, Errors) {
	if err := scanYAML(file, data); err != nil {
		return nil, Errors{err}
	}
	f, err := parseYAML(data)
	if err != nil {
		return nil, Errors{syntaxError(file, err)}
	}
	var bodies []ast.Node
	for _, d := range f.Docs {
		if d != nil && d.Body != nil {
			bodies = append(bodies, d.Body)
		}
	}
	doc := &document{file: file, anchors: map[string][]*ast.AnchorNode{}}
	if len(bodies) == 0 {
		return doc, nil
	}
	if len(bodies) > 1 {
		return nil, Errors{{Pos: nodePos(file, bodies[1]), Msg: "a config holds one yaml document, found a second one"}}
	}
	doc.root = bodies[0]
	doc.collectAnchors(doc.root, 0)
	for _, as := range doc.anchors {
		slices.SortStableFunc(as, func(a, b *ast.AnchorNode) int { return comparePos(a.GetToken().Position, b.GetToken().Position) })
	}
	return doc, nil
}

// parseYAML runs the goccy parser. Duplicate keys are allowed here because
// the decoder reports them itself, together with the other errors. A panic
// in the parser on hostile input becomes an error.
func parseYAML(data []byte) (f *ast.File, err error) {
	defer func() {
		if r := recover(); r != nil {
			f, err = nil, fmt.Errorf("yaml parser failed: %v", r)
		}
	}()
	return parser.ParseBytes(data, 0, parser.AllowDuplicateMapKey())
}

// syntaxError turns a goccy parse error into a one-line Error.
func syntaxError(file string, err error) *Error {
	pos := Position{File: file, Line: 1, Col: 1}
	msg := err.Error()
	var ye yaml.Error
	if errors.As(err, &ye) {
		msg = ye.GetMessage()
		if tk := ye.GetToken(); tk != nil && tk.Position != nil && tk.Position.Line > 0 {
			pos.Line, pos.Col = tk.Position.Line, max(tk.Position.Column, 1)
		}
	}
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	return &Error{Pos: pos, Msg: "invalid yaml: " + lowerFirst(msg)}
}

func (doc *document) collectAnchors(n ast.Node, depth int) {
	if depth > MaxDepth {
		return
	}
	switch t := n.(type) {
	case *ast.AnchorNode:
		if t.Name != nil && t.Name.GetToken() != nil {
			name := t.Name.GetToken().Value
			doc.anchors[name] = append(doc.anchors[name], t)
		}
		doc.collectAnchors(t.Value, depth+1)
	case *ast.TagNode:
		doc.collectAnchors(t.Value, depth+1)
	case *ast.MappingNode:
		for _, mv := range t.Values {
			doc.collectAnchors(mv, depth+1)
		}
	case *ast.MappingValueNode:
		doc.collectAnchors(t.Key, depth+1)
		doc.collectAnchors(t.Value, depth+1)
	case *ast.MappingKeyNode:
		doc.collectAnchors(t.Value, depth+1)
	case *ast.SequenceNode:
		for _, v := range t.Values {
			doc.collectAnchors(v, depth+1)
		}
	}
}

// anchorFor returns the anchor an alias refers to: the last one of its name
// defined before it. The anchors of a name are in document order, so it is a
// binary search: a file with many anchors and aliases of one name must not
// cost their product.
func (doc *document) anchorFor(a *ast.AliasNode) *ast.AnchorNode {
	if doc == nil || a.Value == nil || a.Value.GetToken() == nil {
		return nil
	}
	at := a.GetToken().Position
	as := doc.anchors[a.Value.GetToken().Value]
	i, _ := slices.BinarySearchFunc(as, at, func(an *ast.AnchorNode, at *token.Position) int {
		if comparePos(an.GetToken().Position, at) < 0 {
			return -1
		}
		return 1
	})
	if i == 0 {
		return nil
	}
	return as[i-1]
}

// comparePos orders token positions in the text.
func comparePos(a, b *token.Position) int {
	if a.Line != b.Line {
		return a.Line - b.Line
	}
	return a.Column - b.Column
}

// nodePos is where a node starts. A block mapping starts at its first key
// (goccy puts its token at the first ':').
func nodePos(file string, n ast.Node) Position {
	switch t := n.(type) {
	case *ast.MappingNode:
		if len(t.Values) > 0 {
			return nodePos(file, t.Values[0])
		}
	case *ast.MappingValueNode:
		if t.Key != nil {
			return nodePos(file, t.Key)
		}
	case *ast.DocumentNode:
		if t.Body == nil {
			return Position{File: file, Line: 1, Col: 1}
		}
		return nodePos(file, t.Body)
	}
	if n == nil {
		return Position{File: file, Line: 1, Col: 1}
	}
	tk := n.GetToken()
	if tk == nil || tk.Position == nil || tk.Position.Line <= 0 {
		return Position{File: file, Line: 1, Col: 1}
	}
	return Position{File: file, Line: tk.Position.Line, Col: max(tk.Position.Column, 1)}
}

// expansion walks protocol settings blocks as decoding them will, through
// aliases and merge keys, and counts what it reaches through aliases over
// all blocks of a document together. Each protocol decodes its block with a
// decoder of its own, so without this count each of MaxProtocols blocks
// could expand the same alias bomb to MaxAliasValues values, and a
// remote protocol's block, rendered with aliases expanded (Settings.YAML),
// could copy a long scalar as many times.
type expansion struct {
	doc    *document
	active []*ast.AnchorNode
	values int // values reached through aliases
	bytes  int // bytes of scalar text reached through aliases
}

// walk reports false, with the reason, once a limit is passed.
func (x *expansion) walk(n ast.Node, depth int) (bool, string) {
	if depth > MaxDepth {
		return true, "" // decoding refuses it
	}
	if len(x.active) > 0 {
		if x.values++; x.values > MaxAliasValues {
			return false, fmt.Sprintf("aliases expand to more than %d values in all settings blocks", MaxAliasValues)
		}
	}
	walkAll := func(ns ...ast.Node) (bool, string) {
		for _, c := range ns {
			if ok, why := x.walk(c, depth+1); !ok {
				return false, why
			}
		}
		return true, ""
	}
	switch t := n.(type) {
	case nil:
		return true, ""
	case *ast.TagNode:
		return walkAll(t.Value)
	case *ast.AnchorNode:
		return walkAll(t.Value)
	case *ast.AliasNode:
		a := x.doc.anchorFor(t)
		if a == nil || slices.Contains(x.active, a) {
			return true, "" // decoding refuses it
		}
		x.active = append(x.active, a)
		defer func() { x.active = x.active[:len(x.active)-1] }()
		return walkAll(a.Value)
	case *ast.MappingNode:
		for _, mv := range t.Values {
			if ok, why := walkAll(mv); !ok {
				return false, why
			}
		}
	case *ast.MappingValueNode:
		return walkAll(t.Key, t.Value)
	case *ast.MappingKeyNode:
		return walkAll(t.Value)
	case *ast.SequenceNode:
		return walkAll(t.Values...)
	default:
		if len(x.active) > 0 {
			text, _ := scalarText(n)
			if x.bytes += len(text); x.bytes > MaxAliasBytes {
				return false, fmt.Sprintf("aliases expand to more than %d bytes of text in all settings blocks", MaxAliasBytes)
			}
		}
	}
	return true, ""
}

// decoder decodes AST nodes into Go values, collecting errors.
type decoder struct {
	doc      *document
	errs     Errors
	failed   map[string]bool // paths with a decode error
	active   []*ast.AnchorNode
	expanded int // values visited through aliases and merge keys
	// aliasFailed is set once expanded passed MaxAliasValues.
	aliasFailed bool
	// outer is the outermost alias being expanded, or the mapping whose
	// merge keys are, for the position of "aliases expand to more …".
	outer ast.Node
}

func newDecoder(doc *document) *decoder {
	if doc == nil {
		doc = &document{}
	}
	return &decoder{doc: doc, failed: map[string]bool{}}
}

// expand counts values visited through aliases or merge keys against
// MaxAliasValues. It reports false, once with an error, when they pass it.
func (d *decoder) expand(n ast.Node, path string, values int) bool {
	d.expanded += values
	if d.expanded <= MaxAliasValues {
		return true
	}
	if !d.aliasFailed {
		d.aliasFailed = true
		if d.outer != nil {
			n = d.outer // where the expansion starts, not where it got to
		}
		d.fail(n, path, "aliases expand to more than %d values", MaxAliasValues)
	}
	return false
}

func (d *decoder) fail(n ast.Node, path, format string, args ...any) {
	d.failed[path] = true
	d.errs = append(d.errs, &Error{Pos: nodePos(d.doc.file, n), Path: path, Msg: fmt.Sprintf(format, args...)})
}

var (
	settingsType        = reflect.TypeFor[Settings]()
	durationType        = reflect.TypeFor[Duration]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// decode decodes n into v, which must be settable. A null or absent value
// leaves v as it is.
func (d *decoder) decode(n ast.Node, path string, v reflect.Value, depth int) {
	if depth > MaxDepth {
		d.fail(n, path, "nested too deeply (more than %d levels)", MaxDepth)
		return
	}
	if len(d.active) > 0 && !d.expand(n, path, 1) {
		return
	}
	switch t := n.(type) {
	case nil, *ast.NullNode:
		return
	case *ast.TagNode:
		d.decode(t.Value, path, v, depth+1)
		return
	case *ast.AnchorNode:
		d.decode(t.Value, path, v, depth+1)
		return
	case *ast.AliasNode:
		name := ""
		if t.Value != nil && t.Value.GetToken() != nil {
			name = t.Value.GetToken().Value
		}
		a := d.doc.anchorFor(t)
		switch {
		case a == nil:
			d.fail(n, path, "alias *%s has no anchor &%s before it", name, name)
		case slices.Contains(d.active, a):
			d.fail(n, path, "alias *%s refers to a value that contains it", name)
		default:
			if len(d.active) == 0 {
				d.outer = n
				defer func() { d.outer = nil }()
			}
			d.active = append(d.active, a)
			d.decode(a.Value, path, v, depth+1)
			d.active = d.active[:len(d.active)-1]
		}
		return
	}

	t := v.Type()
	switch {
	case t == settingsType:
		d.settings(n, path, v)
		return
	case t == durationType:
		d.duration(n, path, v)
		return
	case t.Kind() == reflect.Pointer:
		if !v.IsNil() {
			d.decode(n, path, v.Elem(), depth+1)
			return
		}
		p := reflect.New(t.Elem())
		before := len(d.errs)
		d.decode(n, path, p.Elem(), depth+1)
		if len(d.errs) == before {
			v.Set(p)
		}
		return
	case reflect.PointerTo(t).Implements(textUnmarshalerType):
		d.text(n, path, v)
		return
	}

	switch t.Kind() {
	case reflect.String:
		s, ok := scalarText(n)
		if !ok {
			d.fail(n, path, "expected a string, got %s", describe(n))
			return
		}
		v.SetString(s)
	case reflect.Bool:
		b, ok := n.(*ast.BoolNode)
		if !ok {
			d.fail(n, path, "expected true or false, got %s", describe(n))
			return
		}
		v.SetBool(b.Value)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		d.int(n, path, v)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		d.uint(n, path, v)
	case reflect.Float32, reflect.Float64:
		var f float64
		switch x := n.(type) {
		case *ast.FloatNode:
			f = x.Value
		case *ast.IntegerNode:
			f, _ = strconv.ParseFloat(x.GetToken().Value, 64)
			if u, ok := x.Value.(uint64); ok {
				f = float64(u)
			} else if i, ok := x.Value.(int64); ok {
				f = float64(i)
			}
		case *ast.InfinityNode:
			f = x.Value
		case *ast.NanNode:
			f = math.NaN()
		default:
			d.fail(n, path, "expected a number, got %s", describe(n))
			return
		}
		if v.OverflowFloat(f) {
			d.fail(n, path, "number %s is out of range", tokenText(n))
			return
		}
		v.SetFloat(f)
	case reflect.Slice:
		seq, ok := n.(*ast.SequenceNode)
		if !ok {
			d.fail(n, path, "expected a list, got %s", describe(n))
			return
		}
		s := reflect.MakeSlice(t, len(seq.Values), len(seq.Values))
		for i, e := range seq.Values {
			d.decode(e, fmt.Sprintf("%s[%d]", path, i), s.Index(i), depth+1)
		}
		v.Set(s)
	case reflect.Array:
		seq, ok := n.(*ast.SequenceNode)
		if !ok {
			d.fail(n, path, "expected a list, got %s", describe(n))
			return
		}
		if len(seq.Values) != t.Len() {
			d.fail(n, path, "expected a list of %d items, got %d", t.Len(), len(seq.Values))
			return
		}
		for i, e := range seq.Values {
			d.decode(e, fmt.Sprintf("%s[%d]", path, i), v.Index(i), depth+1)
		}
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			d.fail(n, path, "cannot decode into %s: map keys must be strings", t)
			return
		}
		entries, ok := d.entries(n, path, depth)
		if !ok {
			return
		}
		if v.IsNil() {
			v.Set(reflect.MakeMapWithSize(t, len(entries)))
		}
		for _, e := range entries {
			ev := reflect.New(t.Elem()).Elem()
			if old := v.MapIndex(reflect.ValueOf(e.key).Convert(t.Key())); old.IsValid() {
				ev.Set(old)
			}
			d.decode(e.value, keyPath(path, e.key), ev, depth+1)
			v.SetMapIndex(reflect.ValueOf(e.key).Convert(t.Key()), ev)
		}
	case reflect.Struct:
		d.structure(n, path, v, depth)
	case reflect.Interface:
		if t.NumMethod() != 0 {
			d.fail(n, path, "cannot decode into %s", t)
			return
		}
		d.generic(n, path, v, depth)
	default:
		d.fail(n, path, "cannot decode into %s", t)
	}
}

func (d *decoder) int(n ast.Node, path string, v reflect.Value) {
	in, ok := n.(*ast.IntegerNode)
	if !ok {
		d.fail(n, path, "expected an integer, got %s", describe(n))
		return
	}
	bits := v.Type().Bits()
	lo, hi := int64(-1)<<(bits-1), int64(1)<<(bits-1)-1
	var i int64
	switch x := in.Value.(type) {
	case int64:
		i = x
	case uint64:
		if x > uint64(hi) {
			d.fail(n, path, "must be between %d and %d, got %s", lo, hi, tokenText(n))
			return
		}
		i = int64(x)
	default:
		d.fail(n, path, "must be between %d and %d, got %s", lo, hi, tokenText(n))
		return
	}
	if v.OverflowInt(i) {
		d.fail(n, path, "must be between %d and %d, got %s", lo, hi, tokenText(n))
		return
	}
	v.SetInt(i)
}

func (d *decoder) uint(n ast.Node, path string, v reflect.Value) {
	in, ok := n.(*ast.IntegerNode)
	if !ok {
		d.fail(n, path, "expected an integer, got %s", describe(n))
		return
	}
	hi := uint64(math.MaxUint64) >> (64 - v.Type().Bits())
	u, ok := in.Value.(uint64)
	if !ok {
		if _, neg := in.Value.(int64); neg {
			d.fail(n, path, "must not be negative, got %s", tokenText(n))
			return
		}
	}
	if !ok || v.OverflowUint(u) {
		d.fail(n, path, "must be between 0 and %d, got %s", hi, tokenText(n))
		return
	}
	v.SetUint(u)
}

// text decodes a scalar through encoding.TextUnmarshaler.
func (d *decoder) text(n ast.Node, path string, v reflect.Value) {
	s, ok := scalarText(n)
	if !ok {
		d.fail(n, path, "expected a string, got %s", describe(n))
		return
	}
	if msg := textError(v.Type(), s, v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s))); msg != "" {
		d.fail(n, path, "%s", msg)
	}
}

// textError words an UnmarshalText failure for the types configs use.
// netip accepts an empty text as the zero value; a config never means that.
func textError(t reflect.Type, s string, err error) string {
	what := ""
	switch t.String() {
	case "netip.Addr":
		what = "ip address"
	case "netip.AddrPort":
		if err != nil || s == "" {
			return fmt.Sprintf("must be ip:port, got %q%s", s, addrPortHint(s))
		}
	case "netip.Prefix":
		what = "prefix"
	}
	if what != "" && s == "" {
		return fmt.Sprintf("invalid %s \"\": empty", what)
	}
	if err == nil {
		return ""
	}
	reason := err.Error()
	if i := strings.LastIndex(reason, "): "); i >= 0 {
		reason = reason[i+3:] // netip repeats the input: ParsePrefix("x"): reason
	}
	if what == "prefix" && !strings.Contains(s, "/") {
		if a, err := netip.ParseAddr(s); err == nil {
			reason = fmt.Sprintf("a prefix needs its length, e.g. %s", netip.PrefixFrom(a, a.BitLen()))
		}
	}
	if what == "" {
		what = "value"
	}
	return fmt.Sprintf("invalid %s %q: %s", what, s, lowerFirst(reason))
}

// addrPortHint says what is wrong with an ip:port that does not parse,
// where netip's reason ("too many colons", "unexpected character") would
// leave the operator guessing: "; " and the hint, or "".
func addrPortHint(s string) string {
	host, port, hasPort := s, "", false
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		host, port, hasPort = s[:i], s[i+1:], true
	}
	bracketed := strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]")
	if bracketed {
		host = host[1 : len(host)-1]
	}
	if h, err := netip.ParseAddr(host); err == nil && h.Is6() && !bracketed {
		if _, perr := strconv.ParseUint(port, 10, 16); perr == nil {
			return fmt.Sprintf(": an IPv6 address with a port needs brackets, [%s]:%s", host, port)
		}
	}
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Is6() {
			return fmt.Sprintf(": the port is missing, e.g. [%s]:7000", a)
		}
		return fmt.Sprintf(": the port is missing, e.g. %s:7000", a)
	}
	a, err := netip.ParseAddr(host)
	switch {
	case !hasPort || s == "":
		return ""
	case err == nil && a.Is6() && !bracketed:
		return fmt.Sprintf(": an IPv6 address with a port needs brackets, [%s]:%s", host, port)
	case err == nil:
		if p, perr := strconv.ParseUint(port, 10, 64); perr == nil && p > 65535 {
			return fmt.Sprintf(": port %s is out of range 0-65535", port)
		}
		return fmt.Sprintf(": port %q is not a number", port)
	case host != "" && strings.Trim(strings.ToLower(host), "abcdefghijklmnopqrstuvwxyz0123456789.-") == "":
		return ": host names are not resolved here, give an IP address"
	}
	return ""
}

// duration decodes a Duration: a string with a unit, never negative.
func (d *decoder) duration(n ast.Node, path string, v reflect.Value) {
	var s string
	switch x := n.(type) {
	case *ast.StringNode:
		s = x.Value
	case *ast.IntegerNode, *ast.FloatNode:
		s = tokenText(n)
	default:
		d.fail(n, path, "expected a duration such as 10s, got %s", describe(n))
		return
	}
	dur, err := ParseDuration(s)
	if err != nil {
		d.fail(n, path, "%s", err.Error())
		return
	}
	v.SetInt(int64(dur))
}

// settings keeps a protocol's settings block for the protocol to decode.
func (d *decoder) settings(n ast.Node, path string, v reflect.Value) {
	if _, ok := resolve(d.doc, n).(*ast.MappingNode); !ok {
		d.fail(n, path, "expected a mapping, got %s", describe(n))
		return
	}
	v.Set(reflect.ValueOf(Settings{doc: d.doc, node: n, path: path, pos: nodePos(d.doc.file, n)}))
}

// generic decodes into an empty interface: maps, lists and scalars.
func (d *decoder) generic(n ast.Node, path string, v reflect.Value, depth int) {
	var out any
	switch x := n.(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
		entries, ok := d.entries(n, path, depth)
		if !ok {
			return
		}
		m := make(map[string]any, len(entries))
		for _, e := range entries {
			ev := reflect.New(v.Type()).Elem()
			d.decode(e.value, keyPath(path, e.key), ev, depth+1)
			m[e.key] = ev.Interface()
		}
		out = m
	case *ast.SequenceNode:
		s := make([]any, len(x.Values))
		for i, e := range x.Values {
			d.decode(e, fmt.Sprintf("%s[%d]", path, i), reflect.ValueOf(&s[i]).Elem(), depth+1)
		}
		out = s
	case *ast.BoolNode:
		out = x.Value
	case *ast.IntegerNode:
		out = x.Value
		if out == nil {
			d.fail(n, path, "integer %s is out of range", tokenText(n))
			return
		}
	case *ast.FloatNode:
		out = x.Value
	case *ast.InfinityNode:
		out = x.Value
	case *ast.NanNode:
		out = math.NaN()
	default:
		s, ok := scalarText(n)
		if !ok {
			d.fail(n, path, "unsupported yaml value %s", describe(n))
			return
		}
		out = s
	}
	v.Set(reflect.ValueOf(out))
}

// entry is one key of a mapping, merge keys (<<) resolved.
type entry struct {
	key   string
	keyN  ast.Node
	value ast.Node
}

// entries lists a mapping's keys in order, reporting duplicate and
// non-scalar keys. Keys merged in with `<<: *anchor` come after the
// mapping's own keys, which override them.
func (d *decoder) entries(n ast.Node, path string, depth int) ([]entry, bool) {
	var own, merged []entry
	seen := map[string]ast.Node{}
	var walk func(n ast.Node, merging bool, depth int) bool
	var open []ast.Node // the mappings being walked, outermost first
	walk = func(n ast.Node, merging bool, depth int) bool {
		if depth > MaxDepth {
			d.fail(n, path, "nested too deeply (more than %d levels)", MaxDepth)
			return false
		}
		r := resolve(d.doc, n)
		if slices.Contains(open, r) {
			d.fail(n, path, "<< merges a mapping into itself")
			return false
		}
		open = append(open, r)
		defer func() { open = open[:len(open)-1] }()
		var values []*ast.MappingValueNode
		switch x := r.(type) {
		case *ast.MappingNode:
			values = x.Values
		case *ast.MappingValueNode:
			values = []*ast.MappingValueNode{x}
		case *ast.SequenceNode:
			if merging && !d.expand(n, path, 1+len(x.Values)) {
				return false
			}
			if !merging {
				d.fail(n, path, "expected a mapping, got %s", describe(n))
				return false
			}
			for _, e := range x.Values {
				if !walk(e, true, depth+1) {
					return false
				}
			}
			return true
		default:
			if merging {
				d.fail(n, path, "<< must merge a mapping or a list of mappings, got %s", describe(n))
			} else {
				d.fail(n, path, "expected a mapping, got %s", describe(n))
			}
			return false
		}
		// Merged mappings are counted like aliases: a merge of merges of
		// the same anchors ("<<: [*a, *a, …]" over levels) grows
		// exponentially with the levels.
		if merging && !d.expand(n, path, 1+len(values)) {
			return false
		}
		for _, mv := range values {
			if mv == nil || mv.Key == nil {
				continue
			}
			if mv.Key.IsMergeKey() {
				if !walk(mv.Value, true, depth+1) {
					return false
				}
				continue
			}
			k, ok := keyText(d.doc, mv.Key)
			if !ok {
				d.fail(mv.Key, path, "keys must be strings, got %s", describe(mv.Key))
				continue
			}
			e := entry{key: k, keyN: mv.Key, value: mv.Value}
			if merging {
				merged = append(merged, e)
				continue
			}
			if first, dup := seen[k]; dup {
				d.fail(mv.Key, keyPath(path, k), "duplicate key (first at %s)",
					firstAt(nodePos(d.doc.file, first), nodePos(d.doc.file, mv.Key)))
				continue
			}
			seen[k] = mv.Key
			own = append(own, e)
		}
		return true
	}
	if d.outer == nil {
		d.outer = n
		defer func() { d.outer = nil }()
	}
	if !walk(n, false, depth) {
		return nil, false
	}
	for _, e := range merged {
		if _, ok := seen[e.key]; !ok {
			seen[e.key] = e.keyN
			own = append(own, e)
		}
	}
	return own, true
}

// structure decodes a mapping into a struct by its yaml tags.
func (d *decoder) structure(n ast.Node, path string, v reflect.Value, depth int) {
	entries, ok := d.entries(n, path, depth)
	if !ok {
		return
	}
	fs := fieldsOf(v.Type())
	for _, e := range entries {
		idx, ok := fs.byKey[e.key]
		if !ok {
			msg := "unknown key"
			if s := suggest(e.key, fs.keys); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			} else if len(fs.keys) <= 12 {
				msg += " (known keys: " + strings.Join(fs.keys, ", ") + ")"
			}
			d.fail(e.keyN, keyPath(path, e.key), "%s", msg)
			continue
		}
		fv, ok := fieldByIndex(v, idx)
		if !ok {
			d.fail(e.keyN, keyPath(path, e.key), "cannot decode into a nil embedded pointer")
			continue
		}
		d.decode(e.value, keyPath(path, e.key), fv, depth+1)
	}
}

// fieldByIndex is reflect.Value.FieldByIndex that allocates nil embedded
// pointers on the way.
func fieldByIndex(v reflect.Value, idx []int) (reflect.Value, bool) {
	for i, x := range idx {
		if i > 0 && v.Kind() == reflect.Pointer {
			if v.IsNil() {
				if !v.CanSet() {
					return reflect.Value{}, false
				}
				v.Set(reflect.New(v.Type().Elem()))
			}
			v = v.Elem()
		}
		v = v.Field(x)
	}
	return v, true
}

// fields is a struct type's keys.
type fields struct {
	byKey map[string][]int
	keys  []string // in field order
}

var fieldCache sync.Map // reflect.Type -> *fields

// fieldsOf returns the keys of a struct: the yaml tag name, or the
// lowercased field name without a tag (as goccy/go-yaml does). Embedded
// structs without a name and fields tagged ",inline" are flattened.
func fieldsOf(t reflect.Type) *fields {
	if f, ok := fieldCache.Load(t); ok {
		return f.(*fields)
	}
	fs := &fields{byKey: map[string][]int{}}
	var add func(t reflect.Type, prefix []int, depth int)
	add = func(t reflect.Type, prefix []int, depth int) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("yaml")
			name, opts, _ := strings.Cut(tag, ",")
			if name == "-" && opts == "" {
				continue
			}
			idx := append(slices.Clone(prefix), i)
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			inline := slices.Contains(strings.Split(opts, ","), "inline") || f.Anonymous && name == ""
			if inline && ft.Kind() == reflect.Struct && depth < 8 {
				add(ft, idx, depth+1)
				continue
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			if _, dup := fs.byKey[name]; dup {
				continue // the shallower (earlier) field wins
			}
			fs.byKey[name] = idx
			fs.keys = append(fs.keys, name)
		}
	}
	add(t, nil, 0)
	f, _ := fieldCache.LoadOrStore(t, fs)
	return f.(*fields)
}

// resolve follows tags, anchors and aliases to the value node. It stops
// after MaxDepth steps (an alias cycle) and returns what it reached.
func resolve(doc *document, n ast.Node) ast.Node {
	for range MaxDepth {
		switch t := n.(type) {
		case *ast.TagNode:
			n = t.Value
		case *ast.AnchorNode:
			n = t.Value
		case *ast.AliasNode:
			a := doc.anchorFor(t)
			if a == nil {
				return n
			}
			n = a.Value
		default:
			return n
		}
	}
	return n
}

// keyText is a mapping key as a string.
func keyText(doc *document, k ast.Node) (string, bool) {
	if mk, ok := k.(*ast.MappingKeyNode); ok {
		k = mk.Value
	}
	k = resolve(doc, k)
	switch k.(type) {
	case *ast.BoolNode, *ast.NullNode:
		return tokenText(k), k.GetToken() != nil
	}
	return scalarText(k)
}

// scalarText is the text of a string or number scalar. Booleans are left
// out on purpose: `policy: no` is almost always a mistake.
func scalarText(n ast.Node) (string, bool) {
	switch t := n.(type) {
	case *ast.StringNode:
		return t.Value, true
	case *ast.LiteralNode:
		if t.Value == nil {
			return "", true
		}
		return t.Value.Value, true
	case *ast.IntegerNode, *ast.FloatNode, *ast.InfinityNode, *ast.NanNode:
		return tokenText(n), n.GetToken() != nil
	}
	return "", false
}

func tokenText(n ast.Node) string {
	if n == nil || n.GetToken() == nil {
		return ""
	}
	return n.GetToken().Value
}

// describe names a value for "expected X, got Y" messages.
func describe(n ast.Node) string {
	switch t := n.(type) {
	case nil, *ast.NullNode:
		return "null"
	case *ast.StringNode:
		return "string " + quoteShort(t.Value)
	case *ast.LiteralNode:
		return "a text block"
	case *ast.IntegerNode:
		return "integer " + tokenText(n)
	case *ast.FloatNode, *ast.InfinityNode, *ast.NanNode:
		return "number " + tokenText(n)
	case *ast.BoolNode:
		return "boolean " + tokenText(n)
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case *ast.TagNode:
		return describe(t.Value)
	case *ast.AnchorNode:
		return describe(t.Value)
	case *ast.AliasNode:
		return "an alias"
	}
	return "a " + strings.ToLower(n.Type().String())
}

// quoteShort quotes s, shortened to 64 bytes.
func quoteShort(s string) string {
	if len(s) > 64 {
		cut := 64
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return strconv.Quote(s[:cut]) + "…"
	}
	return strconv.Quote(s)
}

// keyPath appends a mapping key to a path.
func keyPath(path, key string) string {
	plain := key != ""
	for _, r := range key {
		if !(r == '_' || r == '-' || r < utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r))) {
			plain = false
			break
		}
	}
	if !plain {
		return path + "[" + strconv.Quote(key) + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// lookup returns the node at a path relative to n ("peers[0].endpoint",
// `labels["a.b"]`) and true, or, when the path does not exist, the deepest
// node on the way and false.
func lookup(doc *document, n ast.Node, path string) (ast.Node, bool) {
	cur := n
	for path != "" {
		var key string
		index := -1
		switch {
		case strings.HasPrefix(path, "."):
			path = path[1:]
			continue
		case strings.HasPrefix(path, `["`):
			q, err := strconv.QuotedPrefix(path[1:])
			if err != nil || !strings.HasPrefix(path[1+len(q):], "]") {
				return cur, false
			}
			key, _ = strconv.Unquote(q)
			path = path[1+len(q)+1:]
		case strings.HasPrefix(path, "["):
			end := strings.IndexByte(path, ']')
			if end < 0 {
				return cur, false
			}
			i, err := strconv.Atoi(path[1:end])
			if err != nil || i < 0 {
				return cur, false
			}
			index, path = i, path[end+1:]
		default:
			end := strings.IndexAny(path, ".[")
			if end < 0 {
				end = len(path)
			}
			key, path = path[:end], path[end:]
		}
		next := child(doc, cur, key, index)
		if next == nil {
			return cur, false
		}
		cur = next
	}
	return cur, cur != nil
}

// child is a mapping's value for key, or a list's item at index (>= 0).
// A mapping's own keys come first, then those merged in with "<<" (in
// order, the first merge that has key wins, as in decoding). Merges are
// followed at most MaxDepth deep and, over all lookups in a document, for
// at most MaxAliasValues mappings: lookups only find positions for
// messages, and a hostile file must not make each of them walk an
// exponential graph of merges (past the budget, a message points at the
// enclosing value).
func child(doc *document, n ast.Node, key string, index int) ast.Node {
	return childOf(doc, n, key, index, 0)
}

func childOf(doc *document, n ast.Node, key string, index, depth int) ast.Node {
	switch t := resolve(doc, n).(type) {
	case *ast.SequenceNode:
		if index >= 0 && index < len(t.Values) {
			return t.Values[index]
		}
	case *ast.MappingNode:
		if index >= 0 {
			return nil
		}
		for _, mv := range t.Values {
			if mv == nil || mv.Key == nil || mv.Key.IsMergeKey() {
				continue
			}
			if k, ok := keyText(doc, mv.Key); ok && k == key {
				return mv.Value
			}
		}
		if depth >= MaxDepth || doc == nil {
			return nil
		}
		for _, mv := range t.Values {
			if mv == nil || mv.Key == nil || !mv.Key.IsMergeKey() {
				continue
			}
			sources := []ast.Node{mv.Value}
			if seq, ok := resolve(doc, mv.Value).(*ast.SequenceNode); ok {
				sources = seq.Values
			}
			for _, src := range sources {
				if doc.merges.Add(1) > MaxAliasValues {
					return nil
				}
				if v := childOf(doc, src, key, -1, depth+1); v != nil {
					return v
				}
			}
		}
	case *ast.MappingValueNode:
		if k, ok := keyText(doc, t.Key); ok && k == key && index < 0 {
			return t.Value
		}
	}
	return nil
}

// present reports whether path names a non-null value.
func present(doc *document, root ast.Node, path string) bool {
	n, ok := lookup(doc, root, path)
	if !ok {
		return false
	}
	_, null := resolve(doc, n).(*ast.NullNode)
	return !null
}

// firstAt names where the first of two duplicates is: "line 3", or
// "line 3 column 9" when the second is on the same line.
func firstAt(first, second Position) string {
	if first.Line == second.Line {
		return fmt.Sprintf("line %d column %d", first.Line, first.Col)
	}
	return fmt.Sprintf("line %d", first.Line)
}

// suggest returns the known key closest to key, if one is close.
func suggest(key string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if dist := editDistance(key, k); dist < bestD && dist < len(k) {
			best, bestD = k, dist
		}
	}
	return best
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and swaps of neighbours each cost 1.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return math.MaxInt
	}
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// lowerFirst lowercases the first letter of a message unless it starts an
// acronym ("IPv4 address too short" stays).
func lowerFirst(s string) string {
	r, size := utf8.DecodeRuneInString(s)
	if !unicode.IsUpper(r) {
		return s
	}
	if next, _ := utf8.DecodeRuneInString(s[size:]); unicode.IsUpper(next) {
		return s
	}
	return string(unicode.ToLower(r)) + s[size:]
}

// sorted sorts errors by position, drops repeats and caps them at
// MaxErrors.
func (es Errors) sorted() Errors {
	sort.SliceStable(es, func(i, j int) bool {
		a, b := es[i].Pos, es[j].Pos
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
	out := es[:0]
	seen := map[string]bool{}
	for _, e := range es {
		s := e.Error()
		if !seen[s] {
			seen[s] = true
			out = append(out, e)
		}
	}
	if len(out) > MaxErrors {
		rest := len(out) - MaxErrors
		first := out[MaxErrors]
		out = append(out[:MaxErrors:MaxErrors], &Error{Pos: first.Pos, Msg: fmt.Sprintf("%d more errors not shown", rest)})
	}
	return out
}
