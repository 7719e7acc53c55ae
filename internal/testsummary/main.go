// Command testsummary reads `go test -json` on stdin and prints what `go
// test` prints without -json (the ok and FAIL lines of the packages, the
// output of failed tests, build errors), then one line for the tests that
// skipped because this machine lacks a tool or a capability, and a closing
// count:
//
//	skipped: 3 tests — no root: TestE2E; wg not installed: TestGenkeyPubkeyMatchWG, TestWireGuardInterop
//	412 passed, 0 failed, 9 skipped
//
// (The other skips, such as allocation tests under -race, are by design and
// only counted; go test -v says why.)
//
// Such skips are the ones whose message starts with "missing tool: " or
// "missing capability: " (internal/lab.Missing). With CI=true in the
// environment (or -ci) they fail the run: CI has everything installed, so
// a skip there means a test did not run. The exit status is 1 when a test
// or a build failed, or in CI when such a skip happened; `make test` also
// keeps go test's own status (pipefail).
//
//	go test -json ./... | go run ./internal/testsummary
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// Limits of the summary. Every number has its unit and its reason.
const (
	// namesPerReason (6 tests) is how many test names one reason lists
	// before "+N more": enough to act on, short enough for one line.
	namesPerReason = 6

	// maxLineBytes (16 MiB) bounds one JSON event: a test's output line
	// can be long (a dumped config, a stack), never this long.
	maxLineBytes = 16 << 20
)

// The prefixes of a skip for what this machine lacks (internal/lab
// SkipMissingTool and SkipMissingCapability; testsummary may not import
// lab, so the test checks they agree).
const (
	missingTool       = "missing tool: "
	missingCapability = "missing capability: "
)

func main() {
	ci := flag.Bool("ci", isCI(os.Getenv("CI")), "fail when a test skipped for a missing tool or capability (default: CI=true)")
	flag.Parse()
	os.Exit(summarize(os.Stdin, os.Stdout, *ci))
}

func isCI(v string) bool { return v == "true" || v == "1" }

// event is one line of `go test -json` (cmd/test2json), build events
// included.
type event struct {
	Action     string
	Package    string
	ImportPath string // build-output, build-fail
	Test       string
	Output     string
}

// line is one line of a test's output, in arrival order within its package.
type line struct {
	test string
	text string
}

// pkgState is what is kept of one package while it runs.
type pkgState struct {
	lines  []line            // output of its tests not yet finished (or of failed trees)
	status map[string]string // test → pass, fail or skip
}

// summary is the state of one run.
type summary struct {
	out     io.Writer
	pkgs    map[string]*pkgState
	passed  int
	failed  int
	skipped int
	broken  bool                // a build failed, or a package failed outside any test
	missing map[string][]string // reason ("wg not installed") → tests
}

// summarize reads events from r, writes the output to w and returns the
// exit status.
func summarize(r io.Reader, w io.Writer, ci bool) int {
	s := &summary{out: w, pkgs: map[string]*pkgState{}, missing: map[string][]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLineBytes)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e.Action == "" {
			fmt.Fprintln(w, sc.Text()) // not an event: go test's own line; pass it on
			continue
		}
		s.event(e)
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(w, "testsummary: reading go test -json: %v\n", err)
		s.broken = true
	}
	return s.finish(ci)
}

func (s *summary) pkg(name string) *pkgState {
	p := s.pkgs[name]
	if p == nil {
		p = &pkgState{status: map[string]string{}}
		s.pkgs[name] = p
	}
	return p
}

func (s *summary) event(e event) {
	switch e.Action {
	case "build-output":
		fmt.Fprint(s.out, e.Output)
		return
	case "build-fail":
		s.broken = true
		return
	}
	p := s.pkg(e.Package)
	if e.Test == "" {
		switch e.Action {
		case "output":
			if e.Output != "PASS\n" { // go test without -v prints only "ok"
				fmt.Fprint(s.out, e.Output)
			}
		case "fail":
			s.broken = true
			delete(s.pkgs, e.Package)
		case "pass", "skip":
			delete(s.pkgs, e.Package)
		}
		return
	}
	switch e.Action {
	case "output":
		p.lines = append(p.lines, line{e.Test, e.Output})
	case "pass":
		s.passed++
		p.status[e.Test] = "pass"
		s.done(p, e.Test)
	case "skip":
		s.skipped++
		p.status[e.Test] = "skip"
		s.skip(p, e.Test)
		s.done(p, e.Test)
	case "fail":
		s.failed++
		p.status[e.Test] = "fail"
		if !strings.Contains(e.Test, "/") {
			s.printFailed(p, e.Test)
		}
		s.done(p, e.Test)
	}
}

// inTree reports whether test is top or one of its subtests.
func inTree(test, top string) bool { return test == top || strings.HasPrefix(test, top+"/") }

// done drops the kept output of a finished top-level test.
func (s *summary) done(p *pkgState, test string) {
	if strings.Contains(test, "/") {
		return // its parent prints it if the parent fails
	}
	kept := p.lines[:0]
	for _, l := range p.lines {
		if !inTree(l.test, test) {
			kept = append(kept, l)
		}
	}
	clear(p.lines[len(kept):])
	p.lines = kept
	for t := range p.status {
		if inTree(t, test) {
			delete(p.status, t)
		}
	}
}

// printFailed prints what go test prints for a failed test: its "--- FAIL"
// line, then its output and that of its failed subtests (each under its
// own "--- FAIL" line, indented by depth), without the === lines.
func (s *summary) printFailed(p *pkgState, top string) {
	header := map[string]string{} // test → its "--- FAIL" line
	for _, l := range p.lines {
		if inTree(l.test, top) && strings.HasPrefix(strings.TrimSpace(l.text), "--- FAIL") {
			header[l.test] = strings.TrimSpace(l.text)
		}
	}
	started := map[string]bool{}
	start := func(test string) {
		if started[test] {
			return
		}
		started[test] = true
		if h, ok := header[test]; ok {
			fmt.Fprintf(s.out, "%s%s\n", indent(test), h)
		}
	}
	start(top)
	for _, l := range p.lines {
		if !inTree(l.test, top) || strings.HasPrefix(l.text, "=== ") {
			continue
		}
		if l.test != top && p.status[l.test] != "fail" {
			continue
		}
		if strings.HasPrefix(strings.TrimSpace(l.text), "--- FAIL") {
			continue // printed by start
		}
		start(l.test)
		fmt.Fprintf(s.out, "%s%s", indent(l.test), l.text)
	}
}

// indent is go test's indentation of a subtest's lines: four spaces a level.
func indent(test string) string { return strings.Repeat("    ", strings.Count(test, "/")) }

// skip files a skipped test under its reason.
func (s *summary) skip(p *pkgState, test string) {
	why := ""
	for _, l := range p.lines {
		if l.test != test {
			continue
		}
		text := strings.TrimSpace(l.text)
		if text == "" || strings.HasPrefix(text, "=== ") || strings.HasPrefix(text, "--- SKIP") {
			continue
		}
		why = text
	}
	// "file_test.go:12: message" → "message"
	if i := strings.Index(why, ": "); i >= 0 && strings.Contains(why[:i], ".go:") {
		why = why[i+2:]
	}
	if reason, ok := missingReason(why); ok {
		s.missing[reason] = append(s.missing[reason], test)
	}
}

// missingReason turns a skip message for a missing tool or capability into
// its short reason: "wg not installed", "no root".
func missingReason(msg string) (string, bool) {
	name := func(rest string) string {
		if i := strings.Index(rest, " — "); i >= 0 {
			rest = rest[:i]
		}
		return strings.TrimSpace(rest)
	}
	switch {
	case strings.HasPrefix(msg, missingTool):
		return name(msg[len(missingTool):]) + " not installed", true
	case strings.HasPrefix(msg, missingCapability):
		return "no " + name(msg[len(missingCapability):]), true
	}
	return "", false
}

// finish prints the closing lines and returns the exit status.
func (s *summary) finish(ci bool) int {
	nMissing := 0
	reasons := make([]string, 0, len(s.missing))
	for reason, tests := range s.missing {
		nMissing += len(tests)
		reasons = append(reasons, reason)
	}
	sort.Strings(reasons)
	status := 0
	if s.failed > 0 || s.broken {
		status = 1
	}
	if nMissing > 0 {
		parts := make([]string, 0, len(reasons))
		for _, reason := range reasons {
			tests := s.missing[reason]
			shown := tests
			more := ""
			if len(shown) > namesPerReason {
				shown, more = shown[:namesPerReason], fmt.Sprintf(" (+%d more)", len(tests)-namesPerReason)
			}
			parts = append(parts, reason+": "+strings.Join(shown, ", ")+more)
		}
		fmt.Fprintf(s.out, "skipped: %d %s — %s\n", nMissing, plural(nMissing, "test"), strings.Join(parts, "; "))
		if ci {
			fmt.Fprintf(s.out, "CI: %d %s skipped for a missing tool or capability: the run fails (make deps installs the tools; the namespace tests need root)\n",
				nMissing, plural(nMissing, "test"))
			status = 1
		}
	}
	fmt.Fprintf(s.out, "%d passed, %d failed, %d skipped\n", s.passed, s.failed, s.skipped)
	return status
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
