// Package l7 is sluice's HTTP reverse proxy: it serves HTTP/1.1 and h2c,
// or HTTPS with HTTP/2 by ALPN, on a listener's sockets, routes each request (package route), and forwards
// it to a backend picked per request from the shared pools, with retries,
// passive checks, forwarding headers and one access log line per request.
// On plain listeners HTTP/1.1 takes a fast path of its own (fastserve.go:
// heads parsed in place, kept backend connections, upgrades spliced);
// what it does not serve goes to net/http with the bytes already read.
//
//	s := &l7.Server{Name: "web", Routes: routes, Upstreams: ups, Default: "web"}
//	go s.Serve(lns)          // lns from internal/listen
//	defer s.Shutdown(ctx)    // drain, then close
package l7

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"sluice/internal/access"
	"sluice/internal/pool"
	"sluice/l7/cache"
	"sluice/l7/route"
)

// Defaults for the zero values of Server's fields.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 2 * time.Minute
	DefaultConnectTimeout    = 5 * time.Second
	DefaultMaxHeaderBytes    = 64 << 10
	DefaultMaxURLBytes       = 8 << 10
	DefaultMaxIdlePerBackend = 64
	DefaultBackendIdle       = 90 * time.Second
)

// Upstream is a pool requests are forwarded to.
type Upstream struct {
	// Pool is the pool backends are picked from, per request.
	Pool *pool.Pool
	// H2C speaks HTTP/2 over cleartext (prior knowledge) to the backends,
	// as gRPC servers expect; false speaks HTTP/1.1.
	H2C bool
	// TLS, if not nil, speaks TLS to the backends with this client
	// configuration (server name, roots, client certificate). Its
	// NextProtos say which versions are offered by ALPN: "h2" (which
	// gRPC over TLS needs), "http/1.1", or both (also when empty).
	TLS *tls.Config
}

// Server is one HTTP listener. Set its fields before Serve; the zero value
// of each (but Upstreams for forwarding routes) works.
type Server struct {
	// Name names the listener in logs.
	Name string
	// Routes are tried in order; the first match decides.
	Routes []route.Route
	// Upstreams are the pools routes may name, by name.
	Upstreams map[string]Upstream
	// Caches are the HTTP caches routes may name (Route.Cache), by name;
	// the caller owns them (they may outlive a Server across reloads)
	// and closes them.
	Caches map[string]*cache.Cache
	// Default names the upstream of requests no route matches; "" answers
	// them 404.
	Default string
	// TrustedProxies are the peers whose X-Forwarded-*/Forwarded headers
	// are kept and appended to; from any other peer they are replaced.
	TrustedProxies []netip.Prefix
	// ReadHeaderTimeout bounds reading a request's head (slowloris); zero
	// means DefaultReadHeaderTimeout, negative none.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a client connection idle between requests; zero
	// means DefaultIdleTimeout, negative none.
	IdleTimeout time.Duration
	// ConnectTimeout bounds each connect to a backend; zero means
	// DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// ResponseTimeout bounds the wait for a backend's response head once
	// the request is sent (504 after it); zero means none.
	ResponseTimeout time.Duration
	// MaxHeaderBytes caps a request head (431 beyond); zero means
	// DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// MaxURLBytes caps a request's target, path and query (414 beyond);
	// zero means DefaultMaxURLBytes, negative no cap beyond MaxHeaderBytes.
	MaxURLBytes int
	// MaxRequestsPerConnection closes an HTTP/1.1 client connection after
	// this many requests (the last answered with Connection: close), so
	// long-lived clients rebalance across sluice hosts; zero means no cap.
	MaxRequestsPerConnection int
	// RequestRate caps each client's requests (the real client, after
	// trusted proxies); beyond it requests are answered 429 with
	// Retry-After. The zero value means no cap.
	RequestRate access.Rate
	// RequestBurst is how many requests a client may make at once, ahead
	// of RequestRate; zero means RequestRate.N.
	RequestBurst int
	// MaxBodyBytes caps a request body (413 beyond); zero means no cap.
	MaxBodyBytes int64
	// MaxConnections caps open client connections across the sockets
	// given to Serve; beyond it new ones wait in the accept queue. Zero
	// means no cap.
	MaxConnections int
	// FailStatuses are backend response statuses that count as failures
	// for passive checks, such as 502, 503 and 504; none by default.
	FailStatuses []int
	// MaxIdlePerBackend is how many idle keep-alive connections are kept
	// to each backend; zero means DefaultMaxIdlePerBackend.
	MaxIdlePerBackend int
	// BackendIdleTimeout closes a keep-alive connection to a backend idle
	// this long; zero means DefaultBackendIdle.
	BackendIdleTimeout time.Duration
	// TLS, if not nil, terminates TLS on every socket: certificates (by
	// GetCertificate, so they can be reloaded), versions, curves and
	// client certificates come from it; Serve offers h2 and http/1.1 by
	// ALPN. Its session tickets are its own: crypto/tls's keys unless
	// its WrapSession and UnwrapSession say otherwise.
	TLS *tls.Config
	// Hosts, with TLS, decides which requests are misdirected (421): those
	// whose Host the certificate served for the connection does not
	// cover. Nil checks nothing.
	Hosts Hosts
	// ACME, if not nil, answers ACME HTTP-01 validations (requests under
	// /.well-known/acme-challenge/) for the names it has, before the
	// routes; requests for other names go on to the routes.
	ACME Challenges
	// ClientCertHeader, with TLS, names a request header set to the
	// subject of the client's verified certificate, and removed from
	// requests without one so that no client can forge it; "" sets none.
	ClientCertHeader string
	// Counters, if not nil, count requests for metrics (share one between
	// the Servers over one listener). Nil counts nothing.
	Counters *Counters
	// Logger receives the access log ("request" records) and errors; nil
	// means slog.Default(). Requests are logged while it is enabled at
	// Info.
	Logger *slog.Logger
	// LogRequestLine adds to each request record what a Common or
	// Combined Log Format line shows beyond it: the request target with
	// its query (uri), the Basic auth user, Referer and User-Agent. Set it
	// when Logger's handler is a NewCLFHandler.
	LogRequestLine bool
	// NetHTTPOnly serves every connection with net/http, as before the
	// HTTP/1.1 fast path (fastserve.go): for comparison, and as a way
	// out should the fast path misbehave. TLS listeners always use
	// net/http.
	NetHTTPOnly bool

	fast      fastState
	once      sync.Once
	limit     *rateLimit                  // nil without RequestRate
	routeLim  map[*route.Route]*rateLimit // routes with a RequestRate
	srv       *http.Server
	table     *route.Table
	proxies   map[string]*proxy
	base      context.Context // parent of every request's context
	cancel    context.CancelFunc
	handlers  sync.WaitGroup // ServeHTTP calls, hijacked ones included
	closeOnce sync.Once
}

func (s *Server) init() {
	s.once.Do(func() {
		s.table = route.NewTable(s.Routes)
		s.limit = newRateLimit(s.RequestRate, s.RequestBurst)
		for i := range s.table.Len() {
			rt := s.table.At(i)
			if l := newRateLimit(rt.RequestRate, rt.RequestBurst); l != nil {
				if s.routeLim == nil {
					s.routeLim = make(map[*route.Route]*rateLimit)
				}
				s.routeLim[rt] = l
			}
		}
		s.base, s.cancel = context.WithCancel(context.Background())
		protocols := new(http.Protocols)
		protocols.SetHTTP1(true)
		// h2c with prior knowledge: gRPC clients and curl
		// --http2-prior-knowledge start with the HTTP/2 preface.
		protocols.SetUnencryptedHTTP2(true)
		protocols.SetHTTP2(s.TLS != nil)
		s.srv = &http.Server{
			Handler:           s,
			ReadHeaderTimeout: orDefault(s.ReadHeaderTimeout, DefaultReadHeaderTimeout),
			IdleTimeout:       orDefault(s.IdleTimeout, DefaultIdleTimeout),
			MaxHeaderBytes:    orDefault(s.MaxHeaderBytes, DefaultMaxHeaderBytes),
			Protocols:         protocols,
			BaseContext:       func(net.Listener) context.Context { return s.base },
			ConnContext:       s.connContext,
			ErrorLog:          slog.NewLogLogger(s.logger().Handler(), slog.LevelDebug),
		}
		if s.TLS != nil {
			s.srv.TLSConfig = s.tlsConfig()
		}
		s.fast.handoff = newHandoffListener()
		s.proxies = make(map[string]*proxy, len(s.Upstreams))
		for name, u := range s.Upstreams {
			s.proxies[name] = s.newProxy(u)
		}
	})
}

// orDefault returns def for zero and zero (none) for negative values.
func orDefault[T int | time.Duration](v, def T) T {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.Default()
	}
	return s.Logger
}

// Serve serves HTTP on every listener until Shutdown, then returns nil
// once each listener's loop has returned.
func (s *Server) Serve(lns []*net.TCPListener) error {
	s.init()
	if s.fastPath() {
		return s.serveFast(lns)
	}
	errs := make(chan error, len(lns))
	var slots chan struct{}
	if s.MaxConnections > 0 {
		slots = make(chan struct{}, s.MaxConnections)
	}
	var wg sync.WaitGroup
	for _, ln := range lns {
		var l net.Listener = ln
		if slots != nil {
			l = &limitListener{TCPListener: ln, slots: slots, done: make(chan struct{})}
		}
		wg.Go(func() {
			if s.TLS != nil {
				// Certificates come from TLSConfig, not files.
				errs <- s.srv.ServeTLS(l, "", "")
				return
			}
			errs <- s.srv.Serve(l)
		})
	}
	wg.Wait()
	close(errs)
	var err error
	for e := range errs {
		if !errors.Is(e, http.ErrServerClosed) {
			err = errors.Join(err, e)
		}
	}
	return err
}

// Shutdown stops accepting, lets requests in flight finish until ctx ends,
// then closes every connection (upgraded ones too) and waits for their
// handlers. It returns ctx's error if the drain ran out.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.shutdownFast()
	err := s.srv.Shutdown(ctx)
	if err == nil {
		// http.Server forgets hijacked (upgraded) connections: wait for
		// their handlers too, within the same deadline.
		err = waitCtx(ctx, &s.handlers)
	}
	if err == nil {
		err = s.waitFast(ctx)
	}
	if err != nil {
		s.srv.Close()
		s.closeFast()
		// Upgraded connections are no longer the server's to close;
		// cancelling the requests' base context ends their tunnels.
		s.cancel()
	}
	s.handlers.Wait()
	s.fast.running.Wait()
	s.closeOnce.Do(s.cancel)
	s.fast.reaper.Wait()
	for _, p := range s.proxies {
		p.transport.CloseIdleConnections()
		p.idle.reap(true)
	}
	return err
}

// waitCtx waits for wg or ctx, whichever ends first; the goroutine it
// starts ends with wg.
func waitCtx(ctx context.Context, wg *sync.WaitGroup) error {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// connState is a client connection's own state, in its context from
// ConnContext (one allocation per connection, none per request).
type connState struct {
	requests atomic.Int64 // counted when requests per connection are capped
	// ex is the exchange of the connection's request in progress, on
	// HTTP/1.x only: there the server reads the next request once the
	// handler has returned, and the handler, the reverse proxy's hooks
	// and the transport's RoundTrip all run in the connection's
	// goroutine. It spares each request a context and a request copy.
	ex *exchange
}

// connContext gives each client connection its state.
func (s *Server) connContext(ctx context.Context, _ net.Conn) context.Context {
	return context.WithValue(ctx, exchangeKey{}, new(connState))
}

// countRequest counts r on its connection and, at the cap, has the server
// close the connection after this response. HTTP/2 connections are not
// capped: net/http gives a handler no way to send GOAWAY.
func (s *Server) countRequest(rec *recorder, r *http.Request) {
	if s.MaxRequestsPerConnection <= 0 || r.ProtoMajor != 1 {
		return
	}
	cs, _ := r.Context().Value(exchangeKey{}).(*connState)
	if cs != nil && cs.requests.Add(1) >= int64(s.MaxRequestsPerConnection) {
		rec.Header().Set("Connection", "close")
	}
}
