// Package admin serves what an operator needs to see and steer a running
// sluice: Prometheus metrics (/metrics), a JSON API (/api/v1/...: listeners,
// pools, backends, their states and checks; drain, maintenance, enable;
// explain) and a status page (/), all behind an optional bearer token.
//
//	m := admin.NewMetrics(listeners, pools, version) // log through m.LogHandler(h)
//	s := admin.New(admin.Options{Listeners: listeners, Pools: pools, Metrics: m, Token: tok})
//	go s.Serve(ln); defer s.Shutdown(ctx)
package admin

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"sluice/internal/pool"
	"sluice/l4/udp"
)

// Listener describes one of sluice's listeners to the admin interface.
type Listener struct {
	// Name, Protocol ("tcp" or "udp"), Bind and Pool are as configured.
	Name, Protocol, Bind, Pool string
	// UDP returns a UDP listener's counters; nil for a TCP listener.
	UDP func() udp.Stats
	// Certificates returns the certificates a TLS listener serves, read
	// at each scrape; nil for a listener without TLS.
	Certificates func() []Certificate
}

// Certificate is one certificate a listener serves, for its expiry gauge.
type Certificate struct {
	// File is the certificate's file, as configured.
	File string
	// NotAfter is when the certificate (its leaf) expires.
	NotAfter time.Time
}

// Pool is one of sluice's pools with what the API says about its
// configuration.
type Pool struct {
	*pool.Pool
	// Balance and HashKey are the pool's algorithm and what Maglev
	// hashes.
	Balance pool.Balance
	HashKey pool.HashKey
}

// Options configures a Server. Metrics is required; the zero value of
// every other field is documented.
type Options struct {
	// Listeners and Pools are the running configuration's.
	Listeners []Listener
	Pools     []Pool
	// Caches are the HTTP caches by name, which /metrics counts and
	// POST /api/v1/caches/{cache}/purge purges; nil means none.
	Caches map[string]Cache
	// Metrics is what /metrics serves, and where the API reads counts
	// and last checks.
	Metrics *Metrics
	// Token, if not empty, must come with every request, as
	// "Authorization: Bearer TOKEN" (or, from a browser, as the password
	// of HTTP basic authentication, with any user name).
	Token string
	// Editor, if not nil, carries out the API's weight, add and remove
	// requests; nil answers them 501 Not Implemented.
	Editor Editor
	// Reload, if not nil, reloads the configuration file for POST
	// /api/v1/reload and returns its errors; nil answers 501 Not
	// Implemented.
	Reload func() error
	// BGP, if not nil, is the host's BGP speaker: its status in the API
	// and metrics, the host drain; nil answers those routes 404.
	BGP BGP
	// Upgrade, if not nil, starts a new sluice binary ("" for the one
	// running) for POST /api/v1/upgrade and returns its pid once it
	// serves; nil answers 501 Not Implemented.
	Upgrade func(binary string) (int, error)
	// Version is the running build's, shown by the API and the page.
	Version string
	// Logger receives errors serving the admin listener. Nil means
	// slog.Default().
	Logger *slog.Logger
}

// Server is the admin HTTP server of one running configuration.
type Server struct {
	o       Options
	pools   map[string]Pool
	started time.Time
	srv     *http.Server
}

// New builds a Server and points the gauges of o.Metrics at its listeners
// and pools; nothing listens until Serve. One Metrics serves one Server
// at a time: after a reload, the Server of the new configuration.
func New(o Options) *Server {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	s := &Server{o: o, pools: make(map[string]Pool, len(o.Pools)), started: time.Now()}
	ps := make([]*pool.Pool, 0, len(o.Pools))
	for _, p := range o.Pools {
		s.pools[p.Name()] = p
		ps = append(ps, p.Pool)
	}
	o.Metrics.setState(o.Listeners, ps)
	if o.BGP != nil {
		o.Metrics.setBGP(o.BGP)
	}
	o.Metrics.setCaches(o.Caches)
	s.srv = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(o.Logger.Handler(), slog.LevelWarn),
	}
	return s
}

// Handler returns the admin interface's routes behind the token check.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.o.Metrics.reg, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(s.o.Logger.Handler(), slog.LevelWarn),
	}))
	mux.HandleFunc("GET /api/v1/status", s.status)
	mux.HandleFunc("GET /api/v1/listeners", s.listeners)
	mux.HandleFunc("GET /api/v1/pools", s.poolList)
	mux.HandleFunc("GET /api/v1/pools/{pool}", s.pool)
	mux.HandleFunc("GET /api/v1/pools/{pool}/backends/{backend}", s.backend)
	mux.HandleFunc("PUT /api/v1/pools/{pool}/backends/{backend}/state", s.setState)
	mux.HandleFunc("PUT /api/v1/pools/{pool}/backends/{backend}/weight", s.setWeight)
	mux.HandleFunc("POST /api/v1/pools/{pool}/backends", s.addBackend)
	mux.HandleFunc("DELETE /api/v1/pools/{pool}/backends/{backend}", s.removeBackend)
	mux.HandleFunc("GET /api/v1/pools/{pool}/explain", s.explain)
	mux.HandleFunc("POST /api/v1/reload", s.reload)
	mux.HandleFunc("GET /api/v1/bgp", s.bgpStatus)
	mux.HandleFunc("POST /api/v1/host/drain", s.hostDrain(true))
	mux.HandleFunc("POST /api/v1/host/enable", s.hostDrain(false))
	mux.HandleFunc("GET /api/v1/caches", s.caches)
	mux.HandleFunc("POST /api/v1/caches/{cache}/purge", s.purge)
	mux.HandleFunc("POST /api/v1/upgrade", s.upgrade)
	mux.HandleFunc("GET /{$}", s.page)
	mux.HandleFunc("GET /status.js", s.script)
	return s.auth(mux)
}

// auth refuses requests without the token, if there is one.
func (s *Server) auth(next http.Handler) http.Handler {
	if s.o.Token == "" {
		return next
	}
	want := []byte(s.o.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare(requestToken(r), want) != 1 {
			// Basic lets a browser ask for the token (as the password)
			// and send it with the page's own requests.
			w.Header().Add("WWW-Authenticate", `Bearer realm="sluice"`)
			w.Header().Add("WWW-Authenticate", `Basic realm="sluice", charset="UTF-8"`)
			writeError(w, http.StatusUnauthorized, errors.New("admin: missing or wrong token"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// requestToken returns the bearer token, or the basic password, r carries.
func requestToken(r *http.Request) []byte {
	h := r.Header.Get("Authorization")
	scheme, cred, ok := strings.Cut(h, " ")
	switch {
	case !ok:
		return nil
	case strings.EqualFold(scheme, "Bearer"):
		return []byte(strings.TrimSpace(cred))
	case strings.EqualFold(scheme, "Basic"):
		dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
		if err != nil {
			return nil
		}
		_, pass, _ := strings.Cut(string(dec), ":")
		return []byte(pass)
	}
	return nil
}

// Serve serves the admin interface on ln until Shutdown; it then returns
// nil.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown stops accepting, lets requests in progress finish until ctx
// ends, then closes the connections left.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	return err
}

// An Editor changes pools' backend sets at run time, for the API's
// weight, add and remove requests. Its errors wrap ErrNotFound,
// ErrConflict or ErrInvalid, which choose the response's status.
type Editor interface {
	// SetWeight gives a backend a new weight.
	SetWeight(pool string, addr netip.AddrPort, weight int) error
	// AddBackend adds a backend to a pool; it is checked as the pool's
	// [health] table says, and takes traffic once up.
	AddBackend(pool string, b pool.BackendOptions) error
	// RemoveBackend removes a backend: no new connections; its live
	// ones go on until the drain timeout.
	RemoveBackend(pool string, addr netip.AddrPort) error
}

// Errors an Editor wraps.
var (
	ErrNotFound = errors.New("admin: not found")
	ErrConflict = errors.New("admin: conflict")
	ErrInvalid  = errors.New("admin: invalid")
)
