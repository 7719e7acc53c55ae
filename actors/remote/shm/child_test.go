package shm

import (
	"fmt"
	"os"
)

// childMain runs the test binary as a protocol host (mode in hostModeEnv)
// and returns its exit status.
func childMain(mode string) int {
	fmt.Fprintf(os.Stderr, "unknown host mode %q\n", mode)
	return 2
}
