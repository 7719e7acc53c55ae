package lab

import (
	"fmt"
	"os/exec"
)

// Skip messages for what this machine lacks start with these words, so
// that `make test` lists such skips in one line and fails them in CI
// (internal/testsummary reads them).
const (
	SkipMissingTool       = "missing tool: "
	SkipMissingCapability = "missing capability: "
)

// Missing says why something cannot run here: a command that is not
// installed (Tool) or a capability the process lacks (Capability).
type Missing struct {
	Tool       string // the command, e.g. "wg"
	Capability string // e.g. "root"
	Why        string // the sentence for a person
}

func (m *Missing) Error() string { return m.Why }

// SkipMessage is the text a test skips with: "missing tool: wg — …" or
// "missing capability: root — …".
func (m *Missing) SkipMessage() string {
	if m.Tool != "" {
		return SkipMissingTool + m.Tool + " — " + m.Why
	}
	return SkipMissingCapability + m.Capability + " — " + m.Why
}

// NeedTool returns nil when the command is on PATH, else a *Missing that
// says how to get it.
func NeedTool(command string) error {
	if _, err := exec.LookPath(command); err != nil {
		return &Missing{Tool: command, Why: fmt.Sprintf("the %s command is not installed (make deps installs it; deps/debian.txt names its package)", command)}
	}
	return nil
}
