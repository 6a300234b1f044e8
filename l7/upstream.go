package l7

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"sluice/internal/dial"
	"sluice/internal/pool"
)

// proxy forwards requests to one upstream: a reverse proxy whose
// transport picks a backend per request.
type proxy struct {
	s         *Server
	pool      *pool.Pool
	rp        *httputil.ReverseProxy
	transport *http.Transport
	scheme    string // "https" for TLS backends
	h2c       bool
	dialer    net.Dialer // the fast path's
	idle      *idlePool  // the fast path's kept backend connections
}

// bufferPool lends the reverse proxy its copy buffers: without it each
// response allocates 32 KiB, most of all allocation (see the field notes).
// The pool holds array pointers: a slice converts back to one without
// allocating, where boxing a *[]byte for Put would cost an allocation per
// response.
type bufferPool struct{ p sync.Pool }

const copyBufferSize = 32 << 10

func (b *bufferPool) Get() []byte { return b.p.Get().(*[copyBufferSize]byte)[:] }

func (b *bufferPool) Put(s []byte) {
	if cap(s) == copyBufferSize {
		b.p.Put((*[copyBufferSize]byte)(s[:copyBufferSize]))
	}
}

var buffers = &bufferPool{p: sync.Pool{New: func() any { return new([copyBufferSize]byte) }}}

func (s *Server) newProxy(u Upstream) *proxy {
	d := &net.Dialer{Timeout: orDefault(s.ConnectTimeout, DefaultConnectTimeout), KeepAlive: -1}
	t := &http.Transport{
		// No Proxy: HTTP_PROXY in sluice's environment must not
		// redirect its backend traffic.
		Proxy: nil,
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return dial.Connect(ctx, d, addr)
		},
		MaxIdleConns:          0, // no overall cap; per backend below
		MaxIdleConnsPerHost:   orDefault(s.MaxIdlePerBackend, DefaultMaxIdlePerBackend),
		IdleConnTimeout:       orDefault(s.BackendIdleTimeout, DefaultBackendIdle),
		ResponseHeaderTimeout: max(s.ResponseTimeout, 0),
		// Pass the client's Accept-Encoding and bodies through as they
		// are, compressed or not.
		DisableCompression: true,
	}
	if u.H2C {
		protocols := new(http.Protocols)
		protocols.SetUnencryptedHTTP2(true)
		t.Protocols = protocols
	}
	scheme := "http"
	if u.TLS != nil {
		scheme = "https"
		t.TLSClientConfig, t.Protocols = backendTLS(u.TLS)
	}
	p := &proxy{s: s, pool: u.Pool, transport: t, scheme: scheme, h2c: u.H2C, dialer: *d,
		idle: &idlePool{max: t.MaxIdleConnsPerHost, timeout: t.IdleConnTimeout}}
	p.rp = &httputil.ReverseProxy{
		Rewrite:        s.rewrite,
		Transport:      p,
		BufferPool:     buffers,
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.fail,
		ErrorLog:       s.srv.ErrorLog,
	}
	return p
}

// RoundTrip sends req to a backend picked for the request's client,
// trying others after a connect failure (any request: nothing was sent)
// or a failure before any response byte (idempotent requests whose body,
// if any, was not read yet). It records the backend, acquired, in the
// request's exchange.
func (p *proxy) RoundTrip(req *http.Request) (*http.Response, error) {
	ex := exchangeOf(req.Context())
	if ex.cache != nil {
		return p.cached(ex, req) // see cache.go
	}
	var body *onceBody
	if req.Body != nil && req.Body != http.NoBody {
		// The transport closes a request's body when it fails, which
		// would make a retry impossible; the server closes the real
		// one when the handler returns.
		body = &onceBody{r: req.Body}
		req.Body = body
		ex.body = body
	}
	var resp *http.Response
	b, retries, err := dial.Try(req.Context(), p.pool, ex.key, func(b *pool.Backend) error {
		req.URL.Host = b.String()
		r, err := p.transport.RoundTrip(req)
		if err != nil {
			return p.classify(req, body, b, err)
		}
		p.passive(b, r.StatusCode)
		resp = r
		return nil
	})
	ex.retries = retries
	if err != nil {
		return nil, err
	}
	ex.backend = b
	ex.ttfb = time.Since(ex.start)
	return resp, nil
}

// classify reports a failed attempt to passive checks and says whether it
// may be retried elsewhere. dial.Try retries connect failures itself: the
// transport reads a request body only once it is connected, so nothing was
// sent.
func (p *proxy) classify(req *http.Request, body *onceBody, b *pool.Backend, err error) error {
	var ce *dial.ConnectError
	var mb *http.MaxBytesError
	switch {
	case errors.As(err, &ce):
		return err
	case req.Context().Err() != nil, errors.As(err, &mb), body.clientFailed():
		return err // the client's doing, not the backend's
	}
	if !idempotent(req.Method) || (body != nil && body.read.Load()) || isTimeout(err) {
		b.ReportFailure(err)
		return err
	}
	return dial.Retry(err)
}

// idempotent reports whether a request with method m may be sent twice
// (RFC 9110 section 9.2.2).
func idempotent(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// passive counts a response for passive checks: a status among
// FailStatuses is a failure, anything else a success.
func (p *proxy) passive(b *pool.Backend, status int) {
	if slices.Contains(p.s.FailStatuses, status) {
		b.ReportFailure(&statusError{status})
		return
	}
	b.ReportSuccess()
}

type statusError struct{ status int }

func (e *statusError) Error() string { return "backend answered " + http.StatusText(e.status) }

// modifyResponse puts the request ID on the response, over any the
// backend set, so client and log agree.
func (p *proxy) modifyResponse(resp *http.Response) error {
	if ex := exchangeOf(resp.Request.Context()); ex != nil {
		if ex.rewrite != nil {
			ex.rewrite.Response(resp.Header)
		}
		resp.Header.Set(requestIDHeader, ex.id)
		if ex.compress && shouldCompress(resp.Request, resp) {
			startGzip(ex.rec, resp)
		}
		// The reverse proxy writes a 101 on the hijacked connection,
		// past the recorder.
		ex.upgraded = resp.StatusCode == http.StatusSwitchingProtocols
	}
	return nil
}

// fail answers a request the reverse proxy could not forward. A client
// that went away gets no answer and is logged client_aborted, not as a 502
// with "context canceled".
func (p *proxy) fail(w http.ResponseWriter, r *http.Request, err error) {
	ex := exchangeOf(r.Context())
	rec := w.(*recorder)
	var ce *dial.ConnectError
	var mb *http.MaxBytesError
	switch {
	case r.Context().Err() != nil:
		ex.end = EndClientAborted
		return
	case errors.Is(err, dial.ErrNoBackend):
		ex.end, ex.err = EndNoBackend, err
		p.s.local(rec, http.StatusServiceUnavailable, EndNoBackend)
	case errors.As(err, &mb):
		p.s.local(rec, http.StatusRequestEntityTooLarge, EndBodyTooLarge)
	case ex.body.clientFailed():
		// Bodies stream to the backend as they come: bad chunking
		// shows up mid-way, and is the client's error.
		ex.err = err
		p.s.local(rec, http.StatusBadRequest, EndBadRequest)
	case errors.As(err, &ce):
		ex.err = err
		p.s.local(rec, http.StatusBadGateway, EndConnectFailed)
	case isTimeout(err):
		ex.err = err
		p.s.local(rec, http.StatusGatewayTimeout, EndBackendTimeout)
	default:
		ex.err = err
		p.s.local(rec, http.StatusBadGateway, EndBackendReset)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, syscall.ETIMEDOUT) ||
		(errors.As(err, &ne) && ne.Timeout())
}

// onceBody is a request body the transport cannot close, and that records
// whether it was read, which ends any chance of a retry, how much, and
// whether reading it failed: the client's fault (bad chunking, a body cut
// short), not the backend's.
type onceBody struct {
	r      io.ReadCloser
	read   atomic.Bool  // written by the transport's write loop
	n      atomic.Int64 // bytes read, for the log
	failed atomic.Bool
}

func (b *onceBody) Read(p []byte) (int, error) {
	if !b.read.Load() {
		b.read.Store(true)
	}
	n, err := b.r.Read(p)
	b.n.Add(int64(n))
	if err != nil && err != io.EOF {
		b.failed.Store(true)
	}
	return n, err
}

// clientFailed reports whether reading the client's body failed.
func (b *onceBody) clientFailed() bool { return b != nil && b.failed.Load() }

// Close is a no-op: http.Server closes the request body after the handler.
func (b *onceBody) Close() error { return nil }
