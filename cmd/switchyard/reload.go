package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"switchyard/node"
)

// reloadTimeout (30 s) bounds one POST /reload: a reload validates the new
// config, then stops and spawns protocols, each stop bounded by
// node.StopTimeout (10 s).
const reloadTimeout = 30 * time.Second

func runReload(args []string) int {
	fs := flag.NewFlagSet("reload", flag.ContinueOnError)
	admin := fs.String("admin", "127.0.0.1:9190", "admin endpoint of the daemon (host:port)")
	tokenFile := fs.String("token-file", "", "file holding the admin bearer token (for a non-loopback admin endpoint)")
	asJSON := fs.Bool("json", false, "print the raw JSON from POST /reload")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	c, err := newAdminClient(*admin, *tokenFile)
	if err != nil {
		fmt.Fprintf(os.Stderr, "switchyard reload: %v\n", err)
		return 1
	}
	c.http.Timeout = reloadTimeout
	// 200: applied; 422: refused, with the reasons in the body.
	body, err := c.request(http.MethodPost, "/reload", http.StatusUnprocessableEntity)
	if err != nil {
		fmt.Fprintf(os.Stderr, "switchyard reload: %v\n", err)
		return 1
	}
	var res node.Result
	if err := json.Unmarshal(body, &res); err != nil {
		fmt.Fprintf(os.Stderr, "switchyard reload: bad answer from %s: %v\n", *admin, err)
		return 1
	}
	if *asJSON {
		_, _ = os.Stdout.Write(body)
	} else {
		printReload(os.Stdout, os.Stderr, res)
	}
	if !res.Applied || len(res.Errors) > 0 {
		return 1
	}
	return 0
}

// printReload writes what the reload did: the changes on stdout, errors on
// stderr.
func printReload(stdout, stderr io.Writer, res node.Result) {
	switch {
	case !res.Applied:
		fmt.Fprintf(stderr, "reload refused: %s is not applied; the running config keeps serving\n", res.File)
		for _, e := range res.Errors {
			fmt.Fprintln(stderr, "  "+e)
		}
		return
	case len(res.Changes) == 0:
		fmt.Fprintf(stdout, "reload applied (%s): nothing changed\n", res.File)
	default:
		fmt.Fprintf(stdout, "reload applied (%s): %d changes\n", res.File, len(res.Changes))
		for _, c := range res.Changes {
			fmt.Fprintln(stdout, "  "+c.String())
		}
	}
	if res.Note != "" {
		fmt.Fprintln(stdout, "note: "+res.Note)
	}
	if len(res.Errors) > 0 {
		fmt.Fprintln(stderr, "but these parts failed:")
		for _, e := range res.Errors {
			fmt.Fprintln(stderr, "  "+e)
		}
	}
}
