package l4

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	pick "sluice/internal/dial"
	"sluice/internal/pool"
)

// termConn is a connection run on goroutines (a Terminator's): its
// goroutine owns it from handOff to finish; other goroutines only abort it.
type termConn struct {
	s      *Server
	raw    [2]*net.TCPConn // client and backend sockets
	stream [2]net.Conn     // what is read and written: TLS over raw, or raw
	cl     Client
	start  time.Time
	ctx    context.Context
	cancel context.CancelFunc

	mu   sync.Mutex // guards be and raw[sideBackend] against abort
	be   *pool.Backend
	end  atomic.Uint32    // an End forced by abort; EndNone if none
	bc   *BackendCounters // be's counters, once connected (the owner's alone)
	took time.Duration    // the successful connect's dial

	last       atomic.Int64 // time of the last byte moved, since start
	halfClosed atomic.Bool
	first      atomic.Int32 // the direction (source side) that ended first
	stop       atomic.Bool  // set by the first to end, unless by its source's end
	n          [2]int64     // bytes per direction, each its goroutine's own
	admitted   bool
	retries    int
}

// handOff takes an accepted socket off the event loop to a goroutine. The
// loop has taken its slots; finish releases them.
func (s *Server) handOff(fd int, peer netip.AddrPort) {
	f := os.NewFile(uintptr(fd), "")
	nc, err := net.FileConn(f) // a dup: f's own fd is closed below
	f.Close()
	if err != nil {
		s.Limiter.release()
		s.slots.release()
		s.logger().Warn("accept failed", slog.String("listener", s.Name), slog.String("error", err.Error()))
		return
	}
	s.Counters.accepted()
	ctx, cancel := context.WithCancel(context.Background())
	c := &termConn{s: s, cl: Client{Addr: peer}, start: time.Now(), ctx: ctx, cancel: cancel}
	c.raw[sideClient] = nc.(*net.TCPConn)
	// The loop that calls this is one of s.running's, so the count
	// cannot be zero here: Add before Wait holds.
	s.running.Go(c.serve)
}

// serve runs the connection to its end.
func (c *termConn) serve() {
	s := c.s
	if !s.terms.add(c) {
		c.finish(EndDrain, sideClient, nil)
		return
	}
	defer s.terms.remove(c)
	if e, err := c.open(); e != EndNone {
		rst := sideClient // refused, as the loop refuses: a reset
		if e == EndHandshakeFailed {
			// A FIN: the TLS alert or PostgreSQL error just
			// written must reach the client, which a reset could
			// discard unread.
			rst = -1
		}
		c.finish(e, rst, err)
		return
	}
	e, rst, err := c.proxy()
	c.finish(e, rst, err)
}

// open admits the client, terminates its protocol, and connects to a
// backend; a non-None End says why it could not.
func (c *termConn) open() (End, error) {
	s := c.s
	if e, err := c.preamble(); e != EndNone {
		return e, err
	}
	if a := s.Admit; a != nil {
		if err := a.Admit(&c.cl); err != nil {
			return refusal(err), err
		}
		c.admitted = true
	}
	raw := c.raw[sideClient]
	raw.SetDeadline(time.Now().Add(s.handshakeTimeout()))
	stream, first, err := s.Terminate.Terminate(raw, &c.cl)
	if err != nil {
		return c.forced(EndHandshakeFailed), fmt.Errorf("client handshake: %w", err)
	}
	raw.SetDeadline(time.Time{})
	c.stream[sideClient] = stream
	if e, err := c.connect(); e != EndNone {
		return e, err
	}
	if bp := s.BackendPreamble; bp != nil {
		c.cl.Local = raw.LocalAddr().(*net.TCPAddr).AddrPort()
		pre := bp.AppendBackendPreamble(nil, &c.cl)
		if _, err := c.stream[sideBackend].Write(pre); err != nil {
			return c.forced(EndBackendReset), fmt.Errorf("writing to backend: %w", err)
		}
	}
	if len(first) > 0 {
		if _, err := c.stream[sideBackend].Write(first); err != nil {
			return c.forced(EndBackendReset), fmt.Errorf("writing to backend: %w", err)
		}
		c.n[sideClient] += int64(len(first))
	}
	if n, ok := s.Terminate.(Negotiator); ok {
		return c.negotiate(n)
	}
	return EndNone, nil
}

// negotiate runs a Negotiator's exchange between the connected sides.
func (c *termConn) negotiate(n Negotiator) (End, error) {
	deadline := time.Now().Add(c.s.handshakeTimeout())
	c.raw[sideClient].SetDeadline(deadline)
	c.raw[sideBackend].SetDeadline(deadline)
	if e := End(c.end.Load()); e != EndNone {
		return e, nil // aborted before the deadlines were set, which undid its own
	}
	cs, bs, err := n.Negotiate(c.stream[sideClient], c.stream[sideBackend], &c.cl)
	if _, ok := errors.AsType[*BackendError](err); ok {
		return c.forced(EndBackendReset), fmt.Errorf("negotiating with backend: %w", err)
	}
	if err != nil {
		return c.forced(EndHandshakeFailed), fmt.Errorf("client handshake: %w", err)
	}
	c.raw[sideClient].SetDeadline(time.Time{})
	c.raw[sideBackend].SetDeadline(time.Time{})
	c.stream[sideClient], c.stream[sideBackend] = cs, bs
	return End(c.end.Load()), nil // EndNone unless aborted meanwhile
}

// connect picks and connects to a backend (with retries, reporting to
// passive checks, as the loop does), and starts it.
func (c *termConn) connect() (End, error) {
	s := c.s
	d := net.Dialer{Timeout: s.connectTimeout(), KeepAlive: -1, KeepAliveConfig: s.BackendKeepAlive.dialerConfig()}
	var p pick.Picker = s.Pool
	if c.cl.Pool != nil {
		p = c.cl.Pool
	}
	b, retries, err := pick.Try(c.ctx, p, c.cl.Addr, func(b *pool.Backend) error {
		t0 := time.Now()
		bc, err := pick.Connect(c.ctx, &d, b.String())
		if err != nil {
			return err
		}
		c.took = time.Since(t0)
		st := net.Conn(bc)
		if bs := s.BackendStart; bs != nil {
			bc.SetDeadline(time.Now().Add(s.connectTimeout()))
			if st, err = bs.StartBackend(bc, &c.cl); err != nil {
				bc.Close()
				return pick.Retry(fmt.Errorf("starting %s: %w", b, err))
			}
			bc.SetDeadline(time.Time{})
		}
		c.mu.Lock()
		c.raw[sideBackend], c.stream[sideBackend] = bc, st
		c.mu.Unlock()
		return nil
	})
	c.retries = retries
	switch {
	case errors.Is(err, pick.ErrNoBackend):
		return c.forced(EndNoBackend), err
	case err != nil:
		return c.forced(EndConnectFailed), err
	}
	c.mu.Lock()
	c.be = b
	c.mu.Unlock()
	c.bc = s.Counters.connected(b.Addr, c.took)
	if e := End(c.end.Load()); e != EndNone {
		return e, nil // aborted while connecting
	}
	if b.Closing() {
		// Marked down after Pick, in a pool that closes its
		// connections: CloseBackend may have passed this one over.
		return EndBackendDown, nil
	}
	return EndNone, nil
}

// forced returns the End abort set, if any, else e: a handshake cut short
// by the drain is logged as the drain.
func (c *termConn) forced(e End) End {
	if f := End(c.end.Load()); f != EndNone {
		return f
	}
	return e
}

// abort ends the connection from another goroutine: it records e and
// wakes whatever the owner waits for, which then finishes.
func (c *termConn) abort(e End) {
	if !c.end.CompareAndSwap(uint32(EndNone), uint32(e)) {
		return
	}
	c.cancel()
	past := time.Unix(1, 0)
	c.raw[sideClient].SetDeadline(past)
	c.mu.Lock()
	if b := c.raw[sideBackend]; b != nil {
		b.SetDeadline(past)
	}
	c.mu.Unlock()
}

func (c *termConn) backend() *pool.Backend {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.be
}

// finish is the one place the connection ends: it resets side rst (if not
// -1), closes both sockets, releases what it held and logs it.
func (c *termConn) finish(e End, rst int, err error) {
	s := c.s
	if rst >= 0 && c.raw[rst] != nil {
		c.raw[rst].SetLinger(0)
	}
	// The raw sockets, not the TLS streams: a close_notify, if due, went
	// with the half-close, and one written now could block on a peer
	// that reads nothing.
	for _, r := range c.raw {
		if r != nil {
			r.Close()
		}
	}
	c.cancel()
	backend := ""
	var addr netip.AddrPort
	if c.be != nil {
		backend, addr = c.be.String(), c.be.Addr
		c.be.Release()
		if e == EndBackendReset {
			c.be.ReportFailure(errBackendReset)
		}
	}
	if c.admitted {
		s.Admit.Done(&c.cl)
	}
	s.Limiter.release()
	s.slots.release()
	d := time.Since(c.start)
	s.Counters.ended(c.bc, addr, e, c.n[sideClient], c.n[sideBackend], d, c.retries)
	s.logEnd(&c.cl, backend, e, c.n[sideClient], c.n[sideBackend], d, c.retries, err)
}
