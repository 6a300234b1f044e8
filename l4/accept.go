package l4

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Accept errors back off from minBackoff to maxBackoff, doubling, as
// net/http's server does: EMFILE and friends repeat until something
// changes, and retrying at once would spin a core.
const (
	minBackoff = 5 * time.Millisecond
	maxBackoff = time.Second
)

// accept runs one accept loop until the listener is closed.
func (s *Server) accept(ln *net.TCPListener, sh *shard) {
	var backoff time.Duration
	for {
		c, err := ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = min(max(2*backoff, minBackoff), maxBackoff)
			s.logger().Warn("accept failed", slog.String("listener", s.Name),
				slog.String("error", err.Error()), slog.Duration("retry_in", backoff))
			if !s.sleep(backoff) {
				return
			}
			continue
		}
		backoff = 0
		if !s.slots.acquire(s.stop) {
			c.Close()
			return
		}
		s.conns.Go(func() {
			defer s.slots.release()
			s.serve(c, sh)
		})
	}
}

// sleep waits for d, or reports false at once if the server is stopping.
func (s *Server) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.stop:
		return false
	}
}

// serve proxies one accepted connection from start to log line.
func (s *Server) serve(client *net.TCPConn, sh *shard) {
	c := &conn{s: s, start: time.Now()}
	c.peer = client.RemoteAddr().(*net.TCPAddr).AddrPort()
	be, bc, retries, err := s.dial(s.force, c.peer)
	if err != nil {
		client.Close()
		e := EndConnectFailed
		switch {
		case errors.Is(err, ErrNoBackend):
			e = EndNoBackend
		case s.force.Err() != nil:
			e = EndDrain
		}
		s.logEnd(c, "", e, 0, 0, retries, err)
		return
	}
	defer be.Release()
	c.be = be
	var err1, err2 error
	c.client, err1 = newSide(client)
	c.backend, err2 = newSide(bc)
	if err := errors.Join(err1, err2); err != nil {
		client.Close()
		bc.Close()
		s.logEnd(c, be.String(), EndClientReset, 0, 0, retries, err)
		return
	}
	if !sh.add(c) {
		// Shutdown's force phase already swept this shard.
		client.Close()
		bc.Close()
		s.logEnd(c, be.String(), EndDrain, 0, 0, retries, nil)
		return
	}
	in, out := c.proxy()
	sh.remove(c)
	s.logEnd(c, be.String(), c.ended(), in, out, retries, nil)
}

// shard tracks the live connections of one accept loop, so shutdown can
// close them. One shard per loop keeps connections of different loops off
// each other's lock.
type shard struct {
	mu     sync.Mutex
	closed bool
	conns  map[*conn]struct{}
}

func (sh *shard) add(c *conn) bool {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.closed {
		return false
	}
	sh.conns[c] = struct{}{}
	return true
}

func (sh *shard) remove(c *conn) {
	sh.mu.Lock()
	delete(sh.conns, c)
	sh.mu.Unlock()
}

// each calls f on every live connection and refuses new ones from then on.
func (sh *shard) each(f func(*conn)) {
	sh.mu.Lock()
	sh.closed = true
	cs := make([]*conn, 0, len(sh.conns))
	for c := range sh.conns {
		cs = append(cs, c)
	}
	sh.mu.Unlock()
	for _, c := range cs {
		f(c)
	}
}

// limiter caps live connections without a lock on the fast path: a
// connection takes a slot with one atomic add. Only when the cap is reached
// does an accept loop wait, on wake.
type limiter struct {
	max  int64 // zero: no limit
	n    atomic.Int64
	wake chan struct{} // buffered, size 1
}

// acquire takes a slot, waiting while none is free. It reports false if
// stop closes first.
func (l *limiter) acquire(stop <-chan struct{}) bool {
	if l.max <= 0 {
		return true
	}
	for {
		if n := l.n.Add(1); n <= l.max {
			if n < l.max {
				// Several releases may have left only one token in
				// wake; pass the turn on to any other waiter.
				l.signal()
			}
			return true
		}
		l.n.Add(-1)
		select {
		case <-l.wake:
		case <-stop:
			return false
		}
	}
}

func (l *limiter) release() {
	if l.max <= 0 {
		return
	}
	l.n.Add(-1)
	l.signal()
}

func (l *limiter) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}
