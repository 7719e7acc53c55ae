package config

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Bounds of refusing a hostile file (issue 12, finding 4): generous enough
// for -race on a loaded machine, far below what the parser took
// (100,000 levels: 16 s and 15 GB).
const (
	refuseTime  = time.Second
	refuseBytes = 100 << 20 // allocated while refusing, all of it counted
)

// measure runs f and returns its wall time and the bytes it allocated.
func measure(f func()) (time.Duration, uint64) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	f()
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	return took, after.TotalAlloc - before.TotalAlloc
}

// indented returns n lines of line, each indented by step more columns
// than the one before.
func indented(n, step int, line string) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(strings.Repeat(" ", i*step))
		b.WriteString(line)
		b.WriteString("\n")
	}
	return b.String()
}

// TestDeepNestingRefused is finding 4 of issue 12: 100,000 levels of
// nesting, in every way YAML nests, are refused by `switchyard check`
// (Load) in under a second and 100 MB, at the position where the nesting
// passes MaxDepth.
func TestDeepNestingRefused(t *testing.T) {
	const levels = 100_000
	dir := t.TempDir()
	tests := []struct {
		name, src, want string
	}{
		{"flow lists", "node: " + strings.Repeat("[", levels) + strings.Repeat("]", levels) + "\n",
			":1:106: nested too deeply (more than 100 levels)"},
		{"flow mappings", strings.Repeat("{a: ", levels) + "1" + strings.Repeat("}", levels) + "\n",
			":1:401: nested too deeply (more than 100 levels)"},
		{"block lists on one line", strings.Repeat("- ", levels) + "x\n",
			":1:201: nested too deeply (more than 100 levels)"},
		// Nesting by indentation costs the file quadratic bytes, so
		// MaxFileBytes allows some 1400 levels of it.
		{"block mappings", indented(1400, 1, "a:"),
			":101:101: nested too deeply (more than 100 levels)"},
		{"block lists of mappings", indented(700, 2, "- a:"),
			":51:101: nested too deeply (more than 100 levels)"},
		{"tab indentation", strings.ReplaceAll(indented(1400, 1, "a:"), " ", "\t"),
			":101:101: nested too deeply (more than 100 levels)"},
		{"flow lists as keys", indented(1000, 1, "[a]:"),
			":101:101: nested too deeply (more than 100 levels)"},
		{"quoted keys", indented(1000, 1, `"a":`),
			":101:101: nested too deeply (more than 100 levels)"},
		{"crlf line breaks", strings.ReplaceAll(indented(1400, 1, "a:"), "\n", "\r\n"),
			":101:101: nested too deeply (more than 100 levels)"},
		{"after a byte order mark", "\ufeffnode: " + strings.Repeat("[", levels) + "\n",
			":1:106: nested too deeply (more than 100 levels)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-")+".yaml")
			if err := os.WriteFile(path, []byte(tt.src), 0o600); err != nil {
				t.Fatal(err)
			}
			var err error
			took, bytes := measure(func() { _, err = Load(path) })
			if err == nil {
				t.Fatal("Load succeeded")
			}
			if got, want := err.Error(), path+tt.want; got != want {
				t.Errorf("got:\n%s\nwant:\n%s", got, want)
			}
			if took > refuseTime || bytes > refuseBytes {
				t.Errorf("refusing %d bytes took %v and %d MB, want under %v and %d MB",
					len(tt.src), took, bytes>>20, refuseTime, refuseBytes>>20)
			}
			t.Logf("%d bytes refused in %v, %d KB allocated", len(tt.src), took, bytes>>10)
		})
	}
}

// TestAliasBombRefused: aliases and merge keys that expand exponentially
// ("billion laughs") are refused in under a second and 100 MB, wherever
// they are expanded: in the config, in protocol settings (which each
// protocol decodes with a decoder of its own) and in the lookups of
// positions through merges.
func TestAliasBombRefused(t *testing.T) {
	// laughs returns 9 levels of 10 aliases of the level below, 10^9
	// values, under the key x (which decoding refuses without expanding
	// it). form writes one level from its anchor and the alias below.
	laughs := func(form func(anchor, below string) string) string {
		var b strings.Builder
		b.WriteString("x:\n  - &l0 {lol: 1}\n")
		for i := 1; i <= 9; i++ {
			b.WriteString(form(fmt.Sprintf("l%d", i), fmt.Sprintf("*l%d", i-1)))
		}
		return b.String()
	}
	lists := laughs(func(anchor, below string) string {
		return fmt.Sprintf("  - &%s [%s]\n", anchor, strings.TrimSuffix(strings.Repeat(below+", ", 10), ", "))
	})
	merges := laughs(func(anchor, below string) string {
		return fmt.Sprintf("  - &%s {%s}\n", anchor, strings.TrimSuffix(strings.Repeat("<<: "+below+", ", 10), ", "))
	})
	mergeLists := laughs(func(anchor, below string) string {
		return fmt.Sprintf("  - &%s {<<: [%s]}\n", anchor, strings.TrimSuffix(strings.Repeat(below+", ", 10), ", "))
	})
	settings := func(n int, value string) string {
		var b strings.Builder
		b.WriteString("protocols:\n")
		for i := range n {
			fmt.Fprintf(&b, "  - {name: p%d, type: udp, settings: %s}\n", i, value)
		}
		return b.String()
	}
	const aliasValues = "aliases expand to more than 100000 values"
	tests := []struct {
		name, src string
		want      string
	}{
		{"merge keys", merges + "routes:\n  - {<<: *l9}\n",
			"gw.yaml:13:6: routes[0]: " + aliasValues},
		{"lists of merges", mergeLists + "routes:\n  - {<<: *l9}\n",
			"gw.yaml:13:6: routes[0]: " + aliasValues},
		{"in settings", lists + settings(1, "{a: *l9}"),
			"gw.yaml:13:38: protocols[0].settings: " + aliasValues + " in all settings blocks"},
		{"in settings, a little in each of many protocols", lists + settings(100, "{a: *l4}"),
			"gw.yaml:14:38: protocols[1].settings: " + aliasValues + " in all settings blocks"},
		{"a long scalar in settings", "x:\n  - &s \"" + strings.Repeat("s", 100_000) + "\"\n" + settings(20, "{a: *s}"),
			"gw.yaml:14:39: protocols[10].settings: aliases expand to more than 1048576 bytes of text in all settings blocks"},
		{"a merge into itself", "protocols: [&p {<<: *p, name: a}]\n",
			"gw.yaml:1:21: protocols[0]: << merges a mapping into itself"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			took, bytes := measure(func() { _, err = Parse("gw.yaml", []byte(tt.src)) })
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error does not say %q:\n%.2000s", tt.want, err)
			}
			if took > refuseTime || bytes > refuseBytes {
				t.Errorf("refusing %d bytes took %v and %d MB, want under %v and %d MB",
					len(tt.src), took, bytes>>20, refuseTime, refuseBytes>>20)
			}
		})
	}

	// A settings block is decoded by its protocol, and positions of its
	// fields are looked up through its merges; a protocol host decodes it
	// from NewSettings.
	t.Run("settings lookups and decoding", func(t *testing.T) {
		src := merges + "peers:\n" + strings.Repeat("  - {<<: *l9, <<: *l9, a: 1}\n", 100)
		s, err := NewSettings("gw.yaml", "protocols[0].settings", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		var e *Error
		took, bytes := measure(func() {
			for i := range 100 {
				e = s.Errorf(fmt.Sprintf("peers[%d].missing", i), "required")
			}
			var v any
			err = s.Decode(&v)
		})
		if got, want := e.Error(), "gw.yaml:112:6: protocols[0].settings.peers[99].missing: required"; got != want {
			t.Errorf("Errorf: got %q, want %q", got, want)
		}
		if err == nil || !strings.Contains(err.Error(), aliasValues) {
			t.Errorf("Decode: %v", err)
		}
		if took > refuseTime || bytes > refuseBytes {
			t.Errorf("took %v and %d MB, want under %v and %d MB", took, bytes>>20, refuseTime, refuseBytes>>20)
		}
	})
}

// TestLargestFilesParse: what the scan lets through is parsed within
// bounds, for the shapes that cost the parser most per byte. Without
// -race only: the race detector makes the parser 5-10 times slower.
func TestLargestFilesParse(t *testing.T) {
	if raceEnabled {
		t.Skip("parse times mean nothing under -race")
	}
	const (
		parseTime  = 5 * time.Second // about 1 s here
		parseBytes = 256 << 20       // allocated, all of it counted
	)
	tests := []struct{ name, src string }{
		{"flow list of empty mappings", "a: [" + strings.Repeat("{},", MaxValues-3) + "1]\n"},
		{"empty values, then values", "a:\n" + strings.Repeat("  -\n", MaxEmptyValues-1) + "b: [" + strings.Repeat("1,", MaxValues-MaxEmptyValues-10) + "1]\n"},
		{"block-style routes", "routes:\n" + strings.Repeat("  - prefix: 10.0.0.0/24\n    action: drop\n", MaxValues/5-1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := scanYAML("gw.yaml", []byte(tt.src)); err != nil {
				t.Fatalf("the scan refuses it: %v", err)
			}
			took, bytes := measure(func() { _, _ = Parse("gw.yaml", []byte(tt.src)) })
			if took > parseTime || bytes > parseBytes {
				t.Errorf("parsing %d bytes took %v and %d MB, want under %v and %d MB", len(tt.src), took, bytes>>20, parseTime, parseBytes>>20)
			}
			t.Logf("%d bytes parsed in %v, %d MB allocated", len(tt.src), took, bytes>>20)
		})
	}
}

// TestScanYAML checks the scan's limits at their edges, and that what only
// looks like nesting (brackets in quotes, comments, block scalars and plain
// scalars) is not counted.
func TestScanYAML(t *testing.T) {
	nested := func(n int) string { return "a: " + strings.Repeat("[", n-1) + strings.Repeat("]", n-1) + "\n" }
	keys := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "k%d: v\n", i)
		}
		return b.String()
	}
	tests := []struct {
		name, src, want string
	}{
		{"MaxDepth levels", nested(MaxDepth), ""},
		{"one level more", nested(MaxDepth + 1), "gw.yaml:1:103: nested too deeply (more than 100 levels)"},
		{"brackets in quotes", "a: '" + strings.Repeat("[", 200) + "'\nb: \"\\\"" + strings.Repeat("{", 200) + "\"\n", ""},
		{"brackets in a quoted scalar over lines", "a: \"x\n" + strings.Repeat("[", 200) + "\n  \"\nb: [c]\n", ""},
		{"brackets in comments", "a: b # " + strings.Repeat("[", 200) + "\n# " + strings.Repeat("{", 200) + "\n", ""},
		{"brackets in plain scalars", "a: x" + strings.Repeat("[", 200) + "\nb: c" + strings.Repeat("{", 200) + "\n", ""},
		{"a block scalar", "a: |\n  " + strings.Repeat("[", 200) + "\n" + indented(200, 1, "  - b:") + "c: d\n", ""},
		{"a folded block scalar in a list", "- >-\n" + indented(200, 1, "   x: - ") + "- e\n", ""},
		{"a plain scalar over lines", "a: b\n" + indented(200, 1, "  c d") + "e: f\n", ""},
		{"sequences at the key's column", "a:\n- b:\n  - c:\n    - d\n" + strings.Repeat("e:\n- f\n", 200), ""},
		{"many lists of mappings", strings.Repeat("- a: 1\n  b: 2\n", MaxMappingKeys), ""},
		{"MaxMappingKeys keys", keys(MaxMappingKeys), ""},
		{"one key more", keys(MaxMappingKeys + 1), "gw.yaml:1001:1: a mapping with more than 1000 keys"},
		{"one key more, nested", "a:\n" + strings.ReplaceAll(keys(MaxMappingKeys+1), "k", "  k"), "gw.yaml:1002:3: a mapping with more than 1000 keys"},
		{"MaxValues values", "a: [" + strings.Repeat("1,", MaxValues-3) + "1]\n", ""},
		{"one value more", "a: [" + strings.Repeat("1,", MaxValues-2) + "1]\n", "gw.yaml:1:200001: more than 100000 yaml values, the most a config may hold"},
		{"MaxFileBytes bytes", "# " + strings.Repeat("x", MaxFileBytes-3) + "\n", ""},
		{"one byte more", strings.Repeat("# comment\n", MaxFileBytes/10+1),
			"gw.yaml:104858:7: the file is larger than 1048576 bytes (1024 KiB), the most a config may be"},
		{"documents", "---\na: [[b]]\n...\n---\n" + nested(MaxDepth), ""},
		{"MaxEmptyValues empty values", strings.Repeat("-\n", MaxEmptyValues), ""},
		{"one empty value more", strings.Repeat("-\n", MaxEmptyValues+1), "gw.yaml:201:1: more than 200 empty values (a key or list entry without a value), the most a config may hold"},
		{"empty keys", "a:\n" + strings.Repeat("  - b:\n    c:\n", MaxEmptyValues/2) + "  - d:\n", "gw.yaml:202:5: more than 200 empty values (a key or list entry without a value), the most a config may hold"},
		{"values on the next lines are not empty", strings.Repeat("- a:\n    b: 1\n  c:\n  - d\n  e:\n    f\n-\n  g\n- |\n  h\n- &x\n  i\n", MaxEmptyValues), ""},
		{"empty values in flow", "a: [" + strings.Repeat("{b}, {c: }, ", MaxEmptyValues/2) + "{d}]\n", "gw.yaml:1:1207: more than 200 empty values (a key or list entry without a value), the most a config may hold"},
		{"values in flow are not empty", "a: [" + strings.Repeat(`{b: c}, {"d":e}, {f: [g]}, {[h]: i}, [j: k], {}, [], `, MaxEmptyValues) + "l]\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ""
			if err := scanYAML("gw.yaml", []byte(tt.src)); err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}
