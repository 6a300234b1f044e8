package cache

import (
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Origin is where the cache forwards what it cannot answer.
type Origin interface {
	// RoundTrip forwards a client's request, in the client's context.
	RoundTrip(*http.Request) (*http.Response, error)
	// Background forwards a revalidation the cache makes on its own,
	// after serving a stale object (stale-while-revalidate); the
	// request's context is the cache's, cancelled by Close.
	Background(*http.Request) (*http.Response, error)
}

// Outcome says how the cache answered a request, for logs and metrics.
type Outcome uint8

const (
	// Bypass: the request was not for the cache (a method other than
	// GET or HEAD); unsafe methods invalidate what they change.
	Bypass Outcome = iota
	// Hit: served from the cache.
	Hit
	// Miss: forwarded, for want of a usable stored response.
	Miss
	// Stale: served stale while revalidating in the background, or
	// because the backend failed.
	Stale
	// Revalidated: a stored response was confirmed by the backend (304)
	// and served.
	Revalidated
)

var outcomeNames = [...]string{Bypass: "bypass", Hit: "hit", Miss: "miss", Stale: "stale", Revalidated: "revalidated"}

// String returns the outcome's name, as logged.
func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "unknown"
}

// Key returns the cache key of a request as a client sent it (before any
// route rewrites): its URI, with the query trimmed as the options say.
// Purge matches these.
func (c *Cache) Key(r *http.Request) string { return c.primaryKey(r) }

// RoundTrip answers req, the request as it goes to the backend, whose key
// is key (from Key on the client's request): from the store when it may,
// else through origin, storing what the backend sends when it may. The
// response carries a Cache-Status field.
func (c *Cache) RoundTrip(key string, req *http.Request, origin Origin) (*http.Response, Outcome, error) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		return c.bypass(key, req, origin)
	}
	reqCC := requestControl(req.Header)
	now := c.opt.now()
	obj, fwd := c.lookup(key, req)
	if obj != nil {
		switch c.decide(reqCC, obj, now) {
		case serve:
			c.stats.hits.Add(1)
			return c.respond(req, obj, now, "hit; ttl="+ttl(obj, now)), Hit, nil
		case serveStale:
			c.stats.stale.Add(1)
			c.background(key, req, obj, origin)
			return c.respond(req, obj, now, "hit; ttl="+ttl(obj, now)+"; detail=stale-while-revalidate"), Stale, nil
		}
		fwd = "stale"
		if reqCC.noCache {
			fwd = "request"
		}
	}
	if reqCC.onlyIfCached {
		// Section 5.2.1.7: nothing usable is stored, and we may not ask.
		c.stats.misses.Add(1)
		return c.gatewayTimeout(req), Miss, nil
	}
	if req.Method != http.MethodGet || req.Header.Get("Range") != "" {
		// Nothing to coalesce: HEAD and range misses are not stored.
		return c.fetch(key, req, reqCC, obj, fwd, origin, func() {})
	}
	f, lead := c.join(key)
	if lead {
		return c.fetch(key, req, reqCC, obj, fwd, origin, func() { c.land(key, f) })
	}
	if c.wait(req, f) {
		if o, _ := c.lookup(key, req); o != nil && c.decide(reqCC, o, c.opt.now()) == serve {
			c.stats.hits.Add(1)
			now := c.opt.now()
			return c.respond(req, o, now, "hit; ttl="+ttl(o, now)+"; detail=collapsed"), Hit, nil
		}
	}
	return c.fetch(key, req, reqCC, obj, fwd, origin, func() {})
}

// requestControl is a request's Cache-Control, with Pragma: no-cache
// read as no-cache when there is no Cache-Control (RFC 9111 section 5.4).
func requestControl(h http.Header) control {
	cc := parseControl(h)
	if _, ok := h["Cache-Control"]; !ok {
		for _, v := range h["Pragma"] {
			for _, p := range splitList(v) {
				if strings.EqualFold(p, "no-cache") {
					cc.noCache = true
				}
			}
		}
	}
	return cc
}

// lookup finds the stored response for req; fwd says why there is none
// (RFC 9211: uri-miss or vary-miss).
func (c *Cache) lookup(key string, req *http.Request) (*object, string) {
	e, ok := c.store.GetIfPresent(key)
	if !ok {
		return nil, "uri-miss"
	}
	if o := e.match(req.Header); o != nil {
		return o, ""
	}
	return nil, "vary-miss"
}

type decision uint8

const (
	revalidate decision = iota
	serve
	serveStale // and revalidate in the background
)

// decide says whether obj may answer a request with Cache-Control reqCC
// at now (RFC 9111 section 4.2, 5.2.1; RFC 5861 section 3).
func (c *Cache) decide(reqCC control, obj *object, now time.Time) decision {
	age := obj.age(now)
	left := obj.lifetime - age
	switch {
	case reqCC.noCache, obj.cc.noCache:
		return revalidate
	case reqCC.maxAge != absent && age > time.Duration(reqCC.maxAge)*time.Second:
		return revalidate
	case reqCC.minFresh != absent && left < time.Duration(reqCC.minFresh)*time.Second:
		return revalidate
	case left > 0:
		return serve
	case obj.mustRevalidate():
		return revalidate
	case reqCC.maxStaleAny, reqCC.maxStale != absent && -left <= time.Duration(reqCC.maxStale)*time.Second:
		return serve
	case -left <= obj.swr && reqCC.maxAge == absent && reqCC.minFresh == absent:
		return serveStale
	}
	return revalidate
}

// staleIfError says whether obj may be served after the backend failed
// (RFC 5861 section 4; never past must-revalidate).
func (c *Cache) staleIfError(reqCC control, obj *object, now time.Time) bool {
	if obj.mustRevalidate() {
		return false
	}
	stale := obj.age(now) - obj.lifetime
	sie := obj.sie
	if reqCC.staleIfError != absent {
		sie = time.Duration(reqCC.staleIfError) * time.Second
	}
	return stale <= sie
}

// ttl is an object's freshness left, for Cache-Status.
func ttl(o *object, now time.Time) string { return seconds(o.lifetime - o.age(now)) }

// bypass forwards a request of another method. A successful unsafe one
// invalidates its URI and those its Location and Content-Location name on
// the same host (RFC 9111 section 4.4).
func (c *Cache) bypass(key string, req *http.Request, origin Origin) (*http.Response, Outcome, error) {
	c.stats.bypass.Add(1)
	resp, err := origin.RoundTrip(req)
	if err != nil {
		return nil, Bypass, err
	}
	if !safe(req.Method) && resp.StatusCode >= 200 && resp.StatusCode < 400 {
		c.invalidate(key)
		for _, f := range []string{"Location", "Content-Location"} {
			if k, ok := sameOrigin(key, resp.Header.Get(f), c.opt.Query, c.opt.QueryParams); ok {
				c.invalidate(k)
			}
		}
	}
	c.status(resp.Header, "fwd=bypass")
	return resp, Bypass, nil
}

// safe reports whether m is a safe method (RFC 9110 section 9.2.1).
func safe(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// sameOrigin resolves ref against key's URI and returns its key if it is
// on the same scheme and host.
func sameOrigin(key, ref string, q Query, params []string) (string, bool) {
	if ref == "" {
		return "", false
	}
	base, err := url.Parse(key)
	if err != nil {
		return "", false
	}
	u, err := base.Parse(ref)
	if err != nil || u.Scheme != base.Scheme || !strings.EqualFold(u.Host, base.Host) {
		return "", false
	}
	return buildKey(u.Scheme, u.Host, u.EscapedPath(), u.RawQuery, q, params), true
}

// status adds the cache's entry to a response's Cache-Status (RFC 9211).
func (c *Cache) status(h http.Header, params string) {
	h.Add("Cache-Status", c.opt.name()+"; "+params)
}
