package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"switchyard/internal/lab"
)

// testdata/mixed.json is `go test -json ./...` of a small module: a package
// that does not build, and one with a passing test, a failing test with a
// failing and a passing subtest, a skip for a missing tool, a subtest
// skipped for a missing capability, and a skip by design.
func TestSummarize(t *testing.T) {
	in, err := os.ReadFile("testdata/mixed.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		ci         bool
		wantStatus int
		wantCI     bool
	}{
		{"local", false, 1, false},
		{"ci", true, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			status := summarize(bytes.NewReader(in), &out, tc.ci)
			if status != tc.wantStatus {
				t.Errorf("status %d, want %d", status, tc.wantStatus)
			}
			got := out.String()
			want := `# tjson/b
b/b.go:2:23: cannot use "x" (untyped string constant) as int value in return statement
FAIL	tjson/b [build failed]
--- FAIL: TestFail (0.00s)
    a_test.go:6: some log
    --- FAIL: TestFail/sub (0.00s)
        a_test.go:6: boom
FAIL
FAIL	tjson	0.107s
skipped: 2 tests — no root: TestSubSkip/x; wg not installed: TestSkipTool
`
			if tc.wantCI {
				want += "CI: 2 tests skipped for a missing tool or capability: the run fails (make deps installs the tools; the namespace tests need root)\n"
			}
			want += "3 passed, 2 failed, 3 skipped\n"
			if got != want {
				t.Errorf("output:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// TestSummarizePassing: a passing run prints go test's ok lines and the
// count, exits 0, and in CI a skip for a missing tool alone fails it.
func TestSummarizePassing(t *testing.T) {
	events := strings.Join([]string{
		`{"Action":"start","Package":"p"}`,
		`{"Action":"run","Package":"p","Test":"TestA"}`,
		`{"Action":"output","Package":"p","Test":"TestA","Output":"=== RUN   TestA\n"}`,
		`{"Action":"output","Package":"p","Test":"TestA","Output":"    a_test.go:3: chatter of a passing test\n"}`,
		`{"Action":"output","Package":"p","Test":"TestA","Output":"--- PASS: TestA (0.00s)\n"}`,
		`{"Action":"pass","Package":"p","Test":"TestA"}`,
		`{"Action":"run","Package":"p","Test":"TestB"}`,
		`{"Action":"output","Package":"p","Test":"TestB","Output":"    b_test.go:9: ` + lab.SkipMissingTool + `tmux — the tmux command is not installed\n"}`,
		`{"Action":"output","Package":"p","Test":"TestB","Output":"--- SKIP: TestB (0.00s)\n"}`,
		`{"Action":"skip","Package":"p","Test":"TestB"}`,
		`{"Action":"output","Package":"p","Output":"PASS\n"}`,
		`{"Action":"output","Package":"p","Output":"ok  \tp\t0.01s\n"}`,
		`{"Action":"pass","Package":"p"}`,
		`{"Action":"output","Package":"q","Output":"?   \tq\t[no test files]\n"}`,
		`{"Action":"skip","Package":"q"}`,
		`go: a line that is not JSON is passed on`,
	}, "\n")
	var out bytes.Buffer
	if status := summarize(strings.NewReader(events), &out, false); status != 0 {
		t.Errorf("status %d, want 0", status)
	}
	want := "ok  \tp\t0.01s\n?   \tq\t[no test files]\ngo: a line that is not JSON is passed on\n" +
		"skipped: 1 test — tmux not installed: TestB\n1 passed, 0 failed, 1 skipped\n"
	if out.String() != want {
		t.Errorf("output:\n%q\nwant:\n%q", out.String(), want)
	}
	out.Reset()
	if status := summarize(strings.NewReader(events), &out, true); status != 1 {
		t.Errorf("CI status %d, want 1:\n%s", status, out.String())
	}
}

// TestMissingReason: the skip messages of internal/lab become short
// reasons; others are not a missing thing.
func TestMissingReason(t *testing.T) {
	if missingTool != lab.SkipMissingTool || missingCapability != lab.SkipMissingCapability {
		t.Fatalf("prefixes %q %q differ from internal/lab's %q %q",
			missingTool, missingCapability, lab.SkipMissingTool, lab.SkipMissingCapability)
	}
	for _, tt := range []struct {
		msg, want string
		ok        bool
	}{
		{(&lab.Missing{Tool: "wg", Why: "the wg command is not installed"}).SkipMessage(), "wg not installed", true},
		{(&lab.Missing{Capability: "root", Why: "needs root"}).SkipMessage(), "no root", true},
		{(&lab.Missing{Capability: "/dev/net/tun", Why: "no TUN"}).SkipMessage(), "no /dev/net/tun", true},
		{"allocation counts are meaningless under -race", "", false},
		{"set SWITCHYARD_WG_BENCH=1 to run the WireGuard end-to-end benchmark", "", false},
	} {
		got, ok := missingReason(tt.msg)
		if got != tt.want || ok != tt.ok {
			t.Errorf("missingReason(%q) = %q, %v; want %q, %v", tt.msg, got, ok, tt.want, tt.ok)
		}
	}
}
