//go:build !linux

package main

// runAsHelper: the sandbox helper is Linux's.
func runAsHelper() {}
