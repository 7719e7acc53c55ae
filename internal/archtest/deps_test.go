package archtest

import (
	"bufio"
	"bytes"
	"go/ast"
	"go/parser"
	"go/printer"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// depsList is the one list of Debian packages, relative to this package.
const depsList = "../../deps/debian.txt"

// repoRoot is the module root, relative to this package.
const repoRoot = "../.."

// depsEntry is one line of deps/debian.txt.
type depsEntry struct {
	pkg      string
	commands []string
	why      string
	line     int
}

// readDeps parses deps/debian.txt: PACKAGE COMMANDS # WHY.
func readDeps(t *testing.T) []depsEntry {
	t.Helper()
	f, err := os.Open(depsList)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var entries []depsEntry
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		text, why, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(text)
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 2 {
			t.Errorf("%s:%d: want PACKAGE COMMANDS # WHY, got %q", depsList, n, sc.Text())
			continue
		}
		e := depsEntry{pkg: fields[0], why: strings.TrimSpace(why), line: n}
		if fields[1] != "-" {
			e.commands = strings.Split(fields[1], ",")
		}
		if e.why == "" {
			t.Errorf("%s:%d: %s: say who needs it after #", depsList, n, e.pkg)
		}
		entries = append(entries, e)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(entries) == 0 {
		t.Fatalf("%s lists no package", depsList)
	}
	return entries
}

// runners are the calls that run (or look for) an external command, and
// the index of the argument that names it: os/exec's, the lab's (Lab.Exec,
// Lab.Command, Lab.Run: ctx, side, name), lab.NeedTool and the tests'
// needTool(t, name), switchyard-lab's firstLine.
var runners = map[string]int{
	"exec.Command":        0,
	"exec.CommandContext": 1,
	"exec.LookPath":       0,
	"NeedTool":            0,
	"needTool":            1,
	"firstLine":           0,
	".Exec":               2,
	".Command":            2,
	".Run":                2,
}

// dynamicSites are the calls whose command is not a string literal, by
// "file: argument", and what they run: a wrapper passes on its caller's
// command (the callers are checked), the others are named here.
var dynamicSites = map[string][]string{
	// Wrappers: the command is their parameter; their callers are checked.
	"internal/lab/lab.go: name":                nil, // Lab.Exec → Lab.Command
	"internal/lab/tools.go: name":              nil, // Lab.Run → Lab.Exec
	"internal/lab/openconnect.go: name":        nil, // Lab.startProc → Lab.Command
	"internal/lab/missing.go: command":         nil, // NeedTool
	"cmd/switchyard/e2e_test.go: command":      nil, // needTool
	"cmd/switchyard-lab/bench_report.go: name": nil, // firstLine
	"internal/archtest/deps_test.go: c":        nil, // the list's own commands, looked up
	// Commands from a list.
	"internal/lab/e2e.go: tool":       {"iperf3", "wg", "openvpn"},
	"internal/lab/wireguard.go: s[0]": {"wg", "ip"},
	// The repository's own programs, and wireguard-go built from go.mod.
	"actors/remote/hostlink.go: l.spec.Command[0]":                                   nil, // switchyard host
	"cmd/switchyard/lifecycle_e2e_test.go: bin":                                      nil,
	"cmd/switchyard/lifecycle_e2e_test.go: copyBin":                                  nil,
	"cmd/switchyard/reload_e2e_test.go: l.CLI":                                       nil,
	"cmd/switchyard/remote_e2e_test.go: l.Tools":                                     nil,
	"cmd/switchyard/remote_uid_linux_test.go: setpriv":                               {"setpriv"},
	"cmd/switchyard/wireguard_e2e_test.go: e2eCLI.get(t)":                            nil,
	"cmd/switchyard-lab/labcmd_test.go: bin":                                         nil,
	"cmd/switchyard-lab/bench_e2e.go: opts.WireGuardGo":                              nil,
	"internal/lab/daemon.go: d.lab.CLI":                                              nil,
	"internal/lab/tools.go: l.Tools":                                                 nil,
	"internal/lab/wireguard.go: binary":                                              nil,
	"node/hosttest/watch/watch_test.go: exe":                                         nil,
	"internal/archtest/deps_test.go: filepath.Join(repoRoot, \"deps\", \"install\")": nil,
	"actors/remote/shm/child_test.go: os.Args[0]":                                    nil, // the test binary as a host
	"actors/remote/shm/handover_test.go: os.Args[0]":                                 nil,
	"cmd/switchyard/caps_linux.go: env":                                              nil, // execve of /proc/self/exe, itself
	"cmd/switchyard/caps_sandbox_linux_test.go: env":                                 nil, // the seccomp helper execs its argument: the test binary
	"cmd/switchyard/caps_sandbox_linux_test.go: setpriv":                             {"setpriv"},
	"cmd/switchyard/routes_e2e_test.go: e2eDaemon.get(t)":                            nil,
	"node/tun_bsd.go: path":                                                          nil, // /sbin/ifconfig, /sbin/route: macOS and FreeBSD, not Debian
	"protocols/openconnect/lab_test.go: args[0]":                                     nil, // run(t, …): its callers are checked
	"protocols/openconnect/lab_test.go: p":                                           {"ocserv", "ocpasswd", "openconnect", "iptables", "ping"},
	"protocols/ipsec/charon_test.go: args[0]":                                        nil, // run(t, …): its callers are checked
	"protocols/ipsec/helpers_test.go: args[0]":                                       nil, // execOut(…): its callers are checked
	"protocols/ipsec/charon_test.go: p":                                              {"ip", "swanctl"},
}

// notDebian are commands the code runs that no Debian package of the list
// provides, and why.
var notDebian = map[string]string{
	"go": "the Go toolchain: go.mod's version from go.dev/dl (README)",
}

// notRunByGo are commands of the list that no Go code runs.
var notRunByGo = map[string]string{
	"make": "the Makefile's commands",
	"git":  "the Makefile's version stamp and go build's VCS stamp",
}

// scanCommands returns the external commands the module's Go code and
// tests name literally, each with one place that names it, and the
// dynamic call sites by "file: argument".
func scanCommands(t *testing.T) (literal map[string]string, dynamic map[string]string) {
	t.Helper()
	literal, dynamic = map[string]string{}, map[string]string{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "bin", "testdata", "results":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		rel, _ := filepath.Rel(repoRoot, path)
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			idx, ok := runnerArg(call)
			if !ok || idx >= len(call.Args) {
				return true
			}
			arg := call.Args[idx]
			if lit, ok := arg.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				name := strings.Trim(lit.Value, "`\"")
				if _, seen := literal[name]; !seen {
					literal[name] = fset.Position(lit.Pos()).String()
				}
				return true
			}
			var b bytes.Buffer
			_ = printer.Fprint(&b, fset, arg)
			dynamic[filepath.ToSlash(rel)+": "+b.String()] = fset.Position(arg.Pos()).String()
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return literal, dynamic
}

// runnerArg reports whether call is one of the runners, and the index of
// its command argument.
func runnerArg(call *ast.CallExpr) (int, bool) {
	switch fn := call.Fun.(type) {
	case *ast.Ident:
		idx, ok := runners[fn.Name]
		return idx, ok
	case *ast.SelectorExpr:
		if x, ok := fn.X.(*ast.Ident); ok {
			if idx, ok := runners[x.Name+"."+fn.Sel.Name]; ok {
				return idx, true
			}
			if x.Name == "exec" {
				return 0, false // exec.Cmd's other functions
			}
			if x.Name == "lab" && fn.Sel.Name == "NeedTool" {
				return 0, true
			}
		}
		if fn.Sel.Name == "NeedTool" {
			return 0, true
		}
		idx, ok := runners["."+fn.Sel.Name]
		// Lab.Exec, Lab.Command, Lab.Run take (ctx, side, name, args…);
		// other methods of these names take fewer arguments.
		return idx, ok && len(call.Args) >= 3
	}
	return 0, false
}

// TestDepsCoverCommands: every external command the Go code and its tests
// run is provided by a package of deps/debian.txt (or is Go itself), every
// call that names its command in a variable is declared above, and every
// command the list names is run somewhere (or said why not).
func TestDepsCoverCommands(t *testing.T) {
	entries := readDeps(t)
	byCommand := map[string]string{}
	for _, e := range entries {
		for _, c := range e.commands {
			byCommand[c] = e.pkg
		}
	}
	literal, dynamic := scanCommands(t)
	if len(literal) < 5 {
		t.Fatalf("found only %d commands in the code (%v): the scan is broken", len(literal), literal)
	}
	names := make([]string, 0, len(literal))
	for name := range literal {
		names = append(names, name)
	}
	sort.Strings(names)
	t.Logf("commands named in the code: %s", strings.Join(names, " "))
	run := map[string]bool{}
	for name, where := range literal {
		run[name] = true
		if _, ok := byCommand[name]; ok {
			continue
		}
		if _, ok := notDebian[name]; ok {
			continue
		}
		t.Errorf("%s runs %q, which no package of %s provides: add its package there", where, name, depsList)
	}
	var unknown []string
	for site, where := range dynamic {
		cmds, ok := dynamicSites[site]
		if !ok {
			unknown = append(unknown, where+" ("+site+")")
			continue
		}
		for _, c := range cmds {
			run[c] = true
			if _, ok := byCommand[c]; !ok {
				t.Errorf("%s runs %q (declared in dynamicSites), which no package of %s provides", where, c, depsList)
			}
		}
	}
	sort.Strings(unknown)
	for _, u := range unknown {
		t.Errorf("%s: a command named by a variable: declare what it runs in dynamicSites (internal/archtest/deps_test.go)", u)
	}
	for site := range dynamicSites {
		if _, ok := dynamic[site]; !ok {
			t.Errorf("dynamicSites declares %q, which the code no longer has: remove it", site)
		}
	}
	for c, pkg := range byCommand {
		if !run[c] && notRunByGo[c] == "" {
			t.Errorf("%s: %s provides %q, which no Go code runs: remove it, or say why in notRunByGo", depsList, pkg, c)
		}
	}
}

// TestDepsPackagesProvideCommands: where dpkg knows the commands of the
// list (a Debian machine with them installed), each comes from the package
// the list says.
func TestDepsPackagesProvideCommands(t *testing.T) {
	if _, err := exec.LookPath("dpkg-query"); err != nil {
		t.Log("no dpkg-query: not a Debian machine; the package names are not checked")
		return
	}
	type want struct {
		e     depsEntry
		cmd   string
		paths []string
	}
	var wants []want
	var all []string
	for _, e := range readDeps(t) {
		for _, c := range e.commands {
			path, err := exec.LookPath(c)
			if err != nil {
				t.Logf("%s (%s) is not installed here: not checked", c, e.pkg)
				continue
			}
			paths := aliases(path)
			wants = append(wants, want{e, c, paths})
			all = append(all, paths...)
		}
	}
	owners := dpkgOwners(all)
	for _, w := range wants {
		found := ""
		for _, p := range w.paths {
			if o := owners[p]; o != "" {
				found = o
				break
			}
		}
		if found != w.e.pkg {
			t.Errorf("%s:%d: %s is %s, which dpkg says belongs to %q, not %q", depsList, w.e.line, w.cmd, w.paths[0], found, w.e.pkg)
		}
	}
}

// aliases returns path, its symlink's target and their merged-/usr twins
// (/usr/bin and /bin, /usr/sbin and /sbin): dpkg knows one of them.
func aliases(path string) []string {
	paths := []string{path}
	if real, err := filepath.EvalSymlinks(path); err == nil && real != path {
		paths = append(paths, real)
	}
	for _, p := range append([]string(nil), paths...) {
		if strings.HasPrefix(p, "/usr/") {
			paths = append(paths, strings.TrimPrefix(p, "/usr"))
		} else {
			paths = append(paths, "/usr"+p)
		}
	}
	return paths
}

// dpkgOwners asks dpkg, in one call, which package installed each path;
// paths it does not know are left out.
func dpkgOwners(paths []string) map[string]string {
	out, _ := exec.Command("dpkg-query", append([]string{"-S"}, paths...)...).Output() // exit 1 when one is unknown
	owners := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		// "iproute2: /usr/sbin/ip", or "a, b: /path" for a shared path
		owner, path, ok := strings.Cut(l, ": ")
		if ok {
			owners[strings.TrimSpace(path)] = strings.TrimSpace(owner)
		}
	}
	return owners
}

// TestDepsInstallDryRun: `make deps DRY=1` (deps/install --dry-run) prints
// exactly the packages of the list that are not installed, one a line.
func TestDepsInstallDryRun(t *testing.T) {
	if _, err := exec.LookPath("dpkg-query"); err != nil {
		t.Skip("missing tool: dpkg-query — not a Debian machine: deps/install only checks Debian packages")
	}
	list := filepath.Join(t.TempDir(), "debian.txt")
	text := "# a test list\n" +
		"dpkg              dpkg-query  # installed on every Debian machine\n" +
		"switchyard-no-such-package -  # never installed\n"
	if err := os.WriteFile(list, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(repoRoot, "deps", "install"), "--dry-run")
	cmd.Env = append(os.Environ(), "DEPS_LIST="+list)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("deps/install --dry-run: %v: %s", err, stderr.String())
	}
	if got, want := string(out), "switchyard-no-such-package\n"; got != want {
		t.Errorf("deps/install --dry-run printed %q, want %q", got, want)
	}
	if !strings.Contains(stderr.String(), "1 of 2 packages") {
		t.Errorf("stderr %q, want the count", stderr.String())
	}
}
