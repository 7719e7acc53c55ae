package config

// scanYAML bounds what the YAML parser would spend on a text before it sees
// it. goccy/go-yaml's parser is not linear in everything:
//
//  1. nesting: it recurses and copies per level, so n nested collections
//     cost O(n²) time and memory (40 000 levels of "[" are 80 KB of text and
//     took 1.9 s and 2.5 GB);
//  2. the keys of one block mapping: it recurses once per key and copies
//     the keys parsed so far at each (20 000 keys, 190 KB: 5.6 s, 1.6 GB);
//  3. every value costs several hundred bytes of tokens and nodes (a flow
//     list of one-character items: 377 MB for 1 MB of text);
//  4. every empty value ("key:" or "-" with nothing after) inserts a null
//     token by copying all tokens after it (200,000 "-" lines, 400 KB,
//     took 22 s).
//
// So before parsing, one pass over the bytes checks MaxFileBytes, MaxDepth,
// MaxMappingKeys, MaxValues and MaxEmptyValues. It follows YAML's lexical structure only as
// far as the limits need: comments, quoted scalars (which may span lines),
// block scalars (| and >), flow collections ([ ] { }), and the columns at
// which block sequences (- ), block mappings (key: ) and complex keys (? )
// start. Its counts can differ a little from the parser's (a plain scalar
// continued on a more indented line that holds ": " counts as a mapping),
// but every collection the parser nests is counted, and memory is the
// stack of open block collections, at most MaxDepth entries.

import (
	"bytes"
	"fmt"
	"unicode/utf8"
)

// scanLevel is an open block collection.
type scanLevel struct {
	col  int  // byte column of its entries' indicator or key
	seq  bool // a sequence (- entries), else a mapping
	keys int  // entries of a mapping so far
}

type scanner struct {
	file   string
	stack  []scanLevel // open block collections, outermost first
	flow   int         // open flow collections
	values int         // nodes started

	quote        byte // ' or " while a quoted scalar is open, else 0
	blockScalar  bool // inside the lines of a | or > scalar
	scalarParent int  // the column its lines must be indented beyond

	atStart   bool // the next token starts a node
	nodeStart int  // byte column where the current node started, -1 for none
	flowStart int  // nodeStart of the outermost open flow collection

	// Empty values. In block context, an entry or key whose line ends
	// before its value (lastEntry) is pending until the next line shows
	// whether its value follows there, indented. In flow context, each
	// open collection's current entry is followed.
	empty     int
	lastEntry bool // the last token of the line was "-", "?" or a key's ":"
	lastCol   int  // that entry's (or key's mapping's) column
	lastKey   bool // it was a key, whose value may also be a list at its column
	pending   *Error
	flows     []flowEntry
	jsonKey   bool // a quoted scalar or a flow collection just ended: ":" may follow without a space
}

// flowEntry is the state of the entry being read in an open flow
// collection.
type flowEntry struct {
	mapping bool // {…}, where an entry without ":" is a key without value
	content bool // the entry has a key or value
	colon   bool // it has its ":"
	blank   bool // nothing came since the ":"
}

// utf8BOM is the byte order mark a YAML stream may start with.
var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// scanYAML returns the first place data exceeds a parsing limit, or nil.
func scanYAML(file string, data []byte) *Error {
	if len(data) > MaxFileBytes {
		line, col := lineCol(data, MaxFileBytes)
		return &Error{Pos: Position{File: file, Line: line, Col: col},
			Msg: fmt.Sprintf("the file is larger than %d bytes (%d KiB), the most a config may be", MaxFileBytes, MaxFileBytes>>10)}
	}
	s := &scanner{file: file, nodeStart: -1}
	text := bytes.TrimPrefix(data, utf8BOM)
	for line := 1; len(text) > 0; line++ {
		end := bytes.IndexAny(text, "\r\n")
		if end < 0 {
			end = len(text)
		}
		if err := s.line(text[:end], line); err != nil {
			return err
		}
		if s.flow == 0 && s.quote == 0 && !s.blockScalar && s.lastEntry && s.pending == nil {
			b := text[:end]
			s.pending = &Error{Pos: Position{File: file, Line: line, Col: runeCol(b, s.lastCol)}}
		}
		switch {
		case end == len(text):
			text = nil
		case text[end] == '\r' && end+1 < len(text) && text[end+1] == '\n':
			text = text[end+2:]
		default:
			text = text[end+1:]
		}
	}
	if s.pending != nil {
		return s.emptyValue(s.pending.Pos)
	}
	return nil
}

// line scans one line (without its line break).
func (s *scanner) line(b []byte, line int) *Error {
	i := 0
	switch {
	case s.quote != 0:
		closed := false
		if i, closed = skipQuoted(b, 0, s.quote); !closed {
			return nil
		}
		s.quote = 0
	case s.blockScalar:
		indent := countIndent(b)
		if indent == len(b) || indent > s.scalarParent {
			return nil // a blank line or a line of the scalar
		}
		s.blockScalar = false
	}
	if i == 0 && s.flow == 0 {
		// Block context at the start of a line: the indentation closes
		// the collections it is left of.
		indent := countIndent(b)
		rest := b[indent:]
		switch {
		case len(rest) == 0 || rest[0] == '#':
			return nil
		case indent == 0 && b[0] == '%':
			return nil // a directive
		}
		if s.pending != nil {
			// The entry or key of an earlier line has its value here if
			// this line is indented more, or, for a key, is a list entry
			// at its column.
			nested := indent > s.lastCol || s.lastKey && indent == s.lastCol && rest[0] == '-' && wsOrEnd(rest, 1)
			if !nested {
				if err := s.emptyValue(s.pending.Pos); err != nil {
					return err
				}
			}
			s.pending = nil
		}
		s.lastEntry = false
		if indent == 0 && (bytes.HasPrefix(b, []byte("---")) || bytes.HasPrefix(b, []byte("..."))) && wsOrEnd(b, 3) {
			s.stack = s.stack[:0] // a document starts or ends
			i = 3
		} else {
			s.close(indent)
			i = indent
		}
		s.startNode()
	}
	for i < len(b) {
		c := b[i]
		switch {
		case c == ' ' || c == '\t':
			i++
			continue
		case c == '#' && (i == 0 || b[i-1] == ' ' || b[i-1] == '\t'):
			return nil // a comment to the end of the line
		}
		var err *Error
		if s.flow > 0 {
			i, err = s.flowToken(b, i, line)
		} else {
			i, err = s.blockToken(b, i, line)
		}
		if err != nil || i < 0 {
			return err
		}
	}
	return nil
}

// flowToken scans the token at b[i] inside a flow collection, where every
// bracket, brace and comma is an indicator. It returns where scanning
// continues, -1 when the rest of the line is taken (an open quote).
func (s *scanner) flowToken(b []byte, i, line int) (int, *Error) {
	jsonKey := s.jsonKey
	s.jsonKey = false
	switch c := b[i]; c {
	case '[', '{':
		s.flow++
		s.flowContent()
		s.flows = append(s.flows, flowEntry{mapping: c == '{'})
		if err := s.counted(b, i, line); err != nil {
			return 0, err
		}
		if err := s.deep(b, i, line); err != nil {
			return 0, err
		}
		s.startNode()
	case ']', '}', ',':
		if err := s.flowEntryEnd(b, i, line); err != nil {
			return 0, err
		}
		if c == ',' {
			s.startNode()
			break
		}
		s.flow--
		s.flows = s.flows[:len(s.flows)-1]
		s.atStart = false
		s.jsonKey = true
		if s.flow == 0 {
			s.nodeStart = s.flowStart // a flow collection may be a key: "[a, b]: c"
		}
	case ':', '?', '-':
		if wsOrEnd(b, i+1) || c == ':' && (s.atStart || jsonKey) {
			if c == ':' && len(s.flows) > 0 {
				top := &s.flows[len(s.flows)-1]
				top.colon, top.blank = true, true
			}
			s.startNode()
			break
		}
		return s.plain(b, i, line)
	case '\'', '"':
		if s.atStart {
			s.jsonKey = true
			return s.quoted(b, i, line)
		}
		return s.plain(b, i, line)
	default:
		return s.plain(b, i, line)
	}
	return i + 1, nil
}

// flowContent notes a key or value in the current flow entry.
func (s *scanner) flowContent() {
	if len(s.flows) > 0 {
		top := &s.flows[len(s.flows)-1]
		top.content, top.blank = true, false
	}
}

// flowEntryEnd ends the current entry of a flow collection at b[i] (a comma
// or the closing bracket), counting its empty value if it has one: "a: ,"
// or a key without ":" in a mapping.
func (s *scanner) flowEntryEnd(b []byte, i, line int) *Error {
	if len(s.flows) == 0 {
		return nil
	}
	top := &s.flows[len(s.flows)-1]
	empty := top.colon && top.blank || top.mapping && top.content && !top.colon
	*top = flowEntry{mapping: top.mapping}
	if !empty {
		return nil
	}
	return s.emptyValue(Position{File: s.file, Line: line, Col: runeCol(b, i)})
}

// emptyValue counts an empty value at pos against MaxEmptyValues.
func (s *scanner) emptyValue(pos Position) *Error {
	s.empty++
	if s.empty <= MaxEmptyValues {
		return nil
	}
	return &Error{Pos: pos, Msg: fmt.Sprintf("more than %d empty values (a key or list entry without a value), the most a config may hold", MaxEmptyValues)}
}

// blockToken scans the token at b[i] outside flow collections.
func (s *scanner) blockToken(b []byte, i, line int) (int, *Error) {
	c := b[i]
	if !s.atStart {
		if c == ':' && wsOrEnd(b, i+1) {
			// What came before was a key: the mapping starts where it did.
			if err := s.enter(b, s.nodeStart, false, line); err != nil {
				return 0, err
			}
			s.startNode()
		}
		return i + 1, nil
	}
	switch {
	case (c == '-' || c == '?') && wsOrEnd(b, i+1):
		// A sequence entry, or a complex key of a mapping; its node
		// follows on this line or the next ones.
		if err := s.enter(b, i, c == '-', line); err != nil {
			return 0, err
		}
		s.startNode()
		return i + 1, nil
	case c == ':' && wsOrEnd(b, i+1):
		// The value of a complex key, or of an empty key.
		if err := s.enter(b, i, false, line); err != nil {
			return 0, err
		}
		s.startNode()
		return i + 1, nil
	case c == '[' || c == '{':
		s.lastEntry = false
		s.flow = 1
		s.flows = append(s.flows[:0], flowEntry{mapping: c == '{'})
		s.flowStart = s.nodeStart
		if s.flowStart < 0 {
			s.flowStart = i
		}
		if err := s.counted(b, i, line); err != nil {
			return 0, err
		}
		if err := s.deep(b, i, line); err != nil {
			return 0, err
		}
		s.startNode()
		return i + 1, nil
	case c == '|' || c == '>':
		// A block scalar: the rest of this line is its header, and the
		// lines indented beyond its parent collection are its text.
		s.lastEntry = false
		if err := s.counted(b, i, line); err != nil {
			return 0, err
		}
		s.blockScalar = true
		s.scalarParent = -1
		if len(s.stack) > 0 {
			s.scalarParent = s.stack[len(s.stack)-1].col
		}
		return -1, nil
	case c == '&' || c == '!':
		// An anchor or a tag: the node it belongs to follows.
		if s.nodeStart < 0 {
			s.nodeStart = i
		}
		for i < len(b) && b[i] != ' ' && b[i] != '\t' {
			i++
		}
		return i, nil
	case c == '\'' || c == '"':
		return s.quoted(b, i, line)
	}
	return s.plain(b, i, line)
}

// plain starts a plain scalar (or an alias) at b[i].
func (s *scanner) plain(b []byte, i, line int) (int, *Error) {
	if s.atStart {
		s.lastEntry = false
		s.flowContent()
		if err := s.counted(b, i, line); err != nil {
			return 0, err
		}
		if s.nodeStart < 0 {
			s.nodeStart = i
		}
		s.atStart = false
	}
	return i + 1, nil
}

// quoted starts a quoted scalar at b[i] and skips it, to the next lines if
// it does not end on this one.
func (s *scanner) quoted(b []byte, i, line int) (int, *Error) {
	s.lastEntry = false
	s.flowContent()
	if err := s.counted(b, i, line); err != nil {
		return 0, err
	}
	if s.nodeStart < 0 {
		s.nodeStart = i
	}
	s.atStart = false
	end, closed := skipQuoted(b, i+1, b[i])
	if !closed {
		s.quote = b[i]
		return -1, nil
	}
	return end, nil
}

// skipQuoted returns the index after the quote that closes a scalar opened
// with q, looking from b[i], and whether the line holds it.
func skipQuoted(b []byte, i int, q byte) (int, bool) {
	for i < len(b) {
		switch c := b[i]; {
		case q == '"' && c == '\\':
			i += 2
		case c == q && q == '\'' && i+1 < len(b) && b[i+1] == '\'':
			i += 2 // '' is a quote inside single quotes
		case c == q:
			return i + 1, true
		default:
			i++
		}
	}
	return len(b), false
}

// startNode notes that the next token starts a node.
func (s *scanner) startNode() {
	s.atStart = true
	s.nodeStart = -1
}

// close ends the block collections whose column is right of col.
func (s *scanner) close(col int) {
	for len(s.stack) > 0 && s.stack[len(s.stack)-1].col > col {
		s.stack = s.stack[:len(s.stack)-1]
	}
}

// enter notes a block sequence entry (seq) or mapping key at column col:
// an entry of the collection open at that column, or the first one of a
// new, nested collection.
func (s *scanner) enter(b []byte, col int, seq bool, line int) *Error {
	if col < 0 {
		col = 0
	}
	s.close(col)
	s.noteEntry(col, seq)
	if n := len(s.stack); n > 0 && s.stack[n-1].col == col {
		top := &s.stack[n-1]
		if top.seq && !seq && n > 1 && s.stack[n-2].col == col {
			// A key at the column of a sequence that is the value of the
			// key before it ("a:\n- x\nb: y"): the sequence has ended.
			s.stack = s.stack[:n-1]
			top = &s.stack[n-2]
		}
		switch {
		case top.seq == seq && seq:
			return s.counted(b, col, line) // an entry may hold nothing else
		case top.seq == seq:
			top.keys++
			if top.keys > MaxMappingKeys {
				line, c := line, runeCol(b, col)
				return &Error{Pos: Position{File: s.file, Line: line, Col: c},
					Msg: fmt.Sprintf("a mapping with more than %d keys", MaxMappingKeys)}
			}
			return nil
		}
		// A sequence at the column of the key whose value it is.
	}
	s.stack = append(s.stack, scanLevel{col: col, seq: seq, keys: 1})
	if err := s.deep(b, col, line); err != nil {
		return err
	}
	if seq {
		return s.counted(b, col, line)
	}
	return nil
}

// noteEntry notes a block entry or key whose value has not started.
func (s *scanner) noteEntry(col int, seq bool) {
	s.lastEntry, s.lastCol, s.lastKey = true, col, !seq
}

// deep reports nesting beyond MaxDepth at b[i].
func (s *scanner) deep(b []byte, i, line int) *Error {
	if len(s.stack)+s.flow <= MaxDepth {
		return nil
	}
	return &Error{Pos: Position{File: s.file, Line: line, Col: runeCol(b, i)},
		Msg: fmt.Sprintf("nested too deeply (more than %d levels)", MaxDepth)}
}

// counted counts a node that starts at b[i] against MaxValues.
func (s *scanner) counted(b []byte, i, line int) *Error {
	s.values++
	if s.values <= MaxValues {
		return nil
	}
	return &Error{Pos: Position{File: s.file, Line: line, Col: runeCol(b, i)},
		Msg: fmt.Sprintf("more than %d yaml values, the most a config may hold", MaxValues)}
}

// wsOrEnd reports whether b[i] is white space or past the end of the line.
func wsOrEnd(b []byte, i int) bool { return i >= len(b) || b[i] == ' ' || b[i] == '\t' }

// countIndent counts the white space a line starts with. YAML indents
// with spaces only; a tab counts as a column here, as the parser counts it,
// so that tabs cannot hide nesting.
func countIndent(b []byte) int {
	n := 0
	for n < len(b) && (b[n] == ' ' || b[n] == '\t') {
		n++
	}
	return n
}

// runeCol is the 1-based column of b[i] in characters, as the parser
// counts them.
func runeCol(b []byte, i int) int { return utf8.RuneCount(b[:min(i, len(b))]) + 1 }

// lineCol is the 1-based line and column of data[off].
func lineCol(data []byte, off int) (int, int) {
	off = min(off, len(data))
	before := data[:off]
	line := 1 + bytes.Count(before, []byte("\n")) + bytes.Count(before, []byte("\r")) - bytes.Count(before, []byte("\r\n"))
	start := bytes.LastIndexAny(before, "\r\n") + 1
	return line, runeCol(before[start:], off-start)
}
