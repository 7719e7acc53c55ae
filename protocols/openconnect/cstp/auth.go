package cstp

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"strings"
)

// The aggregate authentication exchange (XML over HTTPS POST), as
// openconnect and ocserv speak it:
//
//	client → POST /          <config-auth type="init">
//	server ← 200             <config-auth type="auth-request"> with a form
//	client → POST form.action <config-auth type="auth-reply"><auth>…</auth>
//	   … more rounds (ocserv asks for the user name, then the password) …
//	server ← 200             <config-auth type="complete"> and Set-Cookie webvpn=…
//
// A refused login is an auth-request again (with an <error>), or a 401.

// MaxAuthBytes (64 KiB) bounds an authentication reply body.
const MaxAuthBytes = 64 << 10

// AuthReply is what the server says in one round.
type AuthReply struct {
	Type         string // "auth-request" or "complete"
	Message      string // <message> of the form
	Error        string // <error> text, if any
	Banner       string // <banner>, shown after a login
	Form         Form
	SessionToken string // <session-token> of a complete reply
	Opaque       []byte // <opaque> as sent (echoed back verbatim)
}

// Form is the form of an auth-request.
type Form struct {
	Action string
	Inputs []Input
}

// Input is one form field. Selects are inputs of Type "select" with their
// options.
type Input struct {
	Type    string // text, password, hidden, select
	Name    string
	Label   string
	Value   string
	Options []string
}

// HasPassword reports whether the form asks for a password.
func (f *Form) HasPassword() bool {
	for _, in := range f.Inputs {
		if in.Type == "password" {
			return true
		}
	}
	return false
}

// xmlConfigAuth is the decoding shape of a server reply.
type xmlConfigAuth struct {
	XMLName      xml.Name `xml:"config-auth"`
	Type         string   `xml:"type,attr"`
	SessionToken string   `xml:"session-token"`
	Banner       string   `xml:"banner"`
	Opaque       *struct {
		Inner []byte `xml:",innerxml"`
		IsFor string `xml:"is-for,attr"`
	} `xml:"opaque"`
	Auth struct {
		ID      string `xml:"id,attr"`
		Message string `xml:"message"`
		Banner  string `xml:"banner"`
		Error   *struct {
			Text string `xml:",chardata"`
		} `xml:"error"`
		Form struct {
			Action string `xml:"action,attr"`
			Inputs []struct {
				Type  string `xml:"type,attr"`
				Name  string `xml:"name,attr"`
				Label string `xml:"label,attr"`
				Value string `xml:"value,attr"`
			} `xml:"input"`
			Selects []struct {
				Name    string   `xml:"name,attr"`
				Label   string   `xml:"label,attr"`
				Options []string `xml:"option"`
			} `xml:"select"`
		} `xml:"form"`
	} `xml:"auth"`
}

// ParseAuthReply decodes a server's config-auth reply (at most MaxAuthBytes).
func ParseAuthReply(body []byte) (AuthReply, error) {
	if len(body) > MaxAuthBytes {
		return AuthReply{}, fmt.Errorf("cstp: auth reply of %d bytes, more than %d", len(body), MaxAuthBytes)
	}
	var x xmlConfigAuth
	d := xml.NewDecoder(bytes.NewReader(body))
	d.Strict = true
	if err := d.Decode(&x); err != nil {
		return AuthReply{}, fmt.Errorf("cstp: auth reply is not config-auth XML: %w", err)
	}
	r := AuthReply{
		Type:         x.Type,
		Message:      strings.TrimSpace(x.Auth.Message),
		SessionToken: strings.TrimSpace(x.SessionToken),
		Banner:       strings.TrimSpace(x.Banner + x.Auth.Banner),
		Form:         Form{Action: x.Auth.Form.Action},
	}
	if x.Auth.Error != nil {
		r.Error = strings.TrimSpace(x.Auth.Error.Text)
	}
	if x.Opaque != nil {
		r.Opaque = []byte(`<opaque is-for="` + xmlEscape(x.Opaque.IsFor) + `">` + string(x.Opaque.Inner) + `</opaque>`)
	}
	for _, in := range x.Auth.Form.Inputs {
		r.Form.Inputs = append(r.Form.Inputs, Input{Type: strings.ToLower(in.Type), Name: in.Name, Label: in.Label, Value: in.Value})
	}
	for _, s := range x.Auth.Form.Selects {
		r.Form.Inputs = append(r.Form.Inputs, Input{Type: "select", Name: s.Name, Label: s.Label, Options: s.Options})
	}
	switch r.Type {
	case "complete":
	case "auth-request":
		if r.Form.Action == "" && r.Error == "" {
			return AuthReply{}, errors.New("cstp: auth-request without a form action")
		}
	default:
		return AuthReply{}, fmt.Errorf("cstp: unexpected config-auth type %q", clip(r.Type))
	}
	return r, nil
}

// ClientVersion is the version string the client announces. ocserv answers
// XML (not HTML) to user agents that start with "Open AnyConnect".
const (
	ClientVersion = "v9.01"
	UserAgent     = "Open AnyConnect VPN Agent " + ClientVersion
	DeviceID      = "linux-64"
)

// AppendInit appends the first request of a login: type init, naming the
// URL the client was given.
func AppendInit(dst []byte, groupAccess string) []byte {
	dst = append(dst, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"...)
	dst = append(dst, `<config-auth client="vpn" type="init" aggregate-auth-version="2">`...)
	dst = append(dst, `<version who="vpn">`+ClientVersion+`</version><device-id>`+DeviceID+`</device-id>`...)
	dst = append(dst, "<group-access>"...)
	dst = append(dst, xmlEscape(groupAccess)...)
	dst = append(dst, "</group-access></config-auth>"...)
	return dst
}

// Field is one answered form field.
type Field struct{ Name, Value string }

// AppendAuthReply appends an auth-reply with the given fields (in order),
// the chosen group (<group-select>, where ocserv and AnyConnect gateways
// read it; empty: none) and the server's opaque element echoed back.
func AppendAuthReply(dst []byte, fields []Field, group string, opaque []byte) []byte {
	dst = append(dst, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"...)
	dst = append(dst, `<config-auth client="vpn" type="auth-reply" aggregate-auth-version="2">`...)
	dst = append(dst, `<version who="vpn">`+ClientVersion+`</version><device-id>`+DeviceID+`</device-id>`...)
	if group != "" {
		dst = append(dst, "<group-select>"...)
		dst = append(dst, xmlEscape(group)...)
		dst = append(dst, "</group-select>"...)
	}
	dst = append(dst, opaque...)
	dst = append(dst, "<auth>"...)
	for _, f := range fields {
		if !validName(f.Name) {
			continue
		}
		dst = append(dst, "<"+f.Name+">"...)
		dst = append(dst, xmlEscape(f.Value)...)
		dst = append(dst, "</"+f.Name+">"...)
	}
	dst = append(dst, "</auth></config-auth>"...)
	return dst
}

// validName reports whether n can be an XML element name as written
// (form field names come from the server).
func validName(n string) bool {
	if n == "" || len(n) > 64 {
		return false
	}
	for i, c := range n {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' ||
			i > 0 && (c >= '0' && c <= '9' || c == '-' || c == '.')
		if !ok {
			return false
		}
	}
	return !strings.HasPrefix(strings.ToLower(n), "xml")
}

func xmlEscape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// ClientAuth is what a client sends in one round (server side).
type ClientAuth struct {
	Type     string            // "init" or "auth-reply"
	Fields   map[string]string // the <auth> children: username, password, …
	Group    string            // <group-select>
	Username string            // Fields["username"]
	Password string            // Fields["password"]
}

type xmlClientAuth struct {
	XMLName     xml.Name `xml:"config-auth"`
	Type        string   `xml:"type,attr"`
	GroupSelect string   `xml:"group-select"`
	Auth        struct {
		Fields []struct {
			XMLName xml.Name
			Value   string `xml:",chardata"`
		} `xml:",any"`
	} `xml:"auth"`
}

// ParseClientAuth decodes a client's config-auth (at most MaxAuthBytes).
func ParseClientAuth(body []byte) (ClientAuth, error) {
	if len(body) > MaxAuthBytes {
		return ClientAuth{}, fmt.Errorf("cstp: auth request of %d bytes, more than %d", len(body), MaxAuthBytes)
	}
	var x xmlClientAuth
	d := xml.NewDecoder(bytes.NewReader(body))
	d.Strict = true
	if err := d.Decode(&x); err != nil {
		return ClientAuth{}, fmt.Errorf("cstp: auth request is not config-auth XML: %w", err)
	}
	if x.Type != "init" && x.Type != "auth-reply" {
		return ClientAuth{}, fmt.Errorf("cstp: unexpected config-auth type %q", clip(x.Type))
	}
	c := ClientAuth{Type: x.Type, Group: strings.TrimSpace(x.GroupSelect), Fields: map[string]string{}}
	for _, f := range x.Auth.Fields {
		if len(c.Fields) >= 32 {
			break
		}
		c.Fields[f.XMLName.Local] = f.Value
	}
	c.Username, c.Password = strings.TrimSpace(c.Fields["username"]), c.Fields["password"]
	return c, nil
}

// AppendAuthRequest appends a server's auth-request asking for a user name
// and a password in one form posted to action; errText, if any, says why
// the previous attempt failed.
func AppendAuthRequest(dst []byte, action, errText string) []byte {
	dst = append(dst, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"...)
	dst = append(dst, `<config-auth client="vpn" type="auth-request" aggregate-auth-version="2">`...)
	dst = append(dst, `<version who="sg">switchyard</version><auth id="main">`...)
	dst = append(dst, `<message>Please enter your username and password.</message>`...)
	if errText != "" {
		dst = append(dst, `<error id="main" param1="" param2="">`...)
		dst = append(dst, xmlEscape(errText)...)
		dst = append(dst, `</error>`...)
	}
	dst = append(dst, `<form method="post" action="`...)
	dst = append(dst, xmlEscape(action)...)
	dst = append(dst, `"><input type="text" name="username" label="Username:" />`...)
	dst = append(dst, `<input type="password" name="password" label="Password:" /></form></auth></config-auth>`...)
	return dst
}

// AppendAuthComplete appends a server's complete reply with the session
// token (the same value as the webvpn cookie).
func AppendAuthComplete(dst []byte, token string) []byte {
	dst = append(dst, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"...)
	dst = append(dst, `<config-auth client="vpn" type="complete" aggregate-auth-version="2">`...)
	dst = append(dst, `<version who="sg">switchyard</version><auth id="success"><banner></banner></auth>`...)
	dst = append(dst, `<session-token>`...)
	dst = append(dst, xmlEscape(token)...)
	dst = append(dst, `</session-token></config-auth>`...)
	return dst
}
