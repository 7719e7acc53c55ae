package config

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckPorts: two protocols binding one UDP port of one machine are
// refused (issue 12, finding 7: run failed to bind the second, check said
// ok). Hosts that are spawned or listen on loopback are this machine;
// others are the machine of their address.
func TestCheckPorts(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "gw.yaml")
	src := minimal + `remote:
  listen: 0.0.0.0:7000
` + tlsFiles(t, dir) + `hosts:
  - {name: spawned, listen: 10.0.0.5:7100, spawn: true}
  - {name: far, listen: 10.0.0.6:7100}
  - {name: far-too, listen: 10.0.0.6:7101}
protocols:
  - name: a
    type: udp
    settings: {listen: "10.0.0.1:7000", peer: "10.0.0.2:7000"}
  - name: b
    type: udp
    host: spawned
    settings: {listen: "10.0.0.1:7000", peer: "10.0.0.2:7000"}
  - name: c
    type: wireguard
    host: far
    settings:
      listen_port: 7000
  - name: d
    type: wireguard
    host: far-too
    settings:
      listen_port: 7000
  - name: e
    type: wireguard
    settings: {listen_port: 0}
  - name: f
    type: other
    settings: {port: 7000}
`
	c, err := Parse(cfgFile, []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	udp := func(field string, port uint16) []Port { return []Port{{Network: "udp", Port: port, Field: field}} }
	ports := [][]Port{
		udp("listen", 7000),
		udp("listen", 7000),
		udp("listen_port", 7000),
		udp("listen_port", 7000),
		udp("listen_port", 0),
		{{Network: "tcp", Port: 7000, Field: "port"}},
	}
	want := []string{
		cfgFile + `:20:24: protocols[1].settings.listen: udp port 7000 is already bound by protocol "a" (protocols[0].settings.listen, line 16); a protocol binds its port on every address of this machine`,
		cfgFile + `:30:20: protocols[3].settings.listen_port: udp port 7000 is already bound by protocol "c" (protocols[2].settings.listen_port, line 25); a protocol binds its port on every address of the machine at 10.0.0.6`,
	}
	if got := strings.Split(errString(c.CheckPorts(ports)), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if errs := c.CheckPorts(make([][]Port, 2)); len(errs) != 0 {
		t.Errorf("no ports: %v", errs)
	}
}
