package route

import (
	"net/netip"
	"slices"
	"strings"

	"sluice/internal/access"
)

// Kind is what a route ends in.
type Kind uint8

const (
	// Forward proxies the request to a backend of Route.Pool.
	Forward Kind = iota
	// Redirect answers with a redirect to Route.Location.
	Redirect
	// Respond answers with Route's fixed Status, Body and ContentType.
	Respond
)

// Route is one route: conditions, a policy, and an end.
type Route struct {
	// Name names the route in logs.
	Name string
	Match
	// AllowMethods, if not empty, are the only methods let through; any
	// other is answered 405 with an Allow header.
	AllowMethods []string
	// Allow, if not empty, are the only client ranges let through; Deny
	// ranges are refused even inside Allow. Both answer 403.
	Allow, Deny []netip.Prefix
	// RequestRate caps each client's requests on this route (policy: 429
	// with Retry-After beyond), on top of any cap of the listener's;
	// RequestBurst is how many a client may make at once, zero meaning
	// RequestRate.N. The zero Rate means no cap.
	RequestRate  access.Rate
	RequestBurst int

	// Kind says which of the fields below apply.
	Kind Kind
	// Pool (Forward) names the pool requests go to.
	Pool string
	// Rewrite (Forward) changes the request on its way to the backend and
	// the response on its way back.
	Rewrite Rewrite
	// HashHeader and HashCookie (Forward, at most one set) name a header
	// or cookie whose value a Maglev pool hashes instead of the client's
	// address: session affinity without state. A request without it is
	// hashed on its client address.
	HashHeader, HashCookie string
	// Compress (Forward) gzips text responses the backend did not
	// compress, for clients that accept gzip.
	Compress bool
	// Cache (Forward), if not empty, names the HTTP cache that answers
	// the route's GET and HEAD requests when it can (package l7/cache).
	Cache string
	// Location (Redirect) is the target URL; empty with HTTPS set means
	// the request's own host and URI over https.
	Location string
	// HTTPS (Redirect) upgrades the request's URL to https.
	HTTPS bool
	// Status is the redirect's code (Redirect) or the response's status
	// (Respond).
	Status int
	// Body and ContentType (Respond) are the fixed response's.
	Body, ContentType string
}

// Verdict is what a route's policy says about a request.
type Verdict uint8

const (
	// Pass lets the request through.
	Pass Verdict = iota
	// DenyClient refuses the client's address (403).
	DenyClient
	// DenyMethod refuses the method (405).
	DenyMethod
)

// Check applies r's policy to a request that matched it.
func (r *Route) Check(req *Request) Verdict {
	if len(r.Allow) > 0 && !inPrefixes(r.Allow, req.Client) {
		return DenyClient
	}
	if len(r.Deny) > 0 && inPrefixes(r.Deny, req.Client) {
		return DenyClient
	}
	if len(r.AllowMethods) > 0 && !slices.Contains(r.AllowMethods, req.Method) {
		return DenyMethod
	}
	return Pass
}

// RedirectTo returns where a Redirect route sends a request for host (as
// sent, port included) and requestURI (path and query as sent).
func (r *Route) RedirectTo(host, requestURI string) string {
	if r.Location != "" {
		return r.Location
	}
	// An https upgrade keeps the name but not the port: a port set for
	// plain HTTP is not the HTTPS one.
	h := host
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.Contains(h[i:], "]") {
		h = h[:i]
	}
	return "https://" + h + requestURI
}

// Table is a listener's routes in order: the first that matches wins.
type Table struct {
	routes []Route
}

// NewTable returns a table of routes, checked in order.
func NewTable(routes []Route) *Table {
	return &Table{routes: slices.Clone(routes)}
}

// Len returns how many routes t has.
func (t *Table) Len() int { return len(t.routes) }

// At returns route i, the same pointer Find returns for it.
func (t *Table) At(i int) *Route { return &t.routes[i] }

// Find returns the first route req matches, or nil.
func (t *Table) Find(req *Request) *Route {
	for i := range t.routes {
		if t.routes[i].Matches(req) {
			return &t.routes[i]
		}
	}
	return nil
}

// Covers reports whether every request that matches o also matches m: a
// route with o's conditions placed after one with m's could never be
// reached. It is exact for the conditions Match has, never claiming
// coverage that does not hold.
func (m *Match) Covers(o *Match) bool {
	return hostCovers(m.Host, o.Host) && m.pathCovers(o) && subset(o.Methods, m.Methods) &&
		m.headerCovers(o) && prefixesCover(m.Clients, o.Clients)
}

func hostCovers(m, o string) bool {
	switch {
	case m == "":
		return true
	case o == "":
		return false
	case !strings.HasPrefix(m, "*"):
		return m == o
	}
	// m is "*.s": o, exact or a wildcard, must lie below s.
	return hostMatches(m, strings.TrimPrefix(o, "*"))
}

func (m *Match) pathCovers(o *Match) bool {
	switch {
	case m.Path == "", m.Path == "/" && !m.PathExact:
		// Every request path starts with "/" (see Request.Path).
		return true
	case o.Path == "":
		return false
	case m.PathExact:
		return o.PathExact && o.Path == m.Path
	}
	// Every path o matches starts with o.Path on a segment boundary, so
	// if m's prefix takes o.Path it takes them all.
	return prefixMatches(m.Path, o.Path)
}

// subset reports whether the methods o matches are among m's (empty is
// every method).
func subset(o, m []string) bool {
	if len(m) == 0 {
		return true
	}
	if len(o) == 0 {
		return false
	}
	for _, x := range o {
		if !slices.Contains(m, x) {
			return false
		}
	}
	return true
}

func (m *Match) headerCovers(o *Match) bool {
	switch {
	case m.Header == "":
		return true
	case o.Header != m.Header:
		return false
	}
	return m.HeaderValue == "" || m.HeaderValue == o.HeaderValue
}

func prefixesCover(m, o []netip.Prefix) bool {
	if len(m) == 0 {
		return true
	}
	if len(o) == 0 {
		return false
	}
	for _, q := range o {
		if !slices.ContainsFunc(m, func(p netip.Prefix) bool {
			return p.Addr().Is4() == q.Addr().Is4() && p.Bits() <= q.Bits() && p.Contains(q.Addr())
		}) {
			return false
		}
	}
	return true
}
