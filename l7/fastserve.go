package l7

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// The HTTP/1.1 fast path serves plain (not TLS) listeners: an accept loop
// per socket, one goroutine per client connection that parses request
// heads in place and forwards them over pooled keep-alive backend
// connections (fastconn.go, fastforward.go). A connection whose request
// it does not handle (see parseHead and fastRoute) is handed to the
// listener's net/http server, with the bytes already read, for the rest
// of its life: that server accepts from handoffListener.

// fastState is the fast path's share of a Server.
type fastState struct {
	mu        sync.Mutex
	listeners []*net.TCPListener
	closed    bool        // Shutdown began: new listeners are closed at once
	draining  atomic.Bool // connections close after their request in flight
	conns     sync.Map    // *fastConn → struct{}: for the drain and the forced close
	running   sync.WaitGroup
	handoff   *handoffListener
	handoffs  atomic.Int64 // connections given to net/http (tests read it)
	reaper    sync.WaitGroup
}

// fastPath reports whether s serves HTTP/1.1 itself.
func (s *Server) fastPath() bool { return s.TLS == nil && !s.NetHTTPOnly }

// serveFast runs the accept loops and the net/http server that takes
// handed-off connections, until Shutdown.
func (s *Server) serveFast(lns []*net.TCPListener) error {
	f := &s.fast
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		for _, ln := range lns {
			ln.Close()
		}
		return nil
	}
	f.listeners = append(f.listeners, lns...)
	f.mu.Unlock()
	var slots chan struct{}
	if s.MaxConnections > 0 {
		slots = make(chan struct{}, s.MaxConnections)
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(lns)+1)
	wg.Go(func() {
		if err := s.srv.Serve(f.handoff); !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, errHandoffClosed) {
			errs <- err
		}
	})
	f.reaper.Go(s.runReaper)
	for _, ln := range lns {
		wg.Go(func() { errs <- s.acceptLoop(ln, slots) })
	}
	wg.Wait()
	close(errs)
	var err error
	for e := range errs {
		err = errors.Join(err, e)
	}
	return err
}

// acceptLoop accepts client connections until ln is closed. Past
// MaxConnections it stops accepting: new clients wait in the kernel's
// accept queue. Errors such as EMFILE back off as net/http does.
func (s *Server) acceptLoop(ln *net.TCPListener, slots chan struct{}) error {
	var backoff time.Duration
	for {
		if slots != nil {
			select {
			case slots <- struct{}{}:
			case <-s.base.Done():
				return nil
			}
		}
		c, err := ln.AcceptTCP()
		if err != nil {
			if slots != nil {
				<-slots
			}
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.logger().Warn("accepting an HTTP connection", "listener", s.Name, "error", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-s.base.Done():
				return nil
			}
			continue
		}
		backoff = 0
		var release func()
		if slots != nil {
			release = func() { <-slots }
		}
		s.fast.running.Go(func() { s.serveConn(c, release) })
	}
}

// shutdownFast closes the listeners and asks each connection to close
// once its request in flight is answered; idle ones close at once.
func (s *Server) shutdownFast() {
	f := &s.fast
	f.mu.Lock()
	f.closed = true
	for _, ln := range f.listeners {
		ln.Close()
	}
	f.mu.Unlock()
	f.draining.Store(true)
	f.conns.Range(func(k, _ any) bool {
		k.(*fastConn).wakeIfIdle()
		return true
	})
}

// closeFast closes every fast-path connection, upgraded ones too, when the
// drain ran out.
func (s *Server) closeFast() {
	s.fast.conns.Range(func(k, _ any) bool {
		k.(*fastConn).abort()
		return true
	})
}

// waitFast waits for the fast path's connections or ctx.
func (s *Server) waitFast(ctx context.Context) error { return waitCtx(ctx, &s.fast.running) }

var errHandoffClosed = errors.New("l7: handoff listener closed")

// handoffListener gives net/http the connections the fast path hands off.
type handoffListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newHandoffListener() *handoffListener {
	return &handoffListener{addr: &net.TCPAddr{}, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, errHandoffClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }

// give hands c to net/http, or closes it if the server is shutting down.
func (l *handoffListener) give(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		c.Close()
	}
}

// handoffConn is a client connection net/http takes over: the bytes the
// fast path read come first. It holds a net.Conn, not a *net.TCPConn, so
// that no ReadFrom or WriteTo of the TCP connection's can skip them.
type handoffConn struct {
	net.Conn
	pending []byte
	release func() // gives back the connection's MaxConnections slot
	once    sync.Once
}

func (c *handoffConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

func (c *handoffConn) Close() error {
	err := c.Conn.Close()
	if c.release != nil {
		c.once.Do(c.release)
	}
	return err
}
