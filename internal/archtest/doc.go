// Package archtest checks the layout's import rules with `go list`: the
// arrows point one way, cmd → node → actors → protocols → stats / packet /
// config / router, and the daemon binary links no lab, benchmark or
// plotting code. A forbidden import fails `make test`.
package archtest
