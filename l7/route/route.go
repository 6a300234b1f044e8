// Package route decides what an HTTP listener does with a request: which
// route it matches, whether that route's policy lets it through, and what
// the route ends in (a pool, a redirect or a fixed response). It sees a
// request only as plain values and a header getter, never an
// *http.Request, so a later HTTP/1.1 fast path that parses heads in place
// can reuse it unchanged.
//
//	t := route.NewTable(routes)
//	r := t.Find(&route.Request{Host: host, Path: path, Method: m, Header: h, Client: ip})
//	if r == nil { /* no route: the listener's default */ }
package route

import (
	"net/netip"
	"slices"
	"strings"
)

// Header gives a request's header values by canonical name;
// http.Header satisfies it.
type Header interface {
	Values(name string) []string
}

// Request is what routing looks at.
type Request struct {
	// Host is the request's host, lower case, without a port or a
	// trailing dot (see CanonicalHost).
	Host string
	// Path is the request's path, starting with "/" and cleaned of . and
	// .. segments, so a route's policy applies to the path the backend
	// will resolve.
	Path string
	// Method is the request method, as sent (methods are case-sensitive).
	Method string
	// Header gives the request's header values; nil means none.
	Header Header
	// Client is the client's address (after trusted proxies).
	Client netip.Addr
}

// Match is a route's conditions; a request must meet every condition that
// is set. The zero Match matches every request.
type Match struct {
	// Host is "" (any host), an exact host such as "example.com", or
	// "*.example.com" for any name below example.com (not example.com
	// itself). Lower case, without a trailing dot.
	Host string
	// Path is "" (any path) or starts with "/". As a prefix it matches
	// whole segments: "/api" matches /api and /api/x but not /apix;
	// "/api/" matches /api/ and below.
	Path string
	// PathExact makes Path match only itself.
	PathExact bool
	// Methods, if not empty, lists the methods matched.
	Methods []string
	// Header, if set, is a canonical header name the request must carry.
	Header string
	// HeaderValue, if set, is a value one of Header's values must equal.
	HeaderValue string
	// Clients, if not empty, are the client address ranges matched.
	Clients []netip.Prefix
}

// Matches reports whether r meets every condition of m. It does not
// allocate.
func (m *Match) Matches(r *Request) bool {
	if m.Host != "" && !hostMatches(m.Host, r.Host) {
		return false
	}
	if m.Path != "" && !m.pathMatches(r.Path) {
		return false
	}
	if len(m.Methods) > 0 && !slices.Contains(m.Methods, r.Method) {
		return false
	}
	if m.Header != "" && !m.headerMatches(r.Header) {
		return false
	}
	if len(m.Clients) > 0 && !inPrefixes(m.Clients, r.Client) {
		return false
	}
	return true
}

func (m *Match) pathMatches(p string) bool {
	if m.PathExact {
		return p == m.Path
	}
	return prefixMatches(m.Path, p)
}

// prefixMatches reports whether path p is prefix or lies below it, on a
// segment boundary.
func prefixMatches(prefix, p string) bool {
	if !strings.HasPrefix(p, prefix) {
		return false
	}
	return len(p) == len(prefix) || strings.HasSuffix(prefix, "/") || p[len(prefix)] == '/'
}

func hostMatches(pattern, host string) bool {
	if suffix, ok := strings.CutPrefix(pattern, "*"); ok {
		// suffix is ".example.com": at least one label must precede it.
		return len(host) > len(suffix) && strings.HasSuffix(host, suffix)
	}
	return host == pattern
}

func (m *Match) headerMatches(h Header) bool {
	if h == nil {
		return false
	}
	vs := h.Values(m.Header)
	if m.HeaderValue == "" {
		return len(vs) > 0
	}
	return slices.Contains(vs, m.HeaderValue)
}

func inPrefixes(ps []netip.Prefix, a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// CanonicalHost returns host as routing compares it: lower case, without a
// port, brackets or a trailing dot.
func CanonicalHost(host string) string {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		host = host[:i]
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	host = strings.TrimSuffix(host, ".")
	for i := 0; i < len(host); i++ {
		if c := host[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(host)
		}
	}
	return host
}
