package l4

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"

	"sluice/internal/pool"
)

// conn is one proxied connection. While both directions are idle it is
// parked: no goroutine and no pipe, only this struct, its two sockets and a
// timer.
type conn struct {
	s       *Server
	sh      *shard
	id      uint64 // key in sh.conns and in the parker's events
	client  side
	backend side
	be      *pool.Backend
	peer    netip.AddrPort
	start   time.Time
	retries int
	timer   atomic.Pointer[time.Timer] // idle and half-closed timeouts

	dirs [2]dir       // client to backend, backend to client
	live atomic.Int32 // directions not yet done

	last atomic.Int64  // nanoseconds after start when bytes last moved
	half atomic.Bool   // one side has sent FIN
	end  atomic.Uint32 // the End that aborted the connection, if any
	fin  atomic.Uint32 // EndClientClosed or EndBackendClosed: who sent FIN first
}

// init sets up the directions. It runs before the connection is added to
// its shard, whose lock then orders these writes before any wake-up.
func (c *conn) init() {
	c.dirs[0] = dir{c: c, src: &c.client, dst: &c.backend, index: 0}
	c.dirs[1] = dir{c: c, src: &c.backend, dst: &c.client, index: 1}
	c.live.Store(2)
}

// run proxies both directions from the calling goroutine and one more; each
// may park and resume on other goroutines, and the last to finish
// finalizes the connection.
func (c *conn) run() {
	// The timer is created far in the future and only then armed, so its
	// callback can never see it unset.
	c.timer.Store(time.AfterFunc(time.Duration(1<<62), c.checkIdle))
	c.timer.Load().Reset(c.s.idleTimeout())
	go c.dirs[1].run()
	c.dirs[0].run()
}

// touch records that bytes moved, which pushes the idle timeout back. The
// timer is not reset per chunk: checkIdle looks at this when it fires.
func (c *conn) touch(now time.Duration) {
	c.last.Store(int64(now))
}

// timeout is the inactivity the connection is allowed in its current state.
func (c *conn) timeout() time.Duration {
	if c.half.Load() {
		return c.s.halfClosedTimeout()
	}
	return c.s.idleTimeout()
}

// checkIdle runs when the timer fires: it re-arms the timer if bytes moved
// since it was set, and otherwise ends the connection.
func (c *conn) checkIdle() {
	due := time.Duration(c.last.Load()) + c.timeout()
	if left := due - time.Since(c.start); left > 0 {
		c.timer.Load().Reset(left)
		return
	}
	if c.half.Load() {
		c.abort(EndHalfClosedTimeout, nil)
	} else {
		c.abort(EndIdleTimeout, nil)
	}
}

// abort ends the connection at once for reason e, resetting rst (if not
// nil) so that a reset seen on one side reaches the other as a reset rather
// than as a FIN. Only the first abort counts. Running directions see their
// sockets closed and finish; parked ones are finished here.
func (c *conn) abort(e End, rst *side) {
	if !c.end.CompareAndSwap(uint32(EndNone), uint32(e)) {
		return
	}
	if rst != nil {
		rst.c.SetLinger(0)
	}
	c.client.c.Close()
	c.backend.c.Close()
	for i := range c.dirs {
		if c.dirs[i].state.CompareAndSwap(dirParked, dirDone) {
			c.finishOne()
		}
	}
}

// finishOne counts a finished direction and finalizes after the second.
func (c *conn) finishOne() {
	if c.live.Add(-1) == 0 {
		c.finalize()
	}
}

// finalize closes the connection and releases what it held.
func (c *conn) finalize() {
	c.timer.Load().Stop()
	c.client.c.Close()
	c.backend.c.Close()
	c.sh.remove(c)
	c.be.Release()
	if c.ended() == EndBackendReset {
		c.be.ReportFailure(errBackendReset)
	}
	c.s.logEnd(c, c.be.String(), c.ended(), c.dirs[0].n, c.dirs[1].n, c.retries, nil)
	c.s.done()
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
	// No keep-alive probes, as on the client side (see package listen).
	d := net.Dialer{Timeout: s.connectTimeout(), KeepAlive: -1}
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
		if ctx.Err() != nil || localFailure(err) {
			// Out of fds or memory here: other backends would fail
			// the same way, and this one is not to blame.
			break
		}
		b.ReportFailure(err)
	}
	if lastErr == nil {
		return nil, nil, len(tried), noBackend(s.Pool)
	}
	return nil, nil, len(tried) - 1, lastErr
}

// noBackend returns ErrNoBackend with the pool's account of its backends,
// so that the log of a refused connection says why.
func noBackend(p Picker) error {
	if why := p.Unavailable(); why != "" {
		return fmt.Errorf("%w: %s", ErrNoBackend, why)
	}
	return ErrNoBackend
}

// errBackendReset is what a connection the backend reset reports to the
// pool's passive checks.
var errBackendReset = errors.New("connection reset by backend")

// localFailure reports whether a connect failed for want of a local
// resource rather than because of the backend.
func localFailure(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
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
