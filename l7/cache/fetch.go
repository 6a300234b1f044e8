package cache

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"time"
)

// flight is a request fetching an object; concurrent misses for the same
// key wait for it instead of asking the backend too.
type flight struct{ done chan struct{} }

// join returns key's flight and whether the caller leads it (made it);
// the leader lands it once its response is stored or will not be.
func (c *Cache) join(key string) (*flight, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f := c.flights[key]; f != nil {
		return f, false
	}
	f := &flight{done: make(chan struct{})}
	c.flights[key] = f
	return f, true
}

// land ends a flight and wakes its waiters.
func (c *Cache) land(key string, f *flight) {
	c.mu.Lock()
	if c.flights[key] == f {
		delete(c.flights, key)
	}
	c.mu.Unlock()
	close(f.done)
}

// wait waits for f to land, at most the coalescing bound and never past
// the client leaving; it reports whether f landed.
func (c *Cache) wait(req *http.Request, f *flight) bool {
	d := c.opt.coalesceTimeout()
	if d <= 0 {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	c.stats.waiting.Add(1)
	defer c.stats.waiting.Add(-1)
	select {
	case <-f.done:
		return true
	case <-t.C:
	case <-req.Context().Done():
	}
	return false
}

// fetch forwards req, conditionally if stale has validators, and stores
// the response if it may; land is called once the outcome is stored or
// known not to be. fwd is the Cache-Status reason for forwarding.
func (c *Cache) fetch(key string, req *http.Request, reqCC control, stale *object, fwd string, origin Origin, land func()) (*http.Response, Outcome, error) {
	landed := false
	defer func() {
		if !landed {
			land()
		}
	}()
	out, conditional := req, false
	if stale != nil && (stale.etag != "" || stale.lastMod != "") {
		out, conditional = revalidation(req, req.Context(), stale), true
	}
	c.capability(out)
	sent := c.opt.now()
	resp, err := origin.RoundTrip(out)
	got := c.opt.now()
	if stale != nil && (err != nil || isServerError(resp.StatusCode)) && c.staleIfError(reqCC, stale, got) {
		if err == nil {
			resp.Body.Close()
		}
		c.stats.stale.Add(1)
		return c.respond(req, stale, got, "hit; ttl="+ttl(stale, got)+"; detail=stale-if-error"), Stale, nil
	}
	if err != nil {
		c.stats.misses.Add(1)
		return nil, Miss, err
	}
	if conditional && resp.StatusCode == http.StatusNotModified {
		resp.Body.Close()
		obj := c.update(stale, resp, sent, got)
		c.put(key, obj)
		c.stats.revalidated.Add(1)
		return c.respond(req, obj, got, "fwd=stale; fwd-status=304; ttl="+ttl(obj, got)), Revalidated, nil
	}
	c.stats.misses.Add(1)
	status := "fwd=" + fwd
	if resp.StatusCode != http.StatusOK {
		status += "; fwd-status=" + strconv.Itoa(resp.StatusCode)
	}
	landed = c.keep(key, req, reqCC, resp, status, sent, got, land)
	return resp, Miss, nil
}

// keep stores resp as it streams to the client, if it may be stored, and
// adds the Cache-Status entry status to it. It reports whether it took
// land over: called once the body is stored or given up.
func (c *Cache) keep(key string, req *http.Request, reqCC control, resp *http.Response, status string, sent, got time.Time, land func()) bool {
	cc := responseControl(resp.Header, c.opt.name())
	if !c.storable(req, reqCC, resp, cc) {
		delete(resp.Header, "Surrogate-Control")
		c.status(resp.Header, status)
		return false
	}
	obj := c.newObject(resp, cc, sent, got)
	obj.secondary = secondaryKey(obj.varyNames, req.Header)
	delete(resp.Header, "Surrogate-Control") // stored, not sent on
	if !obj.worthStoring() {
		c.status(resp.Header, status)
		return false
	}
	c.status(resp.Header, status+"; stored")
	resp.Body = c.newTee(resp, func(body []byte, ok bool) {
		if ok {
			obj.body = body
			obj.size = int64(len(body)) + headerSize(obj.header) + entryOverhead
			c.put(key, obj)
		}
		land()
	})
	return true
}

func isServerError(status int) bool { return status >= 500 && status <= 599 }

// revalidation turns req into a conditional request for stale, with the
// stored validators in place of the client's own conditions and range
// (RFC 9111 section 4.3.1): the answer updates the whole stored response,
// and the client's conditions are evaluated against it afterwards.
func revalidation(req *http.Request, ctx context.Context, stale *object) *http.Request {
	out := req.Clone(ctx)
	for _, f := range []string{"If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "If-Range", "Range"} {
		delete(out.Header, f)
	}
	if stale.etag != "" {
		out.Header.Set("If-None-Match", stale.etag)
	}
	if stale.lastMod != "" {
		out.Header.Set("If-Modified-Since", stale.lastMod)
	}
	return out
}

// notUpdated are the fields a 304 does not change in a stored response:
// they describe its content, which the 304 did not send (RFC 9111 section
// 3.2 names Content-Length; the caching test suite holds the rest to it
// too, and the ETag is the one the stored response was validated by).
var notUpdated = map[string]bool{"Content-Length": true, "Content-Encoding": true, "Content-Md5": true,
	"Content-Range": true, "Etag": true}

// update applies a 304 to a stored response (RFC 9111 section 3.2): its
// fields replace the stored ones, except Content-Length (which describes
// the 304), and the freshness starts over.
func (c *Cache) update(old *object, resp *http.Response, sent, got time.Time) *object {
	h := old.header.Clone()
	fresh := storedHeader(resp.Header)
	for k, vs := range fresh {
		if !notUpdated[k] {
			h[k] = vs
		}
	}
	if age, ok := resp.Header["Age"]; ok {
		h["Age"] = age
	}
	merged := &http.Response{StatusCode: old.status, Header: h}
	obj := c.newObject(merged, responseControl(h, c.opt.name()), sent, got)
	obj.body, obj.size = old.body, int64(len(old.body))+headerSize(obj.header)+entryOverhead
	obj.varyNames, obj.varyStar, obj.secondary = old.varyNames, old.varyStar, old.secondary
	return obj
}

// background revalidates obj after it was served stale, unless a request
// for the key is under way. The goroutine is the cache's: Close cancels
// and waits for it.
func (c *Cache) background(key string, req *http.Request, obj *object, origin Origin) {
	f, lead := c.join(key)
	if !lead {
		return
	}
	c.mu.Lock()
	if c.ctx.Err() != nil {
		c.mu.Unlock()
		c.land(key, f)
		return
	}
	c.wg.Add(1) // under mu, so it cannot race Close's Wait
	c.mu.Unlock()
	out := revalidation(req, c.ctx, obj)
	if out.Method == http.MethodHead {
		out.Method = http.MethodGet // to have a body to store
	}
	out.Body, out.ContentLength = http.NoBody, 0
	go func() {
		defer c.wg.Done()
		defer c.land(key, f)
		c.refresh(key, out, obj, origin)
	}()
}

// refresh is a background revalidation's work.
func (c *Cache) refresh(key string, out *http.Request, obj *object, origin Origin) {
	c.capability(out)
	sent := c.opt.now()
	resp, err := origin.Background(out)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	got := c.opt.now()
	if resp.StatusCode == http.StatusNotModified {
		c.put(key, c.update(obj, resp, sent, got))
		return
	}
	cc := responseControl(resp.Header, c.opt.name())
	if !c.storable(out, control{maxAge: absent, sMaxAge: absent, minFresh: absent, maxStale: absent}, resp, cc) {
		return
	}
	limit := c.opt.maxObject()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil || int64(len(body)) > limit || resp.ContentLength >= 0 && int64(len(body)) != resp.ContentLength {
		return
	}
	n := c.newObject(resp, cc, sent, got)
	n.body, n.size = body, int64(len(body))+headerSize(n.header)+entryOverhead
	n.secondary = secondaryKey(n.varyNames, out.Header)
	c.put(key, n)
}

// gatewayTimeout is the answer to only-if-cached with nothing stored.
func (c *Cache) gatewayTimeout(req *http.Request) *http.Response {
	h := http.Header{"Content-Length": {"0"}}
	c.status(h, "fwd=miss; detail=only-if-cached")
	return &http.Response{StatusCode: http.StatusGatewayTimeout, Status: "504 Gateway Timeout",
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: h, Body: http.NoBody, Request: req}
}

// capability says to the backend that we are a surrogate (Edge
// Architecture 1.0), under the cache's name, which Surrogate-Control
// directives may then target. Earlier surrogates' entries are kept.
func (c *Cache) capability(out *http.Request) {
	out.Header.Add("Surrogate-Capability", c.opt.name()+`="Surrogate/1.0"`)
}
