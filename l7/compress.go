package l7

import (
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
)

// Compression on a route with Compress set: a response is gzipped on its
// way to the client when all of these hold, as nginx's gzip module decides:
// the client accepts gzip; the backend did not encode the body already;
// the status has a body that is the whole resource (200, not 206 or 304);
// the type is text-like; and the body is at least compressMinBytes long or
// of unknown length (streamed).
const compressMinBytes = 1024

// gzipLevel trades ratio for CPU: level 5 of klauspost's gzip is about as
// fast as the standard library's level 1 at a better ratio.
const gzipLevel = 5

var gzipWriters = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(nil, gzipLevel)
	return w
}}

// shouldCompress decides for a response to req (see above).
func shouldCompress(req *http.Request, resp *http.Response) bool {
	if resp.StatusCode != http.StatusOK || req.Method == http.MethodHead {
		return false
	}
	h := resp.Header
	if h.Get("Content-Encoding") != "" || h.Get("Content-Range") != "" ||
		strings.Contains(h.Get("Cache-Control"), "no-transform") { // RFC 9111 section 5.2.2.6
		return false
	}
	if resp.ContentLength >= 0 && resp.ContentLength < compressMinBytes {
		return false
	}
	return compressible(h.Get("Content-Type")) && acceptsGzip(req.Header)
}

// compressible reports whether a media type is text that gzip shrinks;
// images, video, archives and fonts are compressed already.
func compressible(contentType string) bool {
	t, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	switch {
	case strings.HasPrefix(t, "text/"), strings.HasSuffix(t, "+json"), strings.HasSuffix(t, "+xml"):
		return true
	}
	switch t {
	case "application/json", "application/javascript", "application/xml", "application/wasm",
		"image/svg+xml", "application/x-ndjson", "application/graphql-response+json":
		return true
	}
	return false
}

// acceptsGzip reports whether Accept-Encoding lists gzip (or *) with a
// non-zero weight (RFC 9110 section 12.5.3).
func acceptsGzip(h http.Header) bool {
	for _, v := range h.Values("Accept-Encoding") {
		for part := range strings.SplitSeq(v, ",") {
			name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			name = strings.TrimSpace(name)
			if !strings.EqualFold(name, "gzip") && name != "*" {
				continue
			}
			q, ok := strings.CutPrefix(strings.ReplaceAll(params, " ", ""), "q=")
			if !ok {
				return true
			}
			if w, err := strconv.ParseFloat(q, 64); err == nil && w > 0 {
				return true
			}
		}
	}
	return false
}

// startGzip turns resp into a gzip-encoded one: the body's length changes,
// so Content-Length goes, and caches learn that the encoding depends on
// Accept-Encoding. The recorder then compresses what it writes.
func startGzip(rec *recorder, resp *http.Response) {
	h := resp.Header
	h.Del("Content-Length")
	// Byte ranges of the identity body do not address the gzipped one
	// (nginx's gzip module drops the header too).
	h.Del("Accept-Ranges")
	resp.ContentLength = -1
	h.Set("Content-Encoding", "gzip")
	h.Add("Vary", "Accept-Encoding")
	if etag := h.Get("ETag"); etag != "" && !strings.HasPrefix(etag, "W/") {
		// A strong ETag names these exact bytes; the gzipped ones
		// differ (RFC 9110 section 8.8.3).
		h.Set("ETag", "W/"+etag)
	}
	gz := gzipWriters.Get().(*gzip.Writer)
	gz.Reset(rawWriter{rec})
	rec.gz = gz
}

// rawWriter writes past the recorder's compression, counting the bytes
// sent to the client.
type rawWriter struct{ r *recorder }

func (w rawWriter) Write(b []byte) (int, error) {
	n, err := w.r.w.Write(b)
	w.r.bytes += int64(n)
	return n, err
}

// endGzip writes the gzip trailer and returns the writer to its pool. A
// response cut off (the handler panicked) gets no trailer: the client
// sees a truncated stream, not a complete one.
func endGzip(rec *recorder, complete bool) {
	if rec.gz == nil {
		return
	}
	if complete {
		rec.gz.Close()
	}
	rec.gz.Reset(nil)
	gzipWriters.Put(rec.gz)
	rec.gz = nil
}
