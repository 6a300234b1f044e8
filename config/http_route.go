package config

import (
	"fmt"
	"net/netip"
	"net/textproto"
	"net/url"
	"path"
	"slices"
	"strings"

	"sluice/internal/pool"
	"sluice/l7/route"
)

// routeKeys are the keys of a [[listeners.NAME.routes]] entry: its name,
// its conditions, its policy, and its end with the end's options.
var routeKeys = []string{"name",
	"host", "path", "path_exact", "method", "header", "header_value", "client",
	"allow_methods", "allow", "deny", "requests_per_client", "requests_per_client_burst",
	"pool", "hash_header", "hash_cookie", "strip_prefix", "add_prefix", "set_host", "set_request_headers",
	"remove_request_headers", "set_response_headers", "remove_response_headers", "redirect", "redirect_https", "code", "respond", "body", "content_type", "compress", "cache"}

// Limits and defaults of routes.
const (
	defaultRedirectCode      = 302 // a moved target may move back
	defaultHTTPSRedirectCode = 301 // an upgrade to https is for good
	defaultContentType       = "text/plain; charset=utf-8"
	maxFixedBody             = 64 << 10
)

// route reads route entry i; pools are the names under [pools], sorted.
func (t *table) route(i int, pools []string) route.Route {
	t.allow(routeKeys...)
	r := route.Route{Name: fmt.Sprintf("routes[%d]", i)}
	if s, ok := t.str("name"); ok {
		if nameRE.MatchString(s) {
			r.Name = s
		} else {
			t.errorf("name", "must be 1..%d characters of A-Z a-z 0-9 _ . -", maxNameLen)
		}
	}
	t.match(&r.Match)
	r.AllowMethods = t.methods("allow_methods")
	r.Allow = t.cidrList("allow")
	r.Deny = t.cidrList("deny")
	t.requestRate(&r.RequestRate, &r.RequestBurst)
	t.routeEnd(&r, pools)
	return r
}

// match reads a route's conditions.
func (t *table) match(m *route.Match) {
	if s, ok := t.str("host"); ok {
		if h, err := routeHost(s); err != nil {
			t.errorf("host", "%v", err)
		} else {
			m.Host = h
		}
	}
	switch {
	case t.has("path") && t.has("path_exact"):
		t.errorf("path_exact", "a route has path (a prefix) or path_exact, not both")
	case t.has("path_exact"):
		m.Path, m.PathExact = t.routePath("path_exact"), true
	default:
		m.Path = t.routePath("path")
	}
	m.Methods = t.methods("method")
	if s, ok := t.str("header"); ok {
		if !isToken(s) {
			t.errorf("header", "%s is not a header name", quote(s))
		}
		m.Header = textproto.CanonicalMIMEHeaderKey(s)
	}
	if s, ok := t.str("header_value"); ok {
		if !t.has("header") {
			t.errorf("header_value", "needs header, the name whose value it is")
		}
		m.HeaderValue = s
	}
	m.Clients = t.cidrList("client")
}

// routeHost checks a host condition: a name, "*." and a name, or an IP
// address. Host names are case-insensitive: it returns the lower case.
func routeHost(s string) (string, error) {
	h := strings.TrimSuffix(strings.ToLower(s), ".")
	if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")); err == nil {
		return a.String(), nil
	}
	name, wild := strings.CutPrefix(h, "*.")
	if !isDNSName(name) {
		return "", fmt.Errorf("%s: want a host name such as \"example.com\", a wildcard such as \"*.example.com\", or an IP address", quote(s))
	}
	if wild {
		return "*." + name, nil
	}
	return name, nil
}

func isDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// routePath reads a path condition. Requests are routed on their cleaned
// path (no . or .. segments, no //), so a path that is not clean could
// never match.
func (t *table) routePath(k string) string {
	s, ok := t.str(k)
	if !ok {
		return ""
	}
	switch {
	case !strings.HasPrefix(s, "/"):
		t.errorf(k, "%s: must start with /", quote(s))
	case strings.ContainsAny(s, "?# \t\r\n"):
		t.errorf(k, "%s: a path has no query, fragment or spaces", quote(s))
	case cleanRoutePath(s) != s:
		t.errorf(k, "%s never matches: requests are routed on their cleaned path; did you mean %s?",
			quote(s), quote(cleanRoutePath(s)))
	default:
		return s
	}
	return ""
}

// cleanRoutePath is path.Clean keeping a trailing slash, as l7 cleans a
// request's path before routing it.
func cleanRoutePath(p string) string {
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

// methods reads a method or a list of methods.
func (t *table) methods(k string) []string {
	ms := t.stringList(k)
	for _, m := range ms {
		switch {
		case !isToken(m):
			t.errorf(k, "%s is not a method", quote(m))
		case strings.ToUpper(m) != m:
			t.errorf(k, "methods are case-sensitive: did you mean %s?", quote(strings.ToUpper(m)))
		}
	}
	return ms
}

// isToken reports whether s is an RFC 9110 token, as methods and header
// names are.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// routeEnd reads what a route ends in: exactly one of pool, redirect,
// redirect_https and respond, with that end's options.
func (t *table) routeEnd(r *route.Route, pools []string) {
	var ends []string
	for _, k := range []string{"pool", "redirect", "redirect_https", "respond"} {
		if t.has(k) {
			ends = append(ends, k)
		}
	}
	switch len(ends) {
	case 0:
		t.errorf("pool", "a route ends in one of pool, redirect, redirect_https or respond; this one has none")
		return
	case 1:
	default:
		t.errorf(ends[1], "a route ends in one of pool, redirect, redirect_https or respond, not %s", strings.Join(ends, " and "))
		return
	}
	for k, owner := range map[string]string{"code": "redirect or redirect_https", "body": "respond", "content_type": "respond",
		"hash_header": "pool", "hash_cookie": "pool", "compress": "pool", "cache": "pool"} {
		if t.has(k) && !strings.Contains(owner, ends[0]) {
			t.errorf(k, "applies only with %s", owner)
		}
	}
	for _, k := range rewriteKeys {
		if t.has(k) && ends[0] != "pool" {
			t.errorf(k, "applies only with pool")
		}
	}
	switch ends[0] {
	case "pool":
		r.Kind = route.Forward
		if s, ok := t.str("pool"); ok {
			if _, found := slices.BinarySearch(pools, s); !found {
				t.errorf("pool", "no pool %s in this file", quote(s))
			}
			r.Pool = s
		}
		t.hashKeys(r)
		t.rewrite(r)
		t.boolean("compress", &r.Compress)
		if s, ok := t.str("cache"); ok {
			if _, found := slices.BinarySearch(t.d.cacheNames, s); !found {
				t.errorf("cache", "no cache %s in this file: add a [caches.%s] table", quote(s), s)
			}
			r.Cache = s
		}
	case "redirect", "redirect_https":
		t.redirect(r, ends[0])
	case "respond":
		t.respond(r)
	}
}

func (t *table) redirect(r *route.Route, k string) {
	r.Kind = route.Redirect
	r.Status = defaultRedirectCode
	if k == "redirect_https" {
		t.boolean(k, &r.HTTPS)
		if !r.HTTPS {
			t.errorf(k, "must be true, or left out")
		}
		r.Status = defaultHTTPSRedirectCode
	} else if s, ok := t.str(k); ok {
		u, err := url.Parse(s)
		if err != nil || !(u.IsAbs() && u.Host != "" && (u.Scheme == "http" || u.Scheme == "https") || u.Scheme == "" && strings.HasPrefix(s, "/")) {
			t.errorf(k, "%s: want an http(s) URL such as \"https://example.com/\", or a path such as \"/new\"", quote(s))
		}
		r.Location = s
	}
	if t.integer("code", 300, 399, &r.Status) && !slices.Contains([]int{301, 302, 303, 307, 308}, r.Status) {
		t.errorf("code", "%d is not a redirect: want 301, 302, 303, 307 or 308", r.Status)
	}
}

func (t *table) respond(r *route.Route) {
	r.Kind = route.Respond
	r.ContentType = defaultContentType
	t.integer("respond", 200, 599, &r.Status)
	if s, ok := t.str("body"); ok {
		if len(s) > maxFixedBody {
			t.errorf("body", "%d bytes: at most %d", len(s), maxFixedBody)
		}
		r.Body = s
	}
	if s, ok := t.str("content_type"); ok {
		r.ContentType = s
	}
}

// hashKeys reads hash_header or hash_cookie, which apply to a Maglev pool.
func (t *table) hashKeys(r *route.Route) {
	if t.has("hash_header") && t.has("hash_cookie") {
		t.errorf("hash_cookie", "a route hashes hash_header or hash_cookie, not both")
		return
	}
	for _, k := range []string{"hash_header", "hash_cookie"} {
		s, ok := t.str(k)
		if !ok {
			continue
		}
		if i := slices.IndexFunc(t.d.parsed, func(p Pool) bool { return p.Name == r.Pool }); i >= 0 && t.d.parsed[i].Balance != pool.Maglev {
			t.errorf(k, "applies only to a pool with balance = \"maglev\"; pool %s has %q", quote(r.Pool), t.d.parsed[i].Balance)
		}
		switch {
		case k == "hash_header" && isToken(s):
			r.HashHeader = textproto.CanonicalMIMEHeaderKey(s)
		case k == "hash_cookie" && isToken(s):
			r.HashCookie = s
		default:
			t.errorf(k, "%s is not a %s name", quote(s), strings.TrimPrefix(k, "hash_"))
		}
	}
}
