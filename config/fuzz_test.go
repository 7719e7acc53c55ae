package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// fuzzParseTime bounds one Parse of fuzz input: far above what any input
// up to MaxFileBytes takes (about 0.5 s for the worst measured), far below
// the minutes the unbounded cases took.
const fuzzParseTime = 5 * time.Second

// FuzzLoad feeds the config loader (Load is a read of at most
// MaxFileBytes+1 bytes and Parse) hostile and careless text. Run it in CI
// for a fixed short time:
//
//	go test -run '^$' -fuzz FuzzLoad -fuzztime 20s ./config/
//
// Beyond not panicking or overflowing the stack, it checks that every error
// has a position in the file, that a parsed config passes Validate, that a
// parse takes at most fuzzParseTime, and that each protocol's settings
// rendered for a protocol host (Settings.YAML) decode to what the block
// decodes to.
func FuzzLoad(f *testing.F) {
	for _, seed := range fuzzSeeds() {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		start := time.Now()
		c, err := Parse("fuzz.yaml", data)
		if took := time.Since(start); took > fuzzParseTime {
			t.Errorf("Parse of %d bytes took %v", len(data), took)
		}
		if err != nil {
			if c != nil {
				t.Error("Parse returned a config and an error")
			}
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error %T %v, want Errors", err, err)
			}
			for _, e := range errs {
				if e.Pos.File != "fuzz.yaml" || e.Pos.Line < 1 || e.Pos.Col < 1 || e.Msg == "" {
					t.Errorf("error without a position or message: %q", e.Error())
				}
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Errorf("Validate of a parsed config: %v", err)
		}
		for i, p := range c.Protocols {
			// A block is a mapping; an empty one renders as nothing, which
			// decodes to a nil map: the same to a protocol's struct.
			var want, got map[string]any
			if p.Settings.Decode(&want) != nil || len(want) == 0 {
				continue
			}
			s, err := NewSettings("host.yaml", p.Settings.Path(), p.Settings.YAML())
			if err != nil {
				t.Fatalf("protocols[%d]: settings rendered for a host do not parse: %v\n%s", i, err, p.Settings.YAML())
			}
			if err := s.Decode(&got); err != nil {
				t.Fatalf("protocols[%d]: settings rendered for a host do not decode: %v\n%s", i, err, p.Settings.YAML())
			}
			if g, w := fmt.Sprintf("%#v", got), fmt.Sprintf("%#v", want); g != w {
				t.Errorf("protocols[%d]: settings rendered for a host decode to\n%s\nwant\n%s", i, g, w)
			}
		}
	})
}

// fuzzSeeds are the cases issue 12 found and the shapes the scanner
// follows.
func fuzzSeeds() []string {
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
	protocol := "protocols:\n  - name: p\n    type: udp\n    settings:\n      listen: 10.0.0.1:7000\n      peer: 10.0.0.2:7000\n"
	return []string{
		string(DefaultYAML()),
		minimal,
		"",
		// Deep nesting (finding 4).
		// Seeds are kept small (the fuzzer mutates and minimizes them
		// byte by byte); TestDeepNestingRefused has the 100,000 levels.
		"node: " + strings.Repeat("[", 120) + strings.Repeat("]", 120) + "\n",
		strings.Repeat("{a: ", 120) + "1" + strings.Repeat("}", 120) + "\n",
		strings.Repeat("- ", 120) + "x\n",
		indented(120, 1, "a:"),
		indented(120, 1, "[a]:"),
		strings.ReplaceAll(indented(120, 1, "a:"), " ", "\t"),
		// Alias and merge bombs.
		lists + protocol + "      extra: *l9\n",
		merges + "routes:\n  - {<<: *l9}\n",
		lists + "protocols:\n" + strings.Repeat("  - {name: p, type: udp, settings: {a: *l4}}\n", 12),
		"protocols: [&p {<<: *p, name: a}]\n",
		"a: &a [*a]\n",
		"protocols:\n  - &p\n    name: a\n    type: udp\n    settings: {x: *p}\n",
		// Huge scalars and many keys.
		"node: {name: \"" + strings.Repeat("n", 2000) + "\"}\n",
		"x: &s \"" + strings.Repeat("s", 1000) + "\"\nprotocols:\n" + strings.Repeat("  - {name: p, type: udp, settings: {a: *s}}\n", 3),
		strings.Repeat("k: v\n", 1002),
		// NUL bytes, byte order marks, line breaks.
		"node:\n  name: \"a\x00b\"\n",
		"node:\x00\n  name: a\n",
		"\ufeffnode:\n  name: gw\n",
		"node:\n  name: gw\n\ufeff",
		"\xff\xfenode: a\n",
		"node:\r\n  name: gw\r\n",
		"node:\r  name: gw\r",
		"\t\tnode:\n\t\t\tname: gw\n",
		// Quoted and block scalars, documents, directives.
		"node: {name: '[[[['}\nlog: {level: \"\\\"{{{\"}\n",
		"x: |\n  [[[[\n  - - -\nnode: {name: a}\n",
		"x: >-\n   a: b\n  c\n",
		"%YAML 1.2\n---\nnode: {name: a}\n...\n",
		"node: {name: a}\n---\nnode: {name: b}\n",
		"? [a, b]\n: c\n",
		"!!map {node: !!map {name: !!str a}}\n",
		// check = run (finding 7).
		"mailbox:\n  capacity: -1\n",
		"mailbox:\n  policy: \"\\0\"\n",
		"routes:\n  - prefix: \"::ffff:10.50.0.0/112\"\n    action: drop\n",
		"supervision:\n  max_restarts: 1000000\n  backoff: 0s\n",
		"tun:\n  name: '%d'\n",
		"remote:\n  listen: \"[::1]:0\"\n",
		"admin:\n  listen: fd00::1:7000\n",
		protocol + "  - name: q\n    type: udp\n    settings: {listen: \"10.0.0.1:7000\", peer: \"10.0.0.3:7000\"}\n",
		"tun:\n  mtu: 1000\nroutes:\n  - {prefix: \"fd00::/64\", action: drop}\n",
	}
}
