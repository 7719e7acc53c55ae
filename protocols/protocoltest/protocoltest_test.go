package protocoltest

import (
	"strings"
	"testing"
	"time"

	"switchyard/config"
	"switchyard/protocols"
)

func settings(t *testing.T, yaml string) config.Settings {
	t.Helper()
	s, err := config.NewSettings("test.yaml", "protocols[0].settings", []byte(yaml))
	if err != nil {
		t.Fatalf("NewSettings: %v", err)
	}
	return s
}

func TestRegistered(t *testing.T) {
	for _, name := range []string{"slow", "panicky"} {
		if _, ok := protocols.Lookup(name); !ok {
			t.Errorf("protocol %q not registered", name)
		}
	}
}

func TestParse(t *testing.T) {
	const addrs = "listen: 10.91.0.1:7000\npeer: 10.91.0.2:7000\n"
	for _, tc := range []struct {
		name, proto, yaml string
		check             func(t *testing.T, v any)
		wantErr           string // substring; "" for success
	}{
		{name: "slow default delay", proto: "slow", yaml: addrs, check: func(t *testing.T, v any) {
			if got := v.(SlowSettings).Delay; got != DefaultDelay {
				t.Errorf("delay = %v, want %v", got, DefaultDelay)
			}
		}},
		{name: "slow delay", proto: "slow", yaml: addrs + "delay: 5ms\n", check: func(t *testing.T, v any) {
			if got := v.(SlowSettings).Delay; got != 5*time.Millisecond {
				t.Errorf("delay = %v, want 5ms", got)
			}
		}},
		{name: "panicky default marker", proto: "panicky", yaml: addrs, check: func(t *testing.T, v any) {
			if got := string(v.(PanickySettings).Marker); got != DefaultMarker {
				t.Errorf("marker = %q, want %q", got, DefaultMarker)
			}
		}},
		{name: "slow bad delay", proto: "slow", yaml: addrs + "delay: 5\n", wantErr: "test.yaml:3:8: protocols[0].settings.delay:"},
		{name: "slow unknown key", proto: "slow", yaml: addrs + "marker: x\n", wantErr: "protocols[0].settings.marker"},
		{name: "panicky empty marker", proto: "panicky", yaml: addrs + "marker: \"\"\n", wantErr: "protocols[0].settings.marker: must not be empty"},
		// udp's own validation, moved to the key's position in this block.
		{name: "bad peer port", proto: "panicky", yaml: "listen: 10.91.0.1:7000\npeer: 10.91.0.2:0\n", wantErr: "test.yaml:2:7: protocols[0].settings.peer: port must be 1-65535, got 0"},
		{name: "missing listen", proto: "slow", yaml: "peer: 10.91.0.2:7000\n", wantErr: "protocols[0].settings.listen: is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info, _ := protocols.Lookup(tc.proto)
			v, err := info.Parse(settings(t, tc.yaml))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Parse: got error %v, want none", err)
				}
				tc.check(t, v)
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Parse: got error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}
