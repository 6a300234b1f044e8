package cache

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// Query says which query parameters are part of a cache key.
type Query uint8

const (
	// QueryAll keys on the whole query as sent (the zero value): two
	// orders of the same parameters are two objects, as RFC 9111 section
	// 4.1 has it (the URI is the key).
	QueryAll Query = iota
	// QueryNone leaves the query out: /a?x=1 and /a are one object.
	QueryNone
	// QueryList keys on the parameters listed in Options.QueryParams
	// only, sorted, so tracking parameters do not split an object.
	QueryList
)

// primaryKey is an object's URI: scheme, host (lower case) and the target
// with the query trimmed as the options say. It is what purges match.
func (c *Cache) primaryKey(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return buildKey(scheme, r.Host, r.URL.EscapedPath(), r.URL.RawQuery, c.opt.Query, c.opt.QueryParams)
}

// buildKey joins a key's parts. Host names are case-insensitive (RFC 9110
// section 4.2.3); a default port is dropped, so example.com and
// example.com:80 share objects.
func buildKey(scheme, host, path, rawQuery string, q Query, params []string) string {
	host = strings.ToLower(host)
	if scheme == "http" {
		host = strings.TrimSuffix(host, ":80")
	} else {
		host = strings.TrimSuffix(host, ":443")
	}
	if path == "" {
		path = "/"
	}
	var b strings.Builder
	b.Grow(len(scheme) + 3 + len(host) + len(path) + 1 + len(rawQuery))
	b.WriteString(scheme)
	b.WriteString("://")
	b.WriteString(host)
	b.WriteString(path)
	switch q {
	case QueryAll:
		if rawQuery != "" {
			b.WriteByte('?')
			b.WriteString(rawQuery)
		}
	case QueryList:
		if kept := keptQuery(rawQuery, params); kept != "" {
			b.WriteByte('?')
			b.WriteString(kept)
		}
	}
	return b.String()
}

// keptQuery returns the parameters of rawQuery named in params, sorted by
// name and then value, re-encoded. A query that does not parse keeps the
// pairs that do.
func keptQuery(rawQuery string, params []string) string {
	if rawQuery == "" || len(params) == 0 {
		return ""
	}
	var kept []string
	for pair := range strings.SplitSeq(rawQuery, "&") {
		name, _, _ := strings.Cut(pair, "=")
		n, err := url.QueryUnescape(name)
		if err != nil {
			continue
		}
		if slices.Contains(params, n) {
			kept = append(kept, pair)
		}
	}
	slices.Sort(kept)
	return strings.Join(kept, "&")
}

// varyNames returns the field names a response's Vary lists, lower case,
// sorted and without repeats; star is true if it lists "*", which no
// request matches (RFC 9111 section 4.1).
func varyNames(h http.Header) (names []string, star bool) {
	for _, line := range h["Vary"] {
		for name := range strings.SplitSeq(line, ",") {
			name = strings.ToLower(trimOWS(name))
			switch {
			case name == "*":
				return nil, true
			case name != "" && !slices.Contains(names, name):
				names = append(names, name)
			}
		}
	}
	slices.Sort(names)
	return names, false
}

// secondaryKey is what the request's values of the Vary names are, each
// normalised (RFC 9111 section 4.1 allows it): field lines joined with
// commas, whitespace around the commas dropped. A field the request lacks
// differs from one it sends empty.
func secondaryKey(names []string, h http.Header) string {
	if len(names) == 0 {
		return ""
	}
	var b strings.Builder
	for _, name := range names {
		b.WriteString(name)
		vs, ok := h[http.CanonicalHeaderKey(name)]
		if !ok {
			b.WriteString("\x00")
			continue
		}
		b.WriteString(":")
		first := true
		for _, v := range vs {
			for part := range strings.SplitSeq(v, ",") {
				if !first {
					b.WriteByte(',')
				}
				first = false
				b.WriteString(trimOWS(part))
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}
