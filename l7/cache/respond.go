package cache

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// respond builds the response to req from obj at now: the stored one,
// with Age and Cache-Status, or a 304 if the client's conditions hold
// (RFC 9111 section 4.3.2), or the range asked for (RFC 9110 section 14),
// or no body for HEAD.
func (c *Cache) respond(req *http.Request, obj *object, now time.Time, status string) *http.Response {
	h := obj.header.Clone()
	delete(h, "Surrogate-Control")
	h["Age"] = []string{seconds(obj.age(now))}
	c.status(h, status)
	resp := &http.Response{StatusCode: obj.status, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Request: req, ContentLength: int64(len(obj.body))}
	if notModified(req.Header, obj) {
		for _, f := range []string{"Content-Length", "Content-Type", "Content-Encoding", "Content-Range"} {
			delete(h, f)
		}
		resp.StatusCode, resp.ContentLength, resp.Body = http.StatusNotModified, 0, http.NoBody
		return resp
	}
	body := obj.body
	if obj.status == http.StatusOK {
		if r := req.Header.Get("Range"); r != "" && ifRange(req.Header, obj) {
			if lo, hi, ok := singleRange(r, int64(len(body))); ok {
				resp.StatusCode = http.StatusPartialContent
				h.Set("Content-Range", "bytes "+strconv.FormatInt(lo, 10)+"-"+strconv.FormatInt(hi-1, 10)+"/"+strconv.Itoa(len(body)))
				body = body[lo:hi]
			} else if lo < 0 {
				resp.StatusCode = http.StatusRequestedRangeNotSatisfiable
				h.Set("Content-Range", "bytes */"+strconv.Itoa(len(body)))
				body = nil
			}
		}
	}
	resp.ContentLength = int64(len(body))
	if resp.StatusCode == http.StatusNoContent {
		// RFC 9110 section 8.6: no Content-Length on a 204.
		delete(h, "Content-Length")
	} else {
		h.Set("Content-Length", strconv.Itoa(len(body)))
	}
	if req.Method == http.MethodHead || len(body) == 0 {
		resp.Body = http.NoBody
	} else {
		resp.Body = io.NopCloser(bytes.NewReader(body))
	}
	return resp
}

// notModified evaluates a GET or HEAD's If-None-Match, or without one its
// If-Modified-Since, against obj (RFC 9110 section 13.2.2).
func notModified(h http.Header, obj *object) bool {
	if obj.status != http.StatusOK {
		return false
	}
	if inm, ok := h["If-None-Match"]; ok {
		if obj.etag == "" {
			return false
		}
		for _, line := range inm {
			for _, tag := range splitList(line) {
				if tag == "*" || weakMatch(tag, obj.etag) {
					return true
				}
			}
		}
		return false
	}
	ims, err := http.ParseTime(h.Get("If-Modified-Since"))
	if err != nil {
		return false
	}
	lm, err := http.ParseTime(obj.lastMod)
	if err != nil {
		return false
	}
	return !lm.After(ims)
}

// weakMatch compares entity tags weakly (RFC 9110 section 8.8.3.2).
func weakMatch(a, b string) bool {
	return strings.TrimPrefix(a, "W/") == strings.TrimPrefix(b, "W/")
}

// ifRange reports whether a Range may be honoured: there is no If-Range,
// or it names the stored response by a strong ETag or its exact
// Last-Modified (RFC 9110 section 13.1.5).
func ifRange(h http.Header, obj *object) bool {
	v := h.Get("If-Range")
	switch {
	case v == "":
		return true
	case strings.HasPrefix(v, `"`):
		return obj.etag == v
	}
	return obj.lastMod != "" && v == obj.lastMod
}

// singleRange parses one byte range of a resource of n bytes into lo..hi
// (exclusive). ok false with lo < 0 means unsatisfiable (416); ok false
// with lo 0 means the header is not one range we serve, and the whole
// response is sent instead, which RFC 9110 section 14.2 allows.
func singleRange(v string, n int64) (lo, hi int64, ok bool) {
	spec, found := strings.CutPrefix(strings.TrimSpace(v), "bytes=")
	if !found || strings.Contains(spec, ",") {
		return 0, 0, false
	}
	first, last, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return 0, 0, false
	}
	if first == "" { // suffix: the last N bytes
		k, err := strconv.ParseInt(last, 10, 64)
		if err != nil || k < 0 {
			return 0, 0, false
		}
		if k == 0 || n == 0 {
			return -1, 0, false
		}
		return max(n-k, 0), n, true
	}
	a, err := strconv.ParseInt(first, 10, 64)
	if err != nil || a < 0 {
		return 0, 0, false
	}
	b := n - 1
	if last != "" {
		if b, err = strconv.ParseInt(last, 10, 64); err != nil || b < a {
			return 0, 0, false
		}
	}
	if a >= n {
		return -1, 0, false
	}
	return a, min(b, n-1) + 1, true
}
