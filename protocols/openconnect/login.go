package openconnect

// The login (aggregate authentication over HTTPS) of a client:
//
//  1. POST the server URL with a config-auth of type init.
//  2. While the reply is an auth-request, fill its form (user name, password,
//     the chosen group, hidden fields as given) and POST it to the form's
//     action. A password asked for a second time, an <error>, or a 401 is a
//     refused login (errAuthFailed).
//  3. A reply of type complete carries the session cookie (Set-Cookie
//     webvpn=…, or <session-token>): that is what CONNECT presents.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"

	"switchyard/protocols/openconnect/cstp"
)

// tlsConfig returns the TLS configuration that verifies the gateway as the
// settings say and presents the client certificate, if any.
func (s *ClientSettings) tlsConfig() *tls.Config {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// One CSTP frame per TLS record (ocserv reads them so): records
		// of full size from the first, not split by dynamic sizing.
		DynamicRecordSizingDisabled: true,
		ServerName:                  s.URL.Hostname(),
		RootCAs:                     s.RootCAs,
	}
	if s.Cert != nil {
		cfg.Certificates = []tls.Certificate{*s.Cert}
	}
	if s.HasPin {
		// The pin replaces chain verification, as openconnect's --servercert.
		pin := s.Pin
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("server sent no certificate")
			}
			if got := PinOf(cs.PeerCertificates[0]); got != pin {
				return fmt.Errorf("server certificate %s does not match server_pin %s", FormatPin(got), FormatPin(pin))
			}
			return nil
		}
	}
	return cfg
}

// login runs the XML authentication and returns the webvpn cookie.
func (a *clientActor) login(ctx context.Context) (string, error) {
	set := &a.set
	jar, _ := cookiejar.New(nil)
	dialer := &net.Dialer{Control: markControl(a.env.Mark)} // around a full tunnel
	tr := &http.Transport{TLSClientConfig: set.tlsConfig(), DisableCompression: true, ForceAttemptHTTP2: false,
		DialContext:  dialer.DialContext,
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
	defer tr.CloseIdleConnections()
	hc := &http.Client{
		Transport: tr,
		Jar:       jar,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 4 {
				return errors.New("too many redirects")
			}
			return nil
		},
	}
	ctx, cancel := context.WithTimeout(ctx, authTimeout)
	defer cancel()

	target := set.URL
	body := cstp.AppendInit(nil, set.URL.String())
	passwordSent := false
	for round := 0; round < maxAuthRounds; round++ {
		reply, at, err := postXML(ctx, hc, target, body)
		if err != nil {
			return "", err
		}
		if reply.Type == "complete" {
			if c := webvpnCookie(jar, at); c != "" {
				return c, nil
			}
			if reply.SessionToken != "" {
				return reply.SessionToken, nil
			}
			return "", errors.New("login complete but the server gave no webvpn cookie")
		}
		// auth-request
		if reply.Error != "" && (passwordSent || set.Cert != nil && set.Password == "") {
			return "", fmt.Errorf("%w: %s", errAuthFailed, reply.Error)
		}
		if reply.Form.HasPassword() {
			if passwordSent {
				return "", fmt.Errorf("%w: the server asked for the password again", errAuthFailed)
			}
			if set.Password == "" {
				return "", fmt.Errorf("%w: the server asks for a password and none is configured", errAuthFailed)
			}
			passwordSent = true
		}
		fields, group, err := fillForm(set, &reply.Form)
		if err != nil {
			return "", err
		}
		next, err := at.Parse(reply.Form.Action)
		if err != nil || next.Scheme != "https" || next.Host != at.Host {
			return "", fmt.Errorf("auth form action %q is not on the server", reply.Form.Action)
		}
		target = next
		body = cstp.AppendAuthReply(nil, fields, group, reply.Opaque)
	}
	return "", fmt.Errorf("login took more than %d rounds", maxAuthRounds)
}

// postXML POSTs one config-auth document and decodes the reply; it returns
// the URL the reply came from (after redirects).
func postXML(ctx context.Context, hc *http.Client, target *url.URL, body []byte) (cstp.AuthReply, *url.URL, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target.String(), bytes.NewReader(body))
	if err != nil {
		return cstp.AuthReply{}, nil, err
	}
	req.Header.Set("User-Agent", cstp.UserAgent)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Transcend-Version", "1")
	req.Header.Set("X-Aggregate-Auth", "1")
	req.Header.Set("X-AnyConnect-Platform", cstp.DeviceID)
	resp, err := hc.Do(req)
	if err != nil {
		var verr *tls.CertificateVerificationError
		var uerr x509.UnknownAuthorityError
		if errors.As(err, &verr) || errors.As(err, &uerr) {
			return cstp.AuthReply{}, nil, fmt.Errorf("server certificate: %w", err)
		}
		return cstp.AuthReply{}, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, cstp.MaxAuthBytes+1))
	if err != nil {
		return cstp.AuthReply{}, nil, fmt.Errorf("read auth reply: %w", err)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return cstp.AuthReply{}, nil, fmt.Errorf("%w: HTTP %s", errAuthFailed, resp.Status)
	case resp.StatusCode != http.StatusOK:
		return cstp.AuthReply{}, nil, fmt.Errorf("auth: HTTP %s", resp.Status)
	}
	reply, err := cstp.ParseAuthReply(data)
	if err != nil {
		return cstp.AuthReply{}, nil, err
	}
	return reply, resp.Request.URL, nil
}

// fillForm answers a form: the user name into text fields, the password
// into password fields, hidden fields as they came; a select is the group
// (sent as <group-select>, as openconnect does).
func fillForm(set *ClientSettings, f *cstp.Form) (out []cstp.Field, group string, err error) {
	for _, in := range f.Inputs {
		switch in.Type {
		case "hidden":
			out = append(out, cstp.Field{Name: in.Name, Value: in.Value})
		case "password":
			out = append(out, cstp.Field{Name: in.Name, Value: set.Password})
		case "select":
			v := ""
			if set.Group != "" {
				for _, o := range in.Options {
					if strings.EqualFold(strings.TrimSpace(o), set.Group) {
						v = strings.TrimSpace(o)
					}
				}
				if v == "" {
					return nil, "", fmt.Errorf("group %q is not offered (the server offers %q)", set.Group, in.Options)
				}
			} else if len(in.Options) > 0 {
				v = strings.TrimSpace(in.Options[0])
			}
			group = v
		case "text", "":
			if set.Username == "" {
				return nil, "", fmt.Errorf("%w: the server asks for %q and no username is configured", errAuthFailed, in.Name)
			}
			out = append(out, cstp.Field{Name: in.Name, Value: set.Username})
		}
	}
	return out, group, nil
}

func webvpnCookie(jar http.CookieJar, u *url.URL) string {
	for _, c := range jar.Cookies(u) {
		if c.Name == "webvpn" && c.Value != "" {
			return c.Value
		}
	}
	return ""
}
