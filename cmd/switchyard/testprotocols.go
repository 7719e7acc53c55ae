//go:build testprotocols

package main

// The test-only protocols (slow, panicky) of the namespace tests. Tests build
// the binary with -tags testprotocols; releases never carry them.
import _ "switchyard/protocols/protocoltest"
