package config

import (
	"reflect"
	"testing"
)

// TestSettingsYAML checks that YAML re-renders a settings block as text
// that NewSettings parses back to the same values.
func TestSettingsYAML(t *testing.T) {
	src := `protocols:
  - name: a
    type: udp
    settings: &common
      listen: 10.0.0.1:7000
      tags: [x, "y z"]
  - name: b
    type: udp
    settings:
      <<: *common
      listen: 10.0.0.2:7000
      copy: *common
      nested:
        peers:
          - endpoint: 1.2.3.4:51820
            keys: [k1, k2]
            labels: {site: x, "a key": "v: w"}
          - - inner
            - list
          - []
          - {}
      quoted: "tab\there \"q\" \\ é \u0001 # not a comment"
      single: 'it''s'
      empty: ""
      words: ["true", "null", "123", "0x1F", "- a", "*x", "&y", " lead", "trail ", "yes", "~", "a: b", "[x]"]
      text: |
        line one
          line two
      folded: >
        a
        b
      flow: {a: [1, 2,
          3], b: {c: d,
          e: [x, {y: z}]}}
      10.0.0.0/8: prefix key
      7: int key
      hex: 0x1F
      neg: -5
      big: 18446744073709551615
      float: 3.5
      inf: -.inf
      bool: false
      nothing: ~
      tagged: !!str 123
`
	c, err := Parse("gw.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range c.Protocols {
		text := p.Settings.YAML()
		back, err := NewSettings("host.yaml", p.Settings.Path(), text)
		if err != nil {
			t.Fatalf("protocols[%d]: NewSettings(YAML()): %v\n%s", i, err, text)
		}
		var want, got any
		if err := p.Settings.Decode(&want); err != nil {
			t.Fatal(err)
		}
		if err := back.Decode(&got); err != nil {
			t.Fatalf("protocols[%d]: Decode of YAML(): %v\n%s", i, err, text)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("protocols[%d]: round trip differs\ngot  %#v\nwant %#v\ntext:\n%s", i, got, want, text)
		}
		if again := back.YAML(); string(again) != string(text) {
			t.Errorf("protocols[%d]: YAML of the rendered block differs:\n%s\nfirst:\n%s", i, again, text)
		}
		if got, want := back.Path(), p.Settings.Path(); got != want {
			t.Errorf("Path = %q, want %q", got, want)
		}
	}
	t.Logf("%s", c.Protocols[1].Settings.YAML())
}

func TestSettingsYAMLText(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"absent", "", ""},
		{"null", "~\n", ""},
		{"empty", "{}\n", ""},
		{
			name: "block style, strings quoted unless plain words",
			src:  "listen: 10.0.0.1:7000\npolicy: drop_oldest\npeers: [{endpoint: \"1.2.3.4:5\", keys: [a, 'b c']}, [x], {}]\nn: 3\n",
			want: "listen: \"10.0.0.1:7000\"\npolicy: drop_oldest\npeers:\n  - endpoint: \"1.2.3.4:5\"\n    keys:\n      - a\n      - \"b c\"\n  - - x\n  - {}\n\"n\": 3\n", // n is a YAML 1.1 boolean: quoted
		},
		{
			// A cycle cannot be expanded: it stays an alias, and Decode of
			// the text refuses it as it refuses the original.
			name: "alias cycle",
			src:  "a: &x {b: *x}\n",
			want: "a:\n  b:\n    b: *x\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewSettings("t.yaml", "settings", []byte(tt.src))
			if err != nil {
				t.Fatal(err)
			}
			got := s.YAML()
			if string(got) != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tt.want)
			}
			if tt.want == "" && got != nil {
				t.Errorf("YAML() = %q, want nil", got)
			}
		})
	}
	if got := (Settings{}).YAML(); got != nil {
		t.Errorf("zero Settings: YAML() = %q, want nil", got)
	}

	s, err := NewSettings("t.yaml", "settings", []byte("a: &x {b: *x}\n"))
	if err != nil {
		t.Fatal(err)
	}
	back, err := NewSettings("host.yaml", "settings", s.YAML())
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if got, want := errString(back.Decode(&v)), `host.yaml:3:8: settings.a.b.b: alias *x has no anchor &x before it`; got != want {
		t.Errorf("Decode of a rendered cycle: got %q, want %q", got, want)
	}
}
