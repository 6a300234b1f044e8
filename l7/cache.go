package l7

import (
	"context"
	"io"
	"net/http"
	"time"

	"sluice/internal/pool"
)

// The HTTP cache of a route with Route.Cache sits in the reverse proxy's
// transport, between the proxy and the backends: it answers a
// revalidation's 304 itself, stores the backend's own response (before
// the route's response rewrites and compression, which apply to every
// answer, stored or not), and needs no handler of its own, so the rest of
// the request path (routing, policy, logging) is the same with or without
// a cache.

// useCache marks the request for the route's cache, if it has one that
// exists, and computes its key from the request as the client sent it.
func (s *Server) useCache(ex *exchange, name string, r *http.Request) {
	if name == "" {
		return
	}
	c := s.Caches[name]
	if c == nil {
		return // the configuration checks names; a Server built by hand
	}
	ex.cache, ex.cacheKey, ex.cached = c, c.Key(r), true
}

// cached hands req to the exchange's cache, with the proxy as its origin.
func (p *proxy) cached(ex *exchange, req *http.Request) (*http.Response, error) {
	c := ex.cache
	// The cache's origin is this same transport: with the cache cleared,
	// its RoundTrip goes to the backends.
	ex.cache = nil
	resp, outcome, err := c.RoundTrip(ex.cacheKey, req, origin{p})
	ex.outcome = outcome
	if ex.ttfb == 0 {
		ex.ttfb = time.Since(ex.start)
	}
	return resp, err
}

// origin is a proxy as a cache's origin.
type origin struct{ p *proxy }

func (o origin) RoundTrip(req *http.Request) (*http.Response, error) { return o.p.RoundTrip(req) }

// Background forwards a revalidation the cache makes after answering its
// client: the request has an exchange of its own (the client's is done),
// and the backend it got is released when the cache closes the body.
func (o origin) Background(req *http.Request) (*http.Response, error) {
	ex := &exchange{start: time.Now(), pool: o.p}
	req = req.WithContext(context.WithValue(req.Context(), exchangeKey{}, ex))
	resp, err := o.p.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &releaseBody{ReadCloser: resp.Body, b: ex.backend}
	return resp, nil
}

// releaseBody releases a backend once its response body is closed.
type releaseBody struct {
	io.ReadCloser
	b *pool.Backend
}

func (r *releaseBody) Close() error {
	err := r.ReadCloser.Close()
	if r.b != nil {
		r.b.Release()
		r.b = nil
	}
	return err
}
