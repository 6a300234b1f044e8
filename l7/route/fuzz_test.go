package route

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

// matchFrom builds a Match from fuzzed strings: spec is
// "host|path|exact|methods|header|value|cidr".
func matchFrom(spec string) Match {
	f := strings.SplitN(spec, "|", 7)
	for len(f) < 7 {
		f = append(f, "")
	}
	m := Match{Host: f[0], Path: f[1], PathExact: f[2] == "1", Header: http.CanonicalHeaderKey(f[4]), HeaderValue: f[5]}
	if m.Header == "" {
		m.HeaderValue = ""
	}
	if m.Path != "" && !strings.HasPrefix(m.Path, "/") {
		m.Path = "/" + m.Path
	}
	if f[3] != "" {
		m.Methods = strings.Split(f[3], ",")
	}
	if p, err := netip.ParsePrefix(f[6]); err == nil {
		m.Clients = []netip.Prefix{p.Masked()}
	}
	return m
}

// FuzzCovers checks that Covers never claims coverage that does not hold:
// if m covers o, every request o matches, m matches too. This is what
// sluice check relies on to call a route unreachable.
func FuzzCovers(f *testing.F) {
	f.Add("*.example.com|/api|0|GET||", "a.example.com|/api/v1|1|GET||", "a.example.com", "/api/v1", "GET", "X-A", "1", "10.0.0.1")
	f.Add("|/||||10.0.0.0/8", "x|/x|0|||10.1.0.0/16", "x", "/x", "POST", "", "", "10.1.2.3")
	f.Add("|/a/|0||x-h|", "|/a/b|1||X-H|v", "h", "/a/b", "GET", "X-H", "v", "::1")
	f.Fuzz(func(t *testing.T, ms, os, host, path, method, hname, hval, client string) {
		m, o := matchFrom(ms), matchFrom(os)
		ip, _ := netip.ParseAddr(client)
		h := http.Header{}
		if hname != "" {
			h[http.CanonicalHeaderKey(hname)] = []string{hval}
		}
		if !strings.HasPrefix(path, "/") {
			path = "/" + path // as Request.Path promises
		}
		r := &Request{Host: CanonicalHost(host), Path: path, Method: method, Header: h, Client: ip}
		if m.Covers(&o) && o.Matches(r) && !m.Matches(r) {
			t.Fatalf("%+v covers %+v, but matches not %+v", m, o, r)
		}
		if o.Matches(r) && o.Covers(&m) && m.Covers(&o) && !m.Matches(r) {
			t.Fatalf("mutual cover but different results")
		}
	})
}
