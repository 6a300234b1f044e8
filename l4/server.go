package l4

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"sluice/internal/pool"
)

// Picker chooses backends for new connections. *pool.Pool implements it.
type Picker interface {
	// Pick returns a backend for client that is not in tried, or nil.
	Pick(client netip.AddrPort, tried []*pool.Backend) *pool.Backend
	// Retries is how many more backends to try after a failed connect.
	Retries() int
	// Unavailable says why Pick finds no backend at all (which are down,
	// draining...), for the log; "" when some backend is up.
	Unavailable() string
}

var _ Picker = (*pool.Pool)(nil)

// Defaults for the Server's zero-valued fields.
const (
	DefaultConnectTimeout    = 5 * time.Second
	DefaultIdleTimeout       = 10 * time.Minute
	DefaultHalfClosedTimeout = time.Minute
	DefaultPreambleTimeout   = 5 * time.Second
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("l4: server closed")

// Server proxies the TCP connections accepted on its listeners to backends
// picked from Pool. Set its fields before calling Serve; the zero value of
// each optional field is documented.
type Server struct {
	// Name identifies the server (the configured listener) in logs.
	Name string
	// Pool picks backends. Required.
	Pool Picker
	// MaxConnections caps live proxied connections. Past it, new
	// connections wait in the kernel's accept queue until another one
	// ends, as with HAProxy's maxconn. Zero means no limit.
	MaxConnections int
	// ConnectTimeout bounds each connect attempt. Zero means 5s.
	ConnectTimeout time.Duration
	// IdleTimeout closes a connection on which no bytes moved either way
	// for this long. Zero means 10m.
	IdleTimeout time.Duration
	// HalfClosedTimeout replaces IdleTimeout once one side has sent FIN,
	// so half-closed connections do not linger. Zero means 1m.
	HalfClosedTimeout time.Duration
	// ClientKeepAlive sends TCP keep-alive probes to clients (set once on
	// the listening sockets, inherited by accepted ones); the zero value
	// sends none.
	ClientKeepAlive KeepAlive
	// BackendKeepAlive sends TCP keep-alive probes to backends; the zero
	// value sends none.
	BackendKeepAlive KeepAlive
	// Limiter, if not nil, is a cap shared with other servers, such as the
	// connections the process's file descriptor limit allows. A connection
	// must have a slot of both MaxConnections and Limiter.
	Limiter *Limiter
	// DrainPacer, if paced, spaces out the closes of a drain: those of the
	// connections Shutdown's deadline leaves, and DrainBackend's. Share
	// one between the Servers over a pool. Nil: they are closed at once.
	DrainPacer *Pacer
	// Counters, if not nil, count the connections for metrics (share one
	// between the Servers over one listener). Nil counts nothing.
	Counters *Counters
	// Logger receives one line per connection at close, at level Info, and
	// accept errors. Nil means slog.Default().
	Logger *slog.Logger

	// Preamble, if not nil, reads each client's preamble (a PROXY header)
	// before its backend is chosen. Nil: clients send none.
	Preamble PreambleParser
	// PreambleTimeout bounds the wait for a complete preamble. Zero
	// means 5s.
	PreambleTimeout time.Duration
	// Admit, if not nil, decides whether each client may be served.
	Admit Admitter
	// BackendPreamble, if not nil, is written to each backend before the
	// client's bytes.
	BackendPreamble BackendPreamble

	// Terminate, if not nil, ends TLS (or a database's negotiation and
	// TLS) on every connection: they run on goroutines, not on the event
	// loops, with the same slots, pool, Admit, BackendPreamble, timeouts,
	// log line and drain; their Preamble (a PROXY header before the
	// ClientHello) is read on the connection's goroutine, before
	// Terminate.
	Terminate Terminator
	// HandshakeTimeout bounds Terminate. Zero means 10s.
	HandshakeTimeout time.Duration
	// BackendStart, if not nil, starts each backend connection of a
	// Terminate server (TLS to the backend) before the client's bytes.
	BackendStart BackendStarter

	// Test hooks: accept4 replaces the accept4 system call, newPipe the
	// making of a splice pipe.
	accept4 func(fd int) (int, netip.AddrPort, error)
	newPipe func() (*pipe, error)

	initOnce sync.Once
	state    atomic.Int32 // running, draining or closing
	slots    *Limiter
	force    chan struct{} // closed on entering closing
	started  chan struct{} // closed once Serve has made its loops (or refused to), for Import

	mu      sync.Mutex
	stopped bool // Shutdown or Close was called
	loops   []*loop

	running sync.WaitGroup // loops and Terminate's connections, joined by Serve and by shutdown
	terms   termSet        // Terminate's live connections
}

// Server states, in the order they are entered.
const (
	running  = iota
	draining // accept no more; serve the live connections to their end
	closing  // end every connection now
)

func (s *Server) init() {
	s.initOnce.Do(func() {
		s.slots = NewLimiter(s.MaxConnections)
		s.force = make(chan struct{})
		s.started = make(chan struct{})
	})
}

func (s *Server) connectTimeout() time.Duration {
	return orDefault(s.ConnectTimeout, DefaultConnectTimeout)
}

func (s *Server) idleTimeout() time.Duration {
	return orDefault(s.IdleTimeout, DefaultIdleTimeout)
}

func (s *Server) halfClosedTimeout() time.Duration {
	return orDefault(s.HalfClosedTimeout, DefaultHalfClosedTimeout)
}

func (s *Server) preambleTimeout() time.Duration {
	return orDefault(s.PreambleTimeout, DefaultPreambleTimeout)
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

// Serve runs one event loop per listener until Shutdown or Close and every
// connection has ended. It takes ownership of lns and returns
// ErrServerClosed.
func (s *Server) Serve(lns []*net.TCPListener) error {
	s.init()
	s.mu.Lock()
	if s.stopped {
		s.markStarted()
		s.mu.Unlock()
		closeAll(lns)
		return ErrServerClosed
	}
	var err error
	for i, ln := range lns {
		l, lerr := newLoop(s, ln)
		if lerr != nil {
			err = lerr
			closeAll(lns[i:])
			break
		}
		l.index = len(s.loops)
		s.loops = append(s.loops, l)
		s.running.Go(l.run)
	}
	s.markStarted()
	s.mu.Unlock()
	if err != nil {
		// The loops already started serve on; those that failed are
		// logged, as an accept loop's failure was.
		s.logger().Error("listener not served", slog.String("listener", s.Name),
			slog.String("error", err.Error()))
	}
	s.running.Wait()
	return ErrServerClosed
}

// markStarted tells Import that the loops are made (or will not be).
// Under s.mu.
func (s *Server) markStarted() {
	select {
	case <-s.started:
	default:
		close(s.started)
	}
}

func closeAll[T io.Closer](cs []T) {
	for _, c := range cs {
		c.Close()
	}
}

// Shutdown stops accepting, then waits for live connections to finish. When
// ctx ends first, it closes the remaining connections (logged as "drain"),
// at DrainPacer's pace if it has one (until they are all closed, or Close
// is called), waits for them and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.setState(draining)
	done := make(chan struct{})
	go func() {
		s.running.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		if s.DrainPacer.Paced() {
			s.closePaced(context.Background(), nil)
		}
		s.setState(closing)
		<-done
		return ctx.Err()
	}
}

// Close stops accepting and closes every connection at once.
func (s *Server) Close() error {
	s.init()
	s.setState(closing)
	s.running.Wait()
	return nil
}

// setState moves the server on to st (never back) and wakes its loops to
// act on it.
func (s *Server) setState(st int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	if s.state.Load() < st {
		s.state.Store(st)
		if st == closing {
			close(s.force)
		}
	}
	for _, l := range s.loops {
		l.wake()
	}
	if st == closing {
		s.terms.closeAll(EndDrain)
	}
}

// CloseBackend closes every live connection to b, resetting its client,
// logged with end=backend_down. Wire it to pool.(*Pool).OnDown where a
// backend's health checks marking it down must cut its clients off (such
// as a demoted primary). It may be called from any goroutine; it returns
// once the loops have been told, not when the connections are closed.
func (s *Server) CloseBackend(b *pool.Backend) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.loops {
		l.post(func(l *loop) { l.closeBackend(b) })
	}
	s.terms.closeBackend(b)
}

// DrainBackend closes the live connections to b (a backend drained by
// hand or removed from its pool) at DrainPacer's pace, all at once
// without one, until none is left, ctx ends or the server closes. It
// returns how many it closed. They end as at the drain deadline: with a
// FIN (a reset for one not yet connected), logged with end=drain. It
// blocks: the caller owns the drain and stops it with ctx.
func (s *Server) DrainBackend(ctx context.Context, b *pool.Backend) int {
	s.init()
	return s.closePaced(ctx, b)
}

// closePaced closes the connections to b (every connection, for nil b)
// one at a time at DrainPacer's pace.
func (s *Server) closePaced(ctx context.Context, b *pool.Backend) int {
	n := 0
	for s.DrainPacer.wait(ctx, s.force) {
		if !s.closeOne(b) {
			break
		}
		s.DrainPacer.done()
		n++
	}
	return n
}

// closeOne ends one connection to b (any, for nil b), with end=drain, and
// reports whether there was one. The loops are asked in turn, each on its
// own goroutine; then the connections run on goroutines.
func (s *Server) closeOne(b *pool.Backend) bool {
	s.mu.Lock()
	loops := slices.Clone(s.loops)
	s.mu.Unlock()
	for _, l := range loops {
		found := make(chan bool, 1)
		if !l.post(func(l *loop) { found <- l.closeOne(b) }) {
			continue
		}
		if <-found {
			return true
		}
	}
	return s.terms.closeOne(b)
}

// onLoops runs f on every live loop, on the loop's goroutine, and waits
// for them. Tests use it to look at the loops' state without racing them.
func (s *Server) onLoops(f func(l *loop)) {
	s.mu.Lock()
	var wg sync.WaitGroup
	for _, l := range s.loops {
		wg.Add(1)
		if !l.post(func(l *loop) { defer wg.Done(); f(l) }) {
			wg.Done()
		}
	}
	s.mu.Unlock()
	wg.Wait()
}
