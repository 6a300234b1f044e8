package l4

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"sluice/internal/pool"
)

// conn is one proxied connection. It holds what an idle connection needs
// and nothing more: its two sockets, its backend and a few counters.
type conn struct {
	s       *Server
	client  side
	backend side
	be      *pool.Backend
	peer    netip.AddrPort
	start   time.Time

	last atomic.Int64  // nanoseconds after start when bytes last moved
	half atomic.Bool   // one side has sent FIN
	end  atomic.Uint32 // the End that aborted the connection, if any
	fin  atomic.Uint32 // EndClientClosed or EndBackendClosed: who sent FIN first
}

// touch records that bytes moved, which pushes the idle deadline back. It
// is an atomic store rather than a SetDeadline call per read, which would
// reset runtime timers on every chunk; deadlines are moved only when they
// fire (see extend).
func (c *conn) touch() {
	c.last.Store(int64(time.Since(c.start)))
}

// timeout is the inactivity the connection is allowed in its current state.
func (c *conn) timeout() time.Duration {
	if c.half.Load() {
		return c.s.halfClosedTimeout()
	}
	return c.s.idleTimeout()
}

// arm sets the read and write deadlines of both sockets.
func (c *conn) arm(t time.Time) {
	c.client.c.SetDeadline(t)
	c.backend.c.SetDeadline(t)
}

// extend is called when a deadline fires. If bytes moved since it was set,
// it moves the deadlines to the new end of the allowed inactivity and reports
// true; otherwise the connection has timed out.
func (c *conn) extend() bool {
	due := time.Duration(c.last.Load()) + c.timeout()
	if time.Since(c.start) >= due {
		return false
	}
	c.arm(c.start.Add(due))
	return true
}

// abort ends the connection at once for reason e, resetting rst (if not
// nil) so that a reset seen on one side reaches the other as a reset rather
// than as a FIN. Only the first abort counts.
func (c *conn) abort(e End, rst *side) {
	if !c.end.CompareAndSwap(uint32(EndNone), uint32(e)) {
		return
	}
	if rst != nil {
		rst.c.SetLinger(0)
	}
	c.client.c.Close()
	c.backend.c.Close()
}

// proxy runs both directions and returns the bytes each carried.
func (c *conn) proxy() (in, out int64) {
	c.arm(c.start.Add(c.s.idleTimeout()))
	var wg sync.WaitGroup
	wg.Go(func() { out = c.direction(&c.backend, &c.client, false) })
	in = c.direction(&c.client, &c.backend, true)
	wg.Wait()
	c.client.c.Close()
	c.backend.c.Close()
	return in, out
}

// direction copies src to dst and then acts on how the copy ended.
func (c *conn) direction(src, dst *side, fromClient bool) int64 {
	n, why, _ := c.pump(src, dst)
	srcEnd, dstEnd := EndBackendReset, EndClientReset
	if fromClient {
		srcEnd, dstEnd = EndClientReset, EndBackendReset
	}
	switch why {
	case stopEOF:
		fin := EndBackendClosed
		if fromClient {
			fin = EndClientClosed
		}
		c.fin.CompareAndSwap(uint32(EndNone), uint32(fin))
		// Pass the FIN on and keep the other direction flowing: the peer
		// may still be answering (half-close, RFC 9293 section 3.6).
		if err := dst.c.CloseWrite(); err != nil {
			c.abort(dstEnd, src)
			return n
		}
		c.half.Store(true)
		c.touch()
		c.arm(time.Now().Add(c.s.halfClosedTimeout()))
	case stopSrcErr:
		c.abort(srcEnd, dst)
	case stopDstErr:
		c.abort(dstEnd, src)
	case stopTimeout:
		if c.half.Load() {
			c.abort(EndHalfClosedTimeout, nil)
		} else {
			c.abort(EndIdleTimeout, nil)
		}
	}
	return n
}

// ended returns why the connection ended, once both directions are done.
func (c *conn) ended() End {
	if e := End(c.end.Load()); e != EndNone {
		return e
	}
	return End(c.fin.Load())
}

// dial picks a backend for the client and connects to it, trying other
// backends after a failure, up to the pool's retries. The backend returned
// has been acquired (counted as live) and must be released.
func (s *Server) dial(ctx context.Context, client netip.AddrPort) (*pool.Backend, *net.TCPConn, int, error) {
	var buf [8]*pool.Backend
	tried := buf[:0]
	var lastErr error
	d := net.Dialer{Timeout: s.connectTimeout()}
	for attempt := 0; attempt <= s.Pool.Retries(); attempt++ {
		b := s.Pool.Pick(client, tried)
		if b == nil {
			break
		}
		b.Acquire()
		c, err := d.DialContext(ctx, "tcp", b.String())
		if err == nil {
			return b, c.(*net.TCPConn), attempt, nil
		}
		b.Release()
		lastErr = err
		tried = append(tried, b)
		if ctx.Err() != nil {
			break
		}
	}
	if lastErr == nil {
		return nil, nil, len(tried), ErrNoBackend
	}
	return nil, nil, len(tried) - 1, lastErr
}

// ErrNoBackend is returned (and logged) when a pool has no backend to try.
var ErrNoBackend = errors.New("l4: no backend available")

// logEnd writes the one log line of a connection.
func (s *Server) logEnd(c *conn, backend string, e End, in, out int64, retries int, err error) {
	log := s.logger()
	if !log.Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	attrs := []slog.Attr{
		slog.String("listener", s.Name),
		slog.String("client", c.peer.String()),
		slog.String("backend", backend),
		slog.Int64("bytes_in", in),
		slog.Int64("bytes_out", out),
		slog.Duration("duration", time.Since(c.start)),
		slog.String("end", e.String()),
	}
	if retries > 0 {
		attrs = append(attrs, slog.Int("retries", retries))
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	log.LogAttrs(context.Background(), slog.LevelInfo, "connection", attrs...)
}
