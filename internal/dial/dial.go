// Package dial picks a backend from a pool and connects to it, trying other
// backends after a failure that is the backend's, up to the pool's retries.
// L7's HTTP transport uses it, and goroutine-run connections (TLS, which
// cannot run on l4's event loop) can: all then count failures for passive
// checks and retry the same way.
//
//	b, c, retries, err := dial.TCP(ctx, p, client, 5*time.Second)
//	if err != nil { /* errors.Is(err, dial.ErrNoBackend): nothing to try */ }
//	defer b.Release()
package dial

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"sluice/internal/pool"
)

// Picker is the part of *pool.Pool that choosing backends needs.
type Picker interface {
	Pick(client netip.AddrPort, tried []*pool.Backend) *pool.Backend
	Retries() int
	Unavailable() string
}

var _ Picker = (*pool.Pool)(nil)

// ErrNoBackend is returned when a pool has no backend left to try.
var ErrNoBackend = errors.New("dial: no backend available")

// ConnectError is a failed connect to a backend: refused, unreachable or
// timed out. It counts against the backend and another may be tried.
type ConnectError struct {
	Addr string
	Err  error
}

func (e *ConnectError) Error() string { return fmt.Sprintf("connecting to %s: %v", e.Addr, e.Err) }
func (e *ConnectError) Unwrap() error { return e.Err }

// retryError marks an attempt's error as the backend's fault with nothing
// answered yet, so another backend may be tried.
type retryError struct{ err error }

func (e *retryError) Error() string { return e.err.Error() }
func (e *retryError) Unwrap() error { return e.err }

// Retry wraps err, an attempt's failure, to say that it was the backend's
// fault (a reset before any response byte, say) and that repeating the
// attempt elsewhere is safe. Try counts it against the backend and moves
// on, as it does for a *ConnectError.
func Retry(err error) error { return &retryError{err} }

// Try picks a backend for client and runs attempt on it, acquired (counted
// as live). If attempt fails with a *ConnectError or an error from Retry,
// the backend's failure is reported to passive checks, it is released, and
// another backend is picked, up to p.Retries() more times. On success the
// backend is returned still acquired: the caller releases it when done.
// retries is how many backends failed before the last attempt.
func Try(ctx context.Context, p Picker, client netip.AddrPort, attempt func(*pool.Backend) error) (b *pool.Backend, retries int, err error) {
	// Most requests need no retry; eight tries fit without allocating
	// more.
	var buf [8]*pool.Backend
	return TryIn(ctx, p, client, buf[:0], attempt)
}

// TryIn is Try keeping the backends it tried in tried's array, which
// the caller may reuse from one call to the next: Pick, an interface
// method here, makes Try's own array escape to the heap.
func TryIn(ctx context.Context, p Picker, client netip.AddrPort, tried []*pool.Backend, attempt func(*pool.Backend) error) (b *pool.Backend, retries int, err error) {
	tried = tried[:0]
	var lastErr error
	for range p.Retries() + 1 {
		b := p.Pick(client, tried)
		if b == nil {
			break
		}
		b.Acquire()
		err := attempt(b)
		if err == nil {
			return b, len(tried), nil
		}
		b.Release()
		lastErr = err
		if !retryable(err) {
			return nil, len(tried), err
		}
		tried = append(tried, b)
		if ctx.Err() != nil || localFailure(err) {
			// Out of fds or memory here: other backends would fail
			// the same way, and this one is not to blame.
			break
		}
		b.ReportFailure(err)
	}
	if lastErr == nil {
		return nil, len(tried), noBackend(p)
	}
	return nil, len(tried) - 1, lastErr
}

func retryable(err error) bool {
	var ce *ConnectError
	var re *retryError
	return errors.As(err, &ce) || errors.As(err, &re)
}

// Connect connects to a backend's address with d, returning a
// *ConnectError on failure. An HTTP transport's dial function can be this,
// so the transport's errors say which were connect failures.
func Connect(ctx context.Context, d *net.Dialer, addr string) (*net.TCPConn, error) {
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, &ConnectError{Addr: addr, Err: err}
	}
	return c.(*net.TCPConn), nil
}

// TCP picks a backend for client and connects to it within timeout per
// attempt, trying others after a failed connect. The backend returned is
// acquired and must be released.
func TCP(ctx context.Context, p Picker, client netip.AddrPort, timeout time.Duration) (*pool.Backend, *net.TCPConn, int, error) {
	// No keep-alive probes: the proxy's own timeouts end idle connections.
	d := net.Dialer{Timeout: timeout, KeepAlive: -1}
	var c *net.TCPConn
	b, retries, err := Try(ctx, p, client, func(b *pool.Backend) error {
		var err error
		c, err = Connect(ctx, &d, b.String())
		return err
	})
	return b, c, retries, err
}

// noBackend returns ErrNoBackend with the pool's account of its backends,
// so that the log of a refused request says why.
func noBackend(p Picker) error {
	if why := p.Unavailable(); why != "" {
		return fmt.Errorf("%w: %s", ErrNoBackend, why)
	}
	return ErrNoBackend
}

// localFailure reports whether a connect failed for want of a local
// resource rather than because of the backend.
func localFailure(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}
