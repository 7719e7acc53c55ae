package cstp

import (
	"encoding/xml"
	"reflect"
	"strings"
	"testing"
)

// Replies as ocserv 1.1.6 writes them (plain auth: user name, then password).
const (
	ocservAskUser = `<?xml version="1.0" encoding="UTF-8"?>
<config-auth client="vpn" type="auth-request">
<version who="sg">0.1(1)</version>
<auth id="main">
<message>Please enter your username.</message>
<form method="post" action="/auth">
<input type="text" name="username" label="Username:" />
</form></auth>
</config-auth>`
	ocservAskPassword = `<?xml version="1.0" encoding="UTF-8"?>
<config-auth client="vpn" type="auth-request">
<version who="sg">0.1(1)</version>
<auth id="main">
<message>Please enter your password.</message>
<form method="post" action="/auth">
<input type="password" name="password" label="Password:" />
<select name="group_list" label="GROUP:"><option>staff</option><option>ops</option></select>
</form></auth>
</config-auth>`
	ocservComplete = `<?xml version="1.0" encoding="UTF-8"?>
<config-auth client="vpn" type="complete">
<version who="sg">0.1(1)</version>
<auth id="success">
<banner>Welcome</banner>
</auth>
<session-token>abcdef</session-token>
</config-auth>`
)

func TestParseAuthReply(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want AuthReply
	}{
		{"ask user", ocservAskUser, AuthReply{Type: "auth-request", Message: "Please enter your username.",
			Form: Form{Action: "/auth", Inputs: []Input{{Type: "text", Name: "username", Label: "Username:"}}}}},
		{"ask password", ocservAskPassword, AuthReply{Type: "auth-request", Message: "Please enter your password.",
			Form: Form{Action: "/auth", Inputs: []Input{{Type: "password", Name: "password", Label: "Password:"},
				{Type: "select", Name: "group_list", Label: "GROUP:", Options: []string{"staff", "ops"}}}}}},
		{"complete", ocservComplete, AuthReply{Type: "complete", Banner: "Welcome", SessionToken: "abcdef"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseAuthReply([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
	if r, _ := ParseAuthReply([]byte(ocservAskPassword)); !r.Form.HasPassword() {
		t.Error("HasPassword: got false")
	}
}

func TestParseAuthReplyErrors(t *testing.T) {
	for _, in := range []string{
		"", "<html>login</html>", `<config-auth type="weird"/>`, `<config-auth type="auth-request"><auth/></config-auth>`,
		`<config-auth type="complete">` + strings.Repeat(" ", MaxAuthBytes) + `</config-auth>`,
		`<config-auth type="complete"><session-token>&undefined;</session-token></config-auth>`,
	} {
		if _, err := ParseAuthReply([]byte(in)); err == nil {
			t.Errorf("ParseAuthReply(%.40q): got no error", in)
		}
	}
}

func TestAppendAuthReply(t *testing.T) {
	got := AppendAuthReply(nil, []Field{{"username", "a<b&c"}, {"bad name", "x"}, {"password", "p"}}, "ops",
		[]byte(`<opaque is-for="sg"><x/></opaque>`))
	var doc struct {
		XMLName xml.Name `xml:"config-auth"`
		Type    string   `xml:"type,attr"`
		Group   string   `xml:"group-select"`
		Opaque  struct {
			IsFor string `xml:"is-for,attr"`
		} `xml:"opaque"`
		Auth struct {
			Username string `xml:"username"`
			Password string `xml:"password"`
		} `xml:"auth"`
	}
	if err := xml.Unmarshal(got, &doc); err != nil {
		t.Fatalf("%v:\n%s", err, got)
	}
	if doc.Type != "auth-reply" || doc.Auth.Username != "a<b&c" || doc.Auth.Password != "p" || doc.Opaque.IsFor != "sg" || doc.Group != "ops" {
		t.Errorf("parsed back: %+v", doc)
	}
	if strings.Contains(string(got), "bad name") {
		t.Errorf("a field name that is no XML name was written:\n%s", got)
	}
	init := AppendInit(nil, "https://vpn/")
	if err := xml.Unmarshal(init, new(struct{})); err != nil || !strings.Contains(string(init), `type="init"`) {
		t.Errorf("init: %v\n%s", err, init)
	}
}

func FuzzParseAuthReply(f *testing.F) {
	f.Add([]byte(ocservAskUser))
	f.Add([]byte(ocservComplete))
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = ParseAuthReply(b) })
}

func TestParseClientAuth(t *testing.T) {
	reply := AppendAuthReply(nil, []Field{{"username", "alice"}, {"password", "p w"}}, "staff", nil)
	got, err := ParseClientAuth(reply)
	if err != nil || got.Type != "auth-reply" || got.Username != "alice" || got.Password != "p w" || got.Group != "staff" {
		t.Errorf("got %+v %v", got, err)
	}
	init, err := ParseClientAuth(AppendInit(nil, "https://vpn/"))
	if err != nil || init.Type != "init" {
		t.Errorf("init: got %+v %v", init, err)
	}
	for _, bad := range []string{"", "<x/>", `<config-auth type="complete"/>`, "<config-auth"} {
		if _, err := ParseClientAuth([]byte(bad)); err == nil {
			t.Errorf("ParseClientAuth(%q): got no error", bad)
		}
	}
	// What the server writes, the client reads.
	req, err := ParseAuthReply(AppendAuthRequest(nil, "/auth", "Login failed."))
	if err != nil || req.Error != "Login failed." || !req.Form.HasPassword() || req.Form.Action != "/auth" {
		t.Errorf("auth request: got %+v %v", req, err)
	}
	done, err := ParseAuthReply(AppendAuthComplete(nil, "tok<en"))
	if err != nil || done.Type != "complete" || done.SessionToken != "tok<en" {
		t.Errorf("complete: got %+v %v", done, err)
	}
}

func FuzzParseClientAuth(f *testing.F) {
	f.Add(AppendAuthReply(nil, []Field{{"username", "a"}, {"password", "b"}}, "g", nil))
	f.Add(AppendInit(nil, "https://x/"))
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = ParseClientAuth(b) })
}
