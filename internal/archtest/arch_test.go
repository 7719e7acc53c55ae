package archtest

import (
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "switchyard"

type pkg struct {
	ImportPath string
	Imports    []string // non-test imports
	Deps       []string // transitive non-test dependencies
}

// listPackages runs `go list -deps=false -json ./...` from the module root.
func listPackages(t *testing.T) map[string]pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", module+"/...")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	pkgs := map[string]pkg{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs[p.ImportPath] = p
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found %d packages of %s; want the whole module", len(pkgs), module)
	}
	return pkgs
}

// under reports whether path is dir or below it.
func under(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, dir+"/")
}

// ours returns the module's packages among imports.
func ours(imports []string) []string {
	var out []string
	for _, imp := range imports {
		if under(imp, module) {
			out = append(out, imp)
		}
	}
	return out
}

// rule says which of our packages the packages below dir may import
// (besides their own sub-packages and test doubles of the allowed ones).
type rule struct {
	dir     string
	allowed []string
}

// rules, most specific first: the first rule whose dir holds a package
// applies to it.
var rules = []rule{
	{"switchyard/packet/packettest", []string{"switchyard/packet"}},
	{"switchyard/packet", nil},
	{"switchyard/config", nil},
	{"switchyard/stats", []string{"switchyard/packet"}},
	{"switchyard/router", []string{"switchyard/packet", "switchyard/stats"}},
	{"switchyard/protocols/protocoltest", []string{"switchyard/protocols", "switchyard/config", "switchyard/packet", "switchyard/stats"}},
	{"switchyard/protocols", []string{"switchyard/protocols", "switchyard/config", "switchyard/packet", "switchyard/stats"}},
	// Below actors/, nothing imports actors/ itself: the arrows inside
	// actors point down too.
	{"switchyard/actors/mailbox", []string{"switchyard/config", "switchyard/packet", "switchyard/stats"}},
	{"switchyard/actors/stage", []string{"switchyard/actors/mailbox", "switchyard/config", "switchyard/packet", "switchyard/stats"}},
	{"switchyard/actors/remote", []string{"switchyard/actors/remote", "switchyard/actors/mailbox", "switchyard/actors/stage", "switchyard/protocols", "switchyard/config", "switchyard/packet", "switchyard/stats"}},
	{"switchyard/actors", []string{"switchyard/actors/mailbox", "switchyard/actors/stage", "switchyard/router", "switchyard/protocols", "switchyard/config", "switchyard/packet", "switchyard/stats"}},
	{"switchyard/node", []string{"switchyard/node", "switchyard/actors", "switchyard/router", "switchyard/protocols", "switchyard/config", "switchyard/packet", "switchyard/stats"}},
	{"switchyard/internal/lab", []string{"switchyard/node", "switchyard/actors", "switchyard/protocols", "switchyard/config", "switchyard/packet", "switchyard/stats", "switchyard/router"}},
	{"switchyard/internal/archtest", nil},
	{"switchyard/internal/testsummary", nil},
	{"switchyard/cmd/switchyard-lab", []string{"switchyard"}},
	{"switchyard/cmd/switchyard", []string{"switchyard/node", "switchyard/actors", "switchyard/protocols", "switchyard/config", "switchyard/packet", "switchyard/stats", "switchyard/router"}},
}

func ruleFor(path string) (rule, bool) {
	for _, r := range rules {
		if under(path, r.dir) {
			return r, true
		}
	}
	return rule{}, false
}

// importAllowed reports whether a package under r may import imp.
func importAllowed(r rule, from, imp string) bool {
	if under(imp, from) {
		return true // its own sub-packages
	}
	for _, a := range r.allowed {
		if under(imp, a) {
			return true
		}
	}
	return false
}

func TestImportRules(t *testing.T) {
	pkgs := listPackages(t)
	for path, p := range pkgs {
		r, ok := ruleFor(path)
		if !ok {
			t.Errorf("%s: no layout rule covers this package; add one to internal/archtest", path)
			continue
		}
		for _, imp := range ours(p.Imports) {
			if !importAllowed(r, path, imp) {
				t.Errorf("%s imports %s: not allowed by the layout (rule %q allows %v)", path, imp, r.dir, r.allowed)
			}
		}
	}
}

// TestDaemonLinksNoLab: bin/switchyard carries no lab, benchmark, plotting
// or hostile-client code.
func TestDaemonLinksNoLab(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", module+"/cmd/switchyard").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 50 {
		t.Fatalf("go list -deps found %d dependencies; want the daemon's whole graph", len(deps))
	}
	forbidden := []string{"switchyard/internal/lab", "switchyard/cmd/switchyard-lab", "gonum.org/v1/plot", "switchyard/packet/packettest", "switchyard/protocols/protocoltest"}
	for _, d := range deps {
		for _, f := range forbidden {
			if under(d, f) {
				t.Errorf("cmd/switchyard depends on %s", d)
			}
		}
	}
}

// TestRulesCatchAForbiddenImport: the checker itself, on a made-up
// package, so a rule table that allows everything cannot pass unnoticed.
func TestRulesCatchAForbiddenImport(t *testing.T) {
	for _, tc := range []struct {
		from, imp string
		want      bool
	}{
		{"switchyard/protocols/udp", "switchyard/actors/stage", false},
		{"switchyard/protocols/udp", "switchyard/stats", true},
		{"switchyard/actors/remote", "switchyard/actors", false},
		{"switchyard/actors/remote", "switchyard/actors/remote/wire", true},
		{"switchyard/packet", "switchyard/stats", false},
		{"switchyard/stats", "switchyard/packet", true},
		{"switchyard/router", "switchyard/actors", false},
		{"switchyard/node", "switchyard/internal/lab", false},
		{"switchyard/cmd/switchyard", "switchyard/internal/lab", false},
	} {
		r, ok := ruleFor(tc.from)
		if !ok {
			t.Fatalf("no rule for %s", tc.from)
		}
		if got := importAllowed(r, tc.from, tc.imp); got != tc.want {
			t.Errorf("%s importing %s: allowed = %v, want %v", tc.from, tc.imp, got, tc.want)
		}
	}
}
