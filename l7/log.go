package l7

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/klauspost/compress/gzip"

	"sluice/internal/pool"
	"sluice/l7/cache"
	"sluice/l7/route"
)

// End says how a request ended, in the spirit of HAProxy's termination
// states; it is logged as end= with every request.
type End uint8

const (
	// EndOK: the backend's response was passed on in full.
	EndOK End = iota
	// EndClientAborted: the client went away before the response was
	// complete; the backend request was cancelled.
	EndClientAborted
	// EndConnectFailed: no backend accepted a connection (502).
	EndConnectFailed
	// EndBackendReset: the backend failed or reset the connection (502,
	// or the response was cut off).
	EndBackendReset
	// EndBackendTimeout: the backend's response head did not come in time
	// (504).
	EndBackendTimeout
	// EndNoBackend: the pool had no backend up (503).
	EndNoBackend
	// EndNotFound: no route matched and there is no default pool (404).
	EndNotFound
	// EndDenied: the route's allow/deny ranges refused the client (403).
	EndDenied
	// EndMethodNotAllowed: the route does not allow the method (405).
	EndMethodNotAllowed
	// EndBodyTooLarge: the request body was over the limit (413).
	EndBodyTooLarge
	// EndRedirect: a redirect route answered.
	EndRedirect
	// EndResponded: a fixed-response route answered.
	EndResponded
	// EndBadRequest: the request could not be forwarded as sent (400).
	EndBadRequest
	// EndURITooLong: the request target was over the limit (414).
	EndURITooLong
	// EndMisdirected: the connection's certificate does not cover the
	// request's host (421).
	EndMisdirected
	// EndRateLimited: the client was over its request rate (429).
	EndRateLimited
)

var endNames = [...]string{
	EndOK:               "ok",
	EndClientAborted:    "client_aborted",
	EndConnectFailed:    "connect_failed",
	EndBackendReset:     "backend_reset",
	EndBackendTimeout:   "backend_timeout",
	EndNoBackend:        "no_backend",
	EndNotFound:         "not_found",
	EndDenied:           "denied",
	EndMethodNotAllowed: "method_not_allowed",
	EndBodyTooLarge:     "body_too_large",
	EndRedirect:         "redirect",
	EndResponded:        "responded",
	EndBadRequest:       "bad_request",
	EndURITooLong:       "uri_too_long",
	EndMisdirected:      "misdirected",
	EndRateLimited:      "rate_limited",
}

// String returns the name logged for e.
func (e End) String() string {
	if int(e) < len(endNames) {
		return endNames[e]
	}
	return "unknown"
}

// exchange is one request's record, filled in as it goes and logged at
// the end. The reverse proxy's hooks find it in the request's context.
type exchange struct {
	start    time.Time
	peer     netip.AddrPort // the connection's other end
	client   netip.AddrPort // the client, after trusted proxies
	key      netip.AddrPort // what the backend is picked by (see pickKey)
	body     *onceBody      // the request body as forwarded, if it has one
	rewrite  *route.Rewrite // the route's changes; nil for the default pool
	id       string
	route    string
	pool     *proxy
	backend  *pool.Backend // acquired; released when the request ends
	retries  int
	ttfb     time.Duration // until the backend's response head
	end      End
	err      error
	upgraded bool          // the backend switched protocols (101)
	compress bool          // the route gzips responses (see shouldCompress)
	cache    *cache.Cache  // the route's cache, until the transport hands the request to it
	cacheKey string        // the request's key in cache
	cached   bool          // the request went through a cache: outcome is logged
	outcome  cache.Outcome // how the cache answered
	rec      *recorder
}

// bytesIn returns the request body bytes forwarded to the backend.
func (ex *exchange) bytesIn() int64 {
	if ex.body == nil {
		return 0
	}
	return ex.body.n.Load()
}

type exchangeKey struct{}

// withExchange makes r's exchange reachable from the reverse proxy's hooks
// and transport through r's context: on HTTP/1.x in the connection's
// state, on HTTP/2 (streams of a connection run at once) in a context of
// the request's own.
func withExchange(r *http.Request, ex *exchange) *http.Request {
	if cs, ok := r.Context().Value(exchangeKey{}).(*connState); ok && r.ProtoMajor == 1 {
		cs.ex = ex
		return r
	}
	return r.WithContext(context.WithValue(r.Context(), exchangeKey{}, ex))
}

// forgetExchange drops r's exchange from its HTTP/1.x connection's state,
// so an idle connection does not keep its last request's record alive.
func forgetExchange(r *http.Request) {
	if cs, ok := r.Context().Value(exchangeKey{}).(*connState); ok && r.ProtoMajor == 1 {
		cs.ex = nil
	}
}

// exchangeOf finds the exchange withExchange recorded.
func exchangeOf(ctx context.Context) *exchange {
	switch v := ctx.Value(exchangeKey{}).(type) {
	case *exchange:
		return v
	case *connState:
		return v.ex
	}
	return nil
}

// recorder counts what is written to the client. It unwraps to the
// server's writer, so http.ResponseController (which the reverse proxy
// uses to flush and to hijack for upgrades) reaches the real one.
type recorder struct {
	w        http.ResponseWriter
	ex       *exchange // &exchange
	status   int
	bytes    int64
	gz       *gzip.Writer // compresses the body, when startGzip chose to
	exchange exchange
}

func (r *recorder) Header() http.Header { return r.w.Header() }

func (r *recorder) WriteHeader(code int) {
	// 1xx responses (103 Early Hints) are interim; the final one counts.
	if r.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		r.status = code
	}
	r.w.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if r.gz != nil {
		return r.gz.Write(b) // counted as sent by rawWriter
	}
	n, err := r.w.Write(b)
	r.bytes += int64(n)
	return n, err
}

// Flush passes a flush on; the reverse proxy flushes streamed responses,
// and compressed bytes held back must go with it.
func (r *recorder) Flush() {
	if r.gz != nil {
		r.gz.Flush()
	}
	http.NewResponseController(r.w).Flush()
}

// Unwrap returns the server's writer, for http.ResponseController.
func (r *recorder) Unwrap() http.ResponseWriter { return r.w }

// finish writes the request's log line. A panic from the reverse proxy
// (http.ErrAbortHandler, when a response is cut off mid-body) is logged
// and passed on, so the server aborts the client connection.
func (s *Server) finish(rec *recorder, r *http.Request) {
	p := recover()
	endGzip(rec, p == nil)
	ex := rec.ex
	if p != nil && ex.end == EndOK {
		ex.end = EndBackendReset
		if r.Context().Err() != nil {
			ex.end = EndClientAborted
		}
	}
	s.count(rec)
	s.logRequest(rec, r)
	if p != nil {
		panic(p)
	}
}

// count adds the request to the listener's Counters.
func (s *Server) count(rec *recorder) {
	if s.Counters == nil {
		return
	}
	ex := rec.ex
	k := RequestKey{Route: ex.route, Status: statusOf(rec), End: ex.end}
	if ex.backend != nil {
		k.Backend = ex.backend.Addr
	}
	s.Counters.ended(k, ex.bytesIn(), rec.bytes, ex.retries, time.Since(ex.start))
}

// statusOf returns the status logged for rec's request.
func statusOf(rec *recorder) int {
	status := rec.status
	if status == 0 && rec.ex.upgraded {
		status = http.StatusSwitchingProtocols
	}
	return loggedStatus(status, rec.ex.end)
}

// loggedStatus is the status logged and counted for a request answered
// with status (0: none) that ended with end.
func loggedStatus(status int, end End) int {
	if end == EndClientAborted && status == 0 {
		// nginx's 499: the client closed before any answer.
		status = 499
	}
	return status
}

func (s *Server) logRequest(rec *recorder, r *http.Request) {
	if !s.logger().Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	ex := rec.ex
	e := logEntry{method: r.Method, host: r.Host, path: r.URL.Path, proto: r.Proto, status: statusOf(rec),
		bytesIn: ex.bytesIn(), bytesOut: rec.bytes, clientCert: clientSubject(r)}
	if s.LogRequestLine {
		e.user, _, _ = r.BasicAuth()
		e.uri, e.referer, e.agent = r.RequestURI, r.Referer(), r.UserAgent()
	}
	s.logExchange(ex, &e)
}

// logEntry is what a request's log line says beyond its exchange, from
// net/http's request or the fast path's parsed head.
type logEntry struct {
	method, host, path, proto string
	uri, user, referer, agent string // with LogRequestLine
	clientCert                string
	status                    int // as logged (loggedStatus)
	bytesIn, bytesOut         int64
}

// logExchange writes one request's log line.
func (s *Server) logExchange(ex *exchange, e *logEntry) {
	attrs := make([]slog.Attr, 0, 22)
	attrs = append(attrs,
		slog.String("listener", s.Name),
		slog.String("client", ex.client.String()),
	)
	if ex.peer != ex.client {
		attrs = append(attrs, slog.String("via", ex.peer.String()))
	}
	attrs = append(attrs,
		slog.String("method", e.method),
		slog.String("host", e.host),
		slog.String("path", e.path),
		slog.String("proto", e.proto),
		slog.Int("status", e.status),
		slog.Int64("bytes_in", e.bytesIn),
		slog.Int64("bytes_out", e.bytesOut),
		slog.Duration("ttfb", ex.ttfb),
		slog.Duration("duration", time.Since(ex.start)),
		slog.String("route", ex.route),
	)
	if e.clientCert != "" {
		attrs = append(attrs, slog.String("client_cert", e.clientCert))
	}
	if ex.backend != nil {
		attrs = append(attrs, slog.String("backend", ex.backend.String()))
	}
	if ex.retries > 0 {
		attrs = append(attrs, slog.Int("retries", ex.retries))
	}
	if ex.cached {
		attrs = append(attrs, slog.String("cache", ex.outcome.String()))
	}
	attrs = append(attrs, slog.String("request_id", ex.id), slog.String("end", ex.end.String()))
	if s.LogRequestLine {
		attrs = append(attrs, slog.String("uri", e.uri), slog.String("user", e.user),
			slog.String("referer", e.referer), slog.String("user_agent", e.agent))
	}
	if ex.err != nil {
		attrs = append(attrs, slog.String("error", ex.err.Error()))
	}
	s.logger().LogAttrs(context.Background(), slog.LevelInfo, "request", attrs...)
}
