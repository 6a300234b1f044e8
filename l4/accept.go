package l4

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"sluice/internal/pool"
)

// Accept errors back off from minBackoff to maxBackoff, doubling, as
// net/http's server does: EMFILE and friends repeat until something
// changes, and retrying at once would spin a core.
const (
	minBackoff = 5 * time.Millisecond
	maxBackoff = time.Second
)

// acceptor is what an accept loop needs of its listener.
type acceptor interface {
	AcceptTCP() (*net.TCPConn, error)
}

var _ acceptor = (*net.TCPListener)(nil)

// accept runs one accept loop until the listener is closed.
func (s *Server) accept(ln acceptor, sh *shard) {
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
		if !s.Limiter.acquire(s.stop) {
			s.slots.release()
			c.Close()
			return
		}
		s.conns.Add(1)
		go s.serve(c, sh)
	}
}

// done releases what an accepted connection held in the server, once it
// has ended one way or another.
func (s *Server) done() {
	s.Limiter.release()
	s.slots.release()
	s.conns.Done()
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

// serve connects an accepted client to a backend, then proxies it.
func (s *Server) serve(client *net.TCPConn, sh *shard) {
	c := &conn{s: s, sh: sh, start: time.Now()}
	c.peer = client.RemoteAddr().(*net.TCPAddr).AddrPort()
	fail := func(backend string, e End, err error) {
		client.Close()
		s.logEnd(c, backend, e, 0, 0, c.retries, err)
		s.done()
	}
	be, bc, retries, err := s.dial(s.force, c.peer)
	c.retries = retries
	if err != nil {
		e := EndConnectFailed
		switch {
		case errors.Is(err, ErrNoBackend):
			e = EndNoBackend
		case s.force.Err() != nil:
			e = EndDrain
		}
		fail("", e, err)
		return
	}
	c.be = be
	var err1, err2 error
	c.client, err1 = newSide(client)
	c.backend, err2 = newSide(bc)
	if err := errors.Join(err1, err2); err != nil {
		bc.Close()
		be.Release()
		fail(be.String(), EndClientReset, err)
		return
	}
	c.init()
	if !sh.add(c) {
		// Shutdown's force phase already swept this shard.
		bc.Close()
		be.Release()
		fail(be.String(), EndDrain, nil)
		return
	}
	if be.Closing() {
		// The backend went down, in a pool that closes its connections,
		// after Pick: CloseBackend may have swept the shard before this
		// connection was in it. Aborted before run, it runs to its end
		// at once.
		c.abort(EndBackendDown, &c.client)
	}
	c.run()
}

// CloseBackend closes every live connection to b, resetting its client,
// logged with end=backend_down. Wire it to pool.(*Pool).OnDown where a
// backend's health checks marking it down must cut its clients off (such
// as a demoted primary). It may be called from any goroutine.
func (s *Server) CloseBackend(b *pool.Backend) {
	s.mu.Lock()
	shards := s.shards
	s.mu.Unlock()
	for _, sh := range shards {
		for _, c := range sh.find(b) {
			c.abort(EndBackendDown, &c.client)
		}
	}
}

// shard tracks the live connections of one accept loop, so that shutdown
// can close them and the parker can find the ones it wakes. One shard per
// loop keeps connections of different loops off each other's lock.
type shard struct {
	parker *parker // nil: connections never park

	mu     sync.Mutex
	closed bool
	nextID uint64
	conns  map[uint64]*conn
}

func (sh *shard) add(c *conn) bool {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.closed {
		return false
	}
	sh.nextID++
	c.id = sh.nextID
	sh.conns[c.id] = c
	return true
}

func (sh *shard) remove(c *conn) {
	sh.mu.Lock()
	delete(sh.conns, c.id)
	sh.mu.Unlock()
}

// find returns the live connections to b.
func (sh *shard) find(b *pool.Backend) []*conn {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	var cs []*conn
	for _, c := range sh.conns {
		if c.be == b {
			cs = append(cs, c)
		}
	}
	return cs
}

// wake resumes the parked direction that key names, if its connection
// still exists.
func (sh *shard) wake(key uint64) {
	sh.mu.Lock()
	c := sh.conns[key>>1]
	sh.mu.Unlock()
	if c != nil {
		c.dirs[key&1].wake()
	}
}

// each calls f on every live connection and refuses new ones from then on.
func (sh *shard) each(f func(*conn)) {
	sh.mu.Lock()
	sh.closed = true
	cs := make([]*conn, 0, len(sh.conns))
	for _, c := range sh.conns {
		cs = append(cs, c)
	}
	sh.mu.Unlock()
	for _, c := range cs {
		f(c)
	}
}
