package config

import (
	"net"
	"net/netip"
	"net/textproto"
	"slices"
	"strings"

	"golang.org/x/net/http/httpguts"

	"sluice/l7/route"
)

// rewriteKeys are a forwarding route's keys that change the request and
// the response.
var rewriteKeys = []string{"strip_prefix", "add_prefix", "set_host",
	"set_request_headers", "remove_request_headers", "set_response_headers", "remove_response_headers"}

// managedHeaders may not be set or removed by a route: the framing and
// hop-by-hop headers are the proxy's to handle (RFC 9110 section 7.6.1),
// Host has set_host, and the request ID is checked and logged.
var managedHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer",
	"Transfer-Encoding", "Upgrade", "Content-Length", "Host", "X-Request-Id"}

// rewrite reads a forwarding route's rewrite keys into r.Rewrite.
func (t *table) rewrite(r *route.Route) {
	rw := &r.Rewrite
	if s, ok := t.str("strip_prefix"); ok {
		switch {
		case r.Path == "" || !strings.HasPrefix(s, "/") || !prefixCovers(s, r.Path):
			t.errorf("strip_prefix", "%s must be a prefix of the route's path (%s), on a segment boundary, "+
				"so that every request it matches has it", quote(s), quote(r.Path))
		default:
			rw.StripPrefix = s
		}
	}
	if s, ok := t.str("add_prefix"); ok {
		if !strings.HasPrefix(s, "/") || strings.ContainsAny(s, "?# \t\r\n") {
			t.errorf("add_prefix", "%s: want a path such as \"/v2\"", quote(s))
		}
		rw.AddPrefix = s
	}
	if s, ok := t.str("set_host"); ok {
		if !validHostPort(s) {
			t.errorf("set_host", "%s: want a host name or IP address, with an optional port", quote(s))
		}
		rw.Host = s
	}
	rw.SetRequest = t.headerValues("set_request_headers")
	rw.RemoveRequest = t.headerNames("remove_request_headers")
	rw.SetResponse = t.headerValues("set_response_headers")
	rw.RemoveResponse = t.headerNames("remove_response_headers")
}

// prefixCovers reports whether every path a route with path p matches
// starts with prefix on a segment boundary.
func prefixCovers(prefix, p string) bool {
	prefix = strings.TrimSuffix(prefix, "/")
	return p == prefix || strings.HasPrefix(p, prefix+"/")
}

func validHostPort(s string) bool {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		host, port = s, ""
	}
	if port != "" && strings.Trim(port, "0123456789") != "" {
		return false
	}
	_, ipErr := netip.ParseAddr(host)
	return ipErr == nil || isDNSName(strings.ToLower(host))
}

// headerName checks one header name of key k and returns it canonical.
func (t *table) headerName(k, name string) (string, bool) {
	c := textproto.CanonicalMIMEHeaderKey(name)
	switch {
	case !httpguts.ValidHeaderFieldName(name):
		t.errorf(k, "%s is not a header name", quote(name))
	case slices.Contains(managedHeaders, c):
		t.errorf(k, "%s is managed by sluice and cannot be changed by a route", quote(c))
	default:
		return c, true
	}
	return "", false
}

// headerValues reads an inline table of header names and values.
func (t *table) headerValues(k string) map[string]string {
	sub := t.table(k)
	if sub == nil {
		return nil
	}
	out := make(map[string]string, len(sub.keys))
	for _, name := range sortedKeys(sub.keys) {
		v, ok := sub.str(name)
		if !ok {
			continue
		}
		if !httpguts.ValidHeaderFieldValue(v) {
			t.errorf(k, "the value of %s has control characters", quote(name))
			continue
		}
		if c, ok := t.headerName(k, name); ok {
			out[c] = v
		}
	}
	return out
}

// headerNames reads an array of header names.
func (t *table) headerNames(k string) []string {
	var out []string
	for _, name := range t.stringList(k) {
		if c, ok := t.headerName(k, name); ok {
			out = append(out, c)
		}
	}
	return out
}
