package lab

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// userHZ (100 per second) is the unit of utime and stime in /proc/PID/stat:
// the kernel reports them in USER_HZ, fixed at 100 in the /proc ABI
// whatever the kernel's own tick rate.
const userHZ = 100

// ProcCPU returns the CPU time pid has used so far, user plus system, over
// all its threads (utime + stime of /proc/PID/stat), in seconds.
func ProcCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseProcStatCPU(b)
}

// parseProcStatCPU reads utime and stime out of a /proc/PID/stat line. The
// command name (field 2) is in parentheses and may hold spaces and ')', so
// the fields are counted from the last ')'.
func parseProcStatCPU(b []byte) (float64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc stat: no command name in %q", b)
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc stat: %d fields after the command name, want at least 13", len(f))
	}
	var ticks float64
	for _, s := range f[11:13] {
		v, err := strconv.ParseUint(string(s), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc stat: utime/stime %q: %w", s, err)
		}
		ticks += float64(v)
	}
	return ticks / userHZ, nil
}

// CPUPerGbit is the CPU time a process used per gigabit carried: cpuSeconds
// over the run divided by the gigabits the receiver counted (bytes × 8 /
// 10⁹). It is 0 when nothing was carried.
func CPUPerGbit(cpuSeconds float64, bytes int64) float64 {
	if bytes <= 0 {
		return 0
	}
	return cpuSeconds / (float64(bytes) * 8 / 1e9)
}
