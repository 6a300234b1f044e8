package cache

import (
	"io"
	"net/http"
	"slices"
)

// storable says whether a response to req may be stored (RFC 9111 section
// 3), given both Cache-Control fields. Only GET responses are stored; HEAD
// is answered from them.
func (c *Cache) storable(req *http.Request, reqCC control, resp *http.Response, cc control) bool {
	if req.Method != http.MethodGet || req.Header.Get("Range") != "" {
		return false
	}
	status := resp.StatusCode
	if status < 200 || status == http.StatusPartialContent || status == http.StatusNotModified {
		return false
	}
	if cc.mustUnderstand {
		// Section 5.2.2.3: store only statuses we understand, and then
		// no-store does not apply.
		if !slices.Contains(understood, status) {
			return false
		}
	} else if cc.noStore {
		return false
	}
	if reqCC.noStore || cc.private {
		// A shared cache stores nothing private; qualified private
		// would let it store the rest, which it need not.
		return false
	}
	if _, ok := req.Header["Authorization"]; ok &&
		!(c.opt.CacheAuthorized && (cc.public || cc.sMaxAge != absent || cc.mustRevalidate)) {
		return false
	}
	if _, star := varyNames(resp.Header); star {
		return false
	}
	if resp.ContentLength > c.opt.maxObject() {
		return false
	}
	_, hasExpires := resp.Header["Expires"]
	return cc.public || cc.maxAge != absent || cc.sMaxAge != absent || hasExpires ||
		slices.Contains(heuristicStatuses, status) || c.opt.DefaultTTL > 0 && slices.Contains(understood, status)
}

// worthStoring says whether an object could ever be served: it is fresh
// for a while, can be revalidated, or may be served stale on errors.
func (o *object) worthStoring() bool {
	return o.lifetime > o.initialAge || o.etag != "" || o.lastMod != "" || o.sie > 0
}

// teeBody passes a response body through to the client, keeping a copy
// up to the largest object, and stores the object once the body has been
// read to its end. A body cut short (the backend failed, the client left)
// or too large stores nothing, and says so at once, so that requests
// waiting for it go on without it.
type teeBody struct {
	rc       io.ReadCloser
	c        *Cache
	buf      []byte
	limit    int64
	want     int64 // Content-Length, or -1
	read     int64
	reserved int64 // of c.filling, given back at the end
	over     bool  // not storing: passing through only
	done     bool
	store    func(body []byte, ok bool) // called once
}

func (t *teeBody) Read(p []byte) (int, error) {
	n, err := t.rc.Read(p)
	t.read += int64(n)
	if !t.over && n > 0 {
		if int64(len(t.buf)+n) > t.limit || !t.reserve(int64(len(t.buf)+n)) {
			// Too large after all (the length was not known), or too
			// much is being buffered at once: stream the rest.
			t.over = true
			t.finish(false)
		} else {
			t.buf = append(t.buf, p[:n]...)
		}
	}
	switch {
	case err == io.EOF:
		t.finish(!t.over && (t.want < 0 || t.read == t.want))
	case err != nil:
		t.finish(false)
	}
	return n, err
}

// reserve makes sure n bytes of this body count against the budget of
// bodies being buffered, and reports whether they fit.
func (t *teeBody) reserve(n int64) bool {
	if n <= t.reserved {
		return true
	}
	more := n - t.reserved
	if t.c.filling.Add(more) > t.c.opt.fillBudget() {
		t.c.filling.Add(-more)
		return false
	}
	t.reserved = n
	return true
}

// Close ends the body; one not read to its end is not stored, unless all
// its announced bytes were read (a reader may stop right before EOF).
func (t *teeBody) Close() error {
	t.finish(!t.over && t.want >= 0 && t.read == t.want)
	return t.rc.Close()
}

func (t *teeBody) finish(ok bool) {
	if t.done {
		return
	}
	t.done = true
	t.c.filling.Add(-t.reserved)
	t.reserved = 0
	t.store(t.buf, ok)
	t.buf = nil
}

// newTee wraps resp's body to store it through store.
func (c *Cache) newTee(resp *http.Response, store func([]byte, bool)) *teeBody {
	t := &teeBody{rc: resp.Body, c: c, limit: c.opt.maxObject(), want: resp.ContentLength, store: store}
	if resp.ContentLength > 0 {
		if !t.reserve(resp.ContentLength) {
			t.over = true
			t.finish(false)
			return t
		}
		t.buf = make([]byte, 0, resp.ContentLength)
	}
	return t
}
