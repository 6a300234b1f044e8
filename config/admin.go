package config

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
)

// Admin is the [admin] table: where sluice serves its metrics, API and
// status page. Config.Admin is nil without the table, and then nothing is
// served.
type Admin struct {
	// Addr is the TCP address to listen on; invalid when Path is set.
	Addr netip.AddrPort
	// Path is the Unix socket to listen on (a bind with a '/' in it),
	// made absolute relative to the configuration file's directory; ""
	// when Addr is set.
	Path string
	// Token, if not empty, is the bearer token every request must carry
	// (Authorization: Bearer TOKEN), from token or read from token_file.
	Token string
}

// admin reads the [admin] table, if there is one.
func (d *decoder) admin(top *table) *Admin {
	t := top.table("admin")
	if t == nil {
		return nil
	}
	a := &Admin{}
	t.allow("bind", "token", "token_file")
	t.required("bind")
	if s, ok := t.str("bind"); ok {
		d.adminBind(t, s, a)
	}
	if t.has("token") && t.has("token_file") {
		t.errorf("token_file", "give token or token_file, not both")
	}
	if s, ok := t.str("token"); ok {
		if s == "" || strings.ContainsAny(s, " \t\r\n") {
			t.errorf("token", "must be a non-empty string without spaces or line breaks")
		}
		a.Token = s
	}
	if s, ok := t.str("token_file"); ok {
		tok, err := readSecret(d.path(s))
		switch {
		case err != nil:
			t.errorf("token_file", "%v", err)
		case strings.ContainsAny(tok, " \t\r\n"):
			t.errorf("token_file", "%s: the token must be one line without spaces", quote(s))
		}
		a.Token = tok
	}
	if a.Addr.IsValid() && !a.Addr.Addr().IsLoopback() && !t.has("token") && !t.has("token_file") {
		line := t.node.lineNo()
		if _, ok := t.keys["bind"]; ok {
			line = t.node.key("bind").lineNo()
		}
		d.warnings = append(d.warnings, &Error{File: d.file, Line: line, Key: t.key("bind"),
			Msg: fmt.Sprintf("%s is not a loopback address and no token is set: anyone who reaches it can drain backends; set token or token_file", a.Addr)})
	}
	return a
}

// adminBind reads [admin] bind: a Unix socket path if it has a '/',
// else an IP:port (IP literals only, as everywhere).
func (d *decoder) adminBind(t *table, s string, a *Admin) {
	if strings.Contains(s, "/") {
		a.Path = d.path(s)
		if filepath.Base(a.Path) == "" || strings.HasSuffix(s, "/") {
			t.errorf("bind", "%s: want a socket file, not a directory", quote(s))
		}
		return
	}
	ap, err := parseAddrPort(s, true)
	if err != nil {
		t.errorf("bind", "%v (or a Unix socket path, with a /)", err)
		return
	}
	a.Addr = ap
}

// Network returns "unix" for a socket path, else "tcp".
func (a *Admin) Network() string {
	if a.Path != "" {
		return "unix"
	}
	return "tcp"
}

// Address returns the path or the IP:port to listen on.
func (a *Admin) Address() string {
	if a.Path != "" {
		return a.Path
	}
	return a.Addr.String()
}
