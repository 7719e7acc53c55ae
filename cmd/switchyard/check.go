package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"switchyard/config"
	"switchyard/node"
)

func runCheck(args []string) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	file := fs.String("c", "", "config file to check (required)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *file == "" {
		fmt.Fprintln(os.Stderr, "switchyard check: -c FILE is required")
		return 2
	}
	return check(*file, os.Stdout, os.Stderr)
}

// check prints ok and the worst-case memory the config can hold, or every
// error with its file:line:col, and returns the exit code.
func check(file string, stdout, stderr io.Writer) int {
	cfg, err := config.Load(file)
	if err == nil {
		err = node.Check(cfg)
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintln(stdout, "ok")
	fmt.Fprintln(stdout, node.MemoryBound(cfg))
	return 0
}
