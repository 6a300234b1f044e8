package udp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"sluice/internal/pool"
)

// Picker chooses the backend for a new flow. *pool.Pool implements it.
type Picker interface {
	// Pick returns a backend for client that is not in tried, or nil.
	Pick(client netip.AddrPort, tried []*pool.Backend) *pool.Backend
}

var _ Picker = (*pool.Pool)(nil)

// Defaults for the Server's zero-valued fields.
const (
	DefaultSessionTimeout = 30 * time.Second
	DefaultMaxSessions    = 65536
	// DefaultEvictIdle is how long a session must have been idle before
	// a full table may end it to make room for a new flow: long enough
	// that a flood cannot churn through live request/response exchanges,
	// short enough that a client retrying (dig waits 5 s, most resolvers
	// 1 to 2 s) finds room.
	DefaultEvictIdle = time.Second
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("l4/udp: server closed")

// Server balances the UDP flows received on its sockets over backends
// picked from Pool. Set its fields before calling Serve; the zero value of
// each optional field is documented.
type Server struct {
	// Name identifies the server (the configured listener) in logs.
	Name string
	// Pool picks the backend of each new flow. Required.
	Pool Picker
	// SessionTimeout ends a session after this long without a datagram
	// either way. Zero or negative means DefaultSessionTimeout (30s).
	SessionTimeout time.Duration
	// Responses ends a session once its backend has sent this many
	// datagrams back, as nginx's proxy_responses: 1 suits DNS. Later
	// replies are dropped by the kernel with the session's socket. Zero or
	// negative means no limit.
	Responses int
	// MaxSessions caps live sessions across all of the server's sockets.
	// Each session holds one file descriptor and one local port. Zero or
	// negative means DefaultMaxSessions (65536).
	//
	// When the cap is reached, a new flow takes the place of the least
	// recently active session of its socket if that one has been idle
	// for EvictIdle (Stats.Evicted), as conntrack's early drop does, so
	// a flood of new source ports cannot shut out new clients until its
	// sessions expire. Otherwise its datagram is dropped and counted
	// (Stats.DroppedSessionCap), and if its socket had no session to
	// evict, another socket evicts one of its own for the flow's next
	// datagram. A flood faster than the cap per EvictIdle is still
	// refused, and memory stays bounded either way.
	MaxSessions int
	// EvictIdle is how long a session must have been idle before a full
	// table ends it for a new flow. Zero means DefaultEvictIdle (1s);
	// negative means never: new flows wait for sessions to end.
	EvictIdle time.Duration
	// Counters, if not nil, count sessions for metrics (share one between
	// the Servers over one listener). Nil counts nothing.
	Counters *Counters
	// Logger receives one line per session when it ends, at level Info,
	// and a warning when datagrams of new flows are dropped because of
	// MaxSessions or because no socket could be opened, and when sessions
	// are evicted for new flows, each at most once a second per socket.
	// Nil means slog.Default().
	Logger *slog.Logger

	// Preamble, if not nil, takes a PROXY header off each datagram
	// before its flow is looked up. Nil: datagrams carry none.
	Preamble Preamble
	// Admit, if not nil, decides whether each new flow may have a
	// session.
	Admit Admitter
	// BackendPreamble, if not nil, goes in front of every datagram sent
	// to a backend.
	BackendPreamble BackendPreamble

	// Held, if true, makes Serve start without reading its sockets:
	// their datagrams wait in the kernel's queues until Resume. A process
	// started by a binary upgrade holds the sockets it inherited while
	// the old one still reads them, so that no flow opens a second
	// session here before its own is imported (see Import).
	Held bool

	// conf is the settings in force: the fields above until
	// Reconfigure replaces them. Loops load it once per wake-up.
	conf atomic.Pointer[Settings]

	// state is running, draining or closing; it only moves forward.
	// Loops read it when woken, never per datagram.
	state atomic.Int32
	// live counts sessions and places lent (see lend) against
	// MaxSessions.
	live atomic.Int64
	// wants is 1 while a loop with a full table and no session of its
	// own to evict waits for another loop to lend it a place; lent counts
	// places given up by evictions that a new flow has not taken yet.
	wants, lent atomic.Int64

	mu      sync.Mutex
	loops   []*loop
	resumed bool           // Resume was called: no loop starts held
	wg      sync.WaitGroup // loop goroutines

	// started is closed once Serve has set its loops up, or failed to,
	// for Import.
	started   chan struct{}
	once      sync.Once
	startOnce sync.Once
}

const (
	running int32 = iota
	draining
	closing
)

// Settings are what Reconfigure changes on a running Server (a reload
// that changes the listener's settings or its pool). Each field means what
// the Server's field of the same name means.
type Settings struct {
	Pool            Picker
	SessionTimeout  time.Duration
	Responses       int
	MaxSessions     int
	EvictIdle       time.Duration
	Preamble        Preamble
	Admit           Admitter
	BackendPreamble BackendPreamble
}

// settings returns the settings in force, the Server's fields until
// Reconfigure has been called.
func (s *Server) settings() *Settings {
	if c := s.conf.Load(); c != nil {
		return c
	}
	s.conf.CompareAndSwap(nil, &Settings{Pool: s.Pool, SessionTimeout: s.SessionTimeout, Responses: s.Responses,
		MaxSessions: s.MaxSessions, EvictIdle: s.EvictIdle, Preamble: s.Preamble, Admit: s.Admit,
		BackendPreamble: s.BackendPreamble})
	return s.conf.Load()
}

// Reconfigure puts st in force while the Server runs, without a datagram
// lost or a session moved: the sockets and the live sessions stay with
// their backends (a second proxy on the same sockets would split a flow's
// datagrams between two sessions). New flows are admitted, stripped and
// picked by st's hooks and Pool; the timeouts, Responses and MaxSessions
// apply to every session from the loops' next wake-up, the live ones
// too; a live session keeps the BackendPreamble it started with.
func (s *Server) Reconfigure(st Settings) {
	s.conf.Store(&st)
	s.mu.Lock()
	defer s.mu.Unlock()
	// A shorter session timeout may make the idle lists' fronts due now.
	for _, l := range s.loops {
		l.wake()
	}
}

func (s *Server) sessionTimeout() time.Duration {
	if t := s.settings().SessionTimeout; t > 0 {
		return t
	}
	return DefaultSessionTimeout
}

func (s *Server) maxSessions() int64 {
	if m := s.settings().MaxSessions; m > 0 {
		return int64(m)
	}
	return DefaultMaxSessions
}

// evictIdle returns the idle floor for eviction, or a negative duration
// if sessions are never evicted.
func (s *Server) evictIdle() time.Duration {
	if e := s.settings().EvictIdle; e != 0 {
		return e
	}
	return DefaultEvictIdle
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

// Serve runs one event loop per socket of conns until Shutdown or Close.
// It takes ownership of conns (each loop closes its socket when it ends)
// and returns ErrServerClosed once every loop has stopped, or at once if a
// loop could not be set up.
func (s *Server) Serve(conns []*net.UDPConn) error {
	defer s.markStarted()
	s.mu.Lock()
	if s.state.Load() != running {
		s.mu.Unlock()
		closeConns(conns)
		return ErrServerClosed
	}
	s.settings() // the fields, read once, before the loops start
	var loops []*loop
	for i, c := range conns {
		l, err := newLoop(s, c)
		if err != nil {
			s.mu.Unlock()
			for _, l := range loops {
				l.discard()
			}
			closeConns(conns[i:])
			return fmt.Errorf("serving udp %s: %w", c.LocalAddr(), err)
		}
		l.index = len(s.loops) + i
		loops = append(loops, l)
	}
	s.loops = append(s.loops, loops...)
	for _, l := range loops {
		s.wg.Go(l.run)
	}
	s.mu.Unlock()
	s.markStarted()
	s.wg.Wait()
	return ErrServerClosed
}

func closeConns(conns []*net.UDPConn) {
	for _, c := range conns {
		c.Close()
	}
}

// Shutdown stops opening sessions: datagrams of new flows are dropped
// (Stats.DroppedDraining) while live sessions go on both ways until they
// end. It waits for them; when ctx ends first, it ends the rest (logged as
// "drain"), waits for the loops to stop and returns ctx's error.
//
// The sockets stay open while sessions drain because replies must leave
// from the address the clients sent to.
func (s *Server) Shutdown(ctx context.Context) error {
	s.setState(draining)
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.setState(closing)
		<-done
		return ctx.Err()
	}
}

// Close ends every session at once (logged as "drain") and waits for the
// loops to stop.
func (s *Server) Close() error {
	s.setState(closing)
	s.wg.Wait()
	return nil
}

// setState moves the state forward and wakes every loop to act on it.
func (s *Server) setState(st int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state.Load() >= st {
		return
	}
	s.state.Store(st)
	for _, l := range s.loops {
		l.wake()
	}
}

// wakeOthers wakes every loop but l, to look at a request for a place.
func (s *Server) wakeOthers(l *loop) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range s.loops {
		if o != l {
			o.wake()
		}
	}
}

// Stats counts what a Server has done since it started. Datagram counts
// are updated once per batch, so a reading taken while datagrams move may
// lag by a batch.
type Stats struct {
	// Sessions is the number of live sessions.
	Sessions int64
	// FromClients counts datagrams received from clients, ToBackends
	// those sent on to backends, FromBackends replies received and
	// ToClients replies sent on to clients.
	FromClients, ToBackends, FromBackends, ToClients uint64
	// DroppedSessionCap counts datagrams of new flows dropped because
	// MaxSessions sessions were live and none of their socket's had been
	// idle for EvictIdle; they are also logged, at most once a second per
	// socket.
	DroppedSessionCap uint64
	// Evicted counts sessions ended (end=evicted) to make room for a new
	// flow when MaxSessions sessions were live.
	Evicted uint64
	// DroppedNoBackend counts datagrams of new flows dropped because the
	// pool had no backend up.
	DroppedNoBackend uint64
	// DroppedSocket counts datagrams of new flows dropped because no
	// socket to the backend could be opened (out of file descriptors or
	// local ports) or connected (no route to the backend); they are also
	// logged, at most once a second per socket.
	DroppedSocket uint64
	// DroppedDraining counts datagrams of new flows dropped during
	// Shutdown.
	DroppedDraining uint64
	// SendFailed counts datagrams the kernel would not send on (a full
	// socket buffer, or an error from the backend's side).
	SendFailed uint64
	// DroppedPreamble counts datagrams the Preamble refused (a trusted
	// sender's without a valid header, an untrusted one's with one);
	// they are also logged, at most once a second per socket.
	DroppedPreamble uint64
	// DroppedRefused counts datagrams of new flows the Admitter
	// refused, also logged at most once a second per socket.
	DroppedRefused uint64
}

// Stats returns the server's counters, summed over its sockets.
func (s *Server) Stats() Stats {
	st := Stats{Sessions: s.live.Load() - s.lent.Load()}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.loops {
		c := &l.stats
		st.FromClients += c.fromClients.Load()
		st.ToBackends += c.toBackends.Load()
		st.FromBackends += c.fromBackends.Load()
		st.ToClients += c.toClients.Load()
		st.DroppedSessionCap += c.droppedCap.Load()
		st.Evicted += c.evicted.Load()
		st.DroppedNoBackend += c.droppedNoBackend.Load()
		st.DroppedSocket += c.droppedSocket.Load()
		st.DroppedDraining += c.droppedDraining.Load()
		st.SendFailed += c.sendFailed.Load()
		st.DroppedPreamble += c.droppedPreamble.Load()
		st.DroppedRefused += c.droppedRefused.Load()
	}
	return st
}

// counters are one loop's share of Stats, written by the loop alone.
type counters struct {
	fromClients, toBackends, fromBackends, toClients atomic.Uint64
	droppedCap, droppedNoBackend, droppedSocket      atomic.Uint64
	droppedDraining, sendFailed, evicted             atomic.Uint64
	droppedPreamble, droppedRefused                  atomic.Uint64
	// Keeps the next loop's counters off this cache line.
	_ [64]byte
}
