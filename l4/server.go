package l4

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
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
	// MaxConnections caps live proxied connections. A connection accepted
	// beyond it waits, unanswered, until another one ends, and further
	// ones wait in the kernel's accept queue, as with HAProxy's maxconn.
	// Zero means no limit.
	MaxConnections int
	// ConnectTimeout bounds each connect attempt. Zero means 5s.
	ConnectTimeout time.Duration
	// IdleTimeout closes a connection on which no bytes moved either way
	// for this long. Zero means 10m.
	IdleTimeout time.Duration
	// HalfClosedTimeout replaces IdleTimeout once one side has sent FIN,
	// so half-closed connections do not linger. Zero means 1m.
	HalfClosedTimeout time.Duration
	// Limiter, if not nil, is a cap shared with other servers, such as the
	// connections the process's file descriptor limit allows. A connection
	// must have a slot of both MaxConnections and Limiter.
	Limiter *Limiter
	// Logger receives one line per connection at close, at level Info, and
	// accept errors. Nil means slog.Default().
	Logger *slog.Logger

	// parkAfter is how long a direction's source must be silent before
	// its goroutine exits and the parker watches the socket instead.
	// Zero means defaultParkAfter; tests shorten it.
	parkAfter time.Duration

	initOnce sync.Once
	stop     chan struct{} // closed when shutdown begins
	stopOnce sync.Once
	force    context.Context // cancelled when live connections must go
	cancel   context.CancelFunc
	slots    *Limiter

	mu     sync.Mutex
	lns    []*net.TCPListener
	shards []*shard

	loops   sync.WaitGroup // accept loops
	parkers sync.WaitGroup // parker loops
	conns   sync.WaitGroup // accepted connections not yet finalized
}

// defaultParkAfter trades a little CPU for memory: a connection silent
// this long gives up its goroutine stacks (several KB) until it is woken,
// while one that is busy never pays for parking and waking.
const defaultParkAfter = time.Second

func (s *Server) parkDelay() time.Duration {
	return orDefault(s.parkAfter, defaultParkAfter)
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		s.stop = make(chan struct{})
		s.force, s.cancel = context.WithCancel(context.Background())
		s.slots = NewLimiter(s.MaxConnections)
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

// Serve accepts connections on lns, one accept loop per listener, and
// proxies them until Shutdown or Close. It takes ownership of lns and
// returns ErrServerClosed once every accept loop has stopped.
func (s *Server) Serve(lns []*net.TCPListener) error {
	s.init()
	s.mu.Lock()
	select {
	case <-s.stop:
		s.mu.Unlock()
		closeAll(lns)
		return ErrServerClosed
	default:
	}
	for _, ln := range lns {
		sh := &shard{conns: make(map[uint64]*conn)}
		if p, err := newParker(); err == nil {
			sh.parker = p
			s.parkers.Go(func() { p.loop(sh.wake) })
		} else {
			// Connections still work; idle ones keep their goroutines.
			s.logger().Warn("idle connections will not park", slog.String("listener", s.Name),
				slog.String("error", err.Error()))
		}
		s.lns = append(s.lns, ln)
		s.shards = append(s.shards, sh)
		s.loops.Go(func() { s.accept(ln, sh) })
	}
	s.mu.Unlock()
	s.loops.Wait()
	return ErrServerClosed
}

func closeAll[T io.Closer](cs []T) {
	for _, c := range cs {
		c.Close()
	}
}

// Shutdown stops accepting, then waits for live connections to finish. When
// ctx ends first, it closes the remaining connections (logged as "drain"),
// waits for them and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.stopAccepting()
	done := make(chan struct{})
	go func() {
		s.conns.Wait()
		close(done)
	}()
	select {
	case <-done:
		s.closeParkers()
		return nil
	case <-ctx.Done():
		s.closeConns()
		<-done
		s.closeParkers()
		return ctx.Err()
	}
}

// Close stops accepting and closes every connection at once.
func (s *Server) Close() error {
	s.init()
	s.stopAccepting()
	s.closeConns()
	s.conns.Wait()
	s.closeParkers()
	return nil
}

// closeParkers stops the parker loops once no connection is left to wake.
func (s *Server) closeParkers() {
	s.mu.Lock()
	for _, sh := range s.shards {
		if sh.parker != nil {
			sh.parker.close()
			sh.parker = nil
		}
	}
	s.mu.Unlock()
	s.parkers.Wait()
}

func (s *Server) stopAccepting() {
	s.stopOnce.Do(func() {
		s.mu.Lock()
		close(s.stop)
		closeAll(s.lns)
		s.mu.Unlock()
	})
	s.loops.Wait()
}

func (s *Server) closeConns() {
	s.cancel()
	s.mu.Lock()
	shards := s.shards
	s.mu.Unlock()
	for _, sh := range shards {
		sh.each(func(c *conn) { c.abort(EndDrain, nil) })
	}
}
