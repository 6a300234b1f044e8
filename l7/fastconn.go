package l7

import (
	crand "crypto/rand"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"sluice/internal/pool"
)

// inBufSize is a client connection's read buffer: request heads are parsed
// in it in place. A head that does not fit, under MaxHeaderBytes, is
// handed to net/http, which reads larger ones.
const inBufSize = 16 << 10

var inBufs = sync.Pool{New: func() any { return new([inBufSize]byte) }}

// Connection states, for the drain: an idle connection is woken and closed,
// a busy one closes after its response.
const (
	connBusy int32 = iota
	connIdle
)

// fastConn is one client connection on the fast path. Its goroutine owns
// it; other goroutines only wake it (wakeIfIdle) or close its sockets
// (abort).
type fastConn struct {
	s       *Server
	c       *net.TCPConn
	release func() // MaxConnections slot; nil without a cap
	peer    netip.AddrPort
	buf     *[inBufSize]byte
	in      []byte // buf[:]
	start   int    // unconsumed bytes are in[start:end]
	end     int
	state   atomic.Int32
	backend atomic.Pointer[net.TCPConn] // in use, for abort
	aborted atomic.Bool
	rng     *rand.ChaCha8 // request IDs without a system call each
	rdl     time.Time     // c's read deadline, as armRead set it
	served  int           // requests answered
	handed  bool          // the connection went to net/http

	h       reqHead
	ex      exchange
	status  int
	bytesIn int64
	out     int64 // response bytes written to the client
	close   bool  // close after this response
	idBuf   [32]byte
	pathBuf []byte    // the unescaped path, when the target has escapes
	vals    [8]string // Values' answer
	bufs    *fastBufs // lent for a forwarded request
	f       fwd
	tried   [8]*pool.Backend // dial.TryIn's
	date    dateCache
}

// fastConns keeps connection states with their buffers and random
// streams for the next connection: a new connection then costs no
// allocation and no getrandom call of ours.
var fastConns = sync.Pool{New: func() any {
	fc := &fastConn{buf: new([inBufSize]byte)}
	fc.in = fc.buf[:]
	var seed [32]byte
	crand.Read(seed[:])
	fc.rng = rand.NewChaCha8(seed)
	return fc
}}

// serveConn serves one client connection until it closes, or hands it to
// net/http.
func (s *Server) serveConn(c *net.TCPConn, release func()) {
	fc := fastConns.Get().(*fastConn)
	fc.s, fc.c, fc.release = s, c, release
	fc.peer = netip.AddrPort{}
	if ta, _ := c.RemoteAddr().(*net.TCPAddr); ta != nil {
		ap := ta.AddrPort()
		fc.peer = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	s.fast.conns.Store(fc, struct{}{})
	fc.serve()
	s.fast.conns.Delete(fc)
	if !fc.handed {
		c.Close()
		if release != nil {
			release()
		}
	}
	fc.reset()
	fastConns.Put(fc)
}

// reset clears what a connection leaves in its state, keeping the
// buffers and the random stream.
func (fc *fastConn) reset() {
	fc.s, fc.c, fc.release = nil, nil, nil
	fc.start, fc.end, fc.served = 0, 0, 0
	fc.rdl = time.Time{}
	fc.handed, fc.close = false, false
	fc.state.Store(connBusy)
	fc.backend.Store(nil)
	fc.aborted.Store(false)
	fc.ex, fc.f, fc.tried = exchange{}, fwd{}, [8]*pool.Backend{}
}

// serve runs the request loop until the connection ends or goes to
// net/http (fc.handed).
func (fc *fastConn) serve() {
	for {
		switch fc.readHead() {
		case headHandOff:
			fc.handOff()
			return
		case headNeedMore: // closed, timed out, or refused with 431
			return
		}
		if !fc.serveRequest() {
			return
		}
	}
}

// readHead reads until in[start:] holds a whole request head.
func (fc *fastConn) readHead() headStatus {
	s := fc.s
	max := orDefault(s.MaxHeaderBytes, DefaultMaxHeaderBytes)
	var headStart time.Time
	for {
		if fc.end > fc.start {
			switch parseHead(fc.in[fc.start:fc.end], &fc.h) {
			case headOK:
				if fc.h.size > max {
					fc.refuseHead(http.StatusRequestHeaderFieldsTooLarge)
					return headNeedMore
				}
				return headOK
			case headHandOff:
				return headHandOff
			}
			if fc.end-fc.start > max {
				fc.refuseHead(http.StatusRequestHeaderFieldsTooLarge)
				return headNeedMore
			}
		}
		if fc.start > 0 {
			fc.end = copy(fc.in, fc.in[fc.start:fc.end])
			fc.start = 0
		}
		if fc.end == len(fc.in) {
			if fc.end > max {
				fc.refuseHead(http.StatusRequestHeaderFieldsTooLarge)
				return headNeedMore
			}
			return headHandOff // net/http reads heads this large
		}
		idle := fc.end == 0
		if idle {
			fc.state.Store(connIdle)
			if s.fast.draining.Load() {
				return headNeedMore
			}
			if d := orDefault(s.IdleTimeout, DefaultIdleTimeout); d > 0 {
				armRead(fc.c, &fc.rdl, time.Now().Add(d), min(d/8, time.Second))
			}
		} else if headStart.IsZero() {
			headStart = time.Now()
			if d := orDefault(s.ReadHeaderTimeout, DefaultReadHeaderTimeout); d > 0 {
				armRead(fc.c, &fc.rdl, headStart.Add(d), 0)
			}
		}
		n, err := fc.c.Read(fc.in[fc.end:])
		fc.state.Store(connBusy)
		fc.end += n
		if err != nil && n == 0 {
			return headNeedMore
		}
		if idle && s.fast.draining.Load() {
			fc.close = true // answer this one, then close
		}
	}
}

// refuseHead answers a head we will not read (431) and ends the
// connection, as net/http does.
func (fc *fastConn) refuseHead(status int) {
	fc.c.SetWriteDeadline(time.Now().Add(time.Second))
	fc.c.Write([]byte("HTTP/1.1 " + strconv.Itoa(status) + " " + http.StatusText(status) +
		"\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n" + strconv.Itoa(status) + " " + http.StatusText(status)))
}

// handOff gives the connection, with the bytes read and not answered, to
// net/http for the rest of its life.
func (fc *fastConn) handOff() {
	fc.c.SetReadDeadline(time.Time{})
	fc.handed = true
	fc.s.fast.handoffs.Add(1)
	hc := &handoffConn{Conn: fc.c, pending: append([]byte(nil), fc.in[fc.start:fc.end]...), release: fc.release}
	fc.s.fast.handoff.give(hc)
}

// wakeIfIdle makes an idle connection's read return, so that it sees the
// drain and closes.
func (fc *fastConn) wakeIfIdle() {
	if fc.state.Load() == connIdle {
		fc.c.SetReadDeadline(time.Now())
	}
}

// abort closes the connection's sockets from another goroutine: the drain
// ran out.
func (fc *fastConn) abort() {
	fc.aborted.Store(true)
	fc.c.Close()
	if b := fc.backend.Load(); b != nil {
		b.Close()
	}
}

// serveRequest answers the head in fc.h; it reports whether the
// connection goes on.
func (fc *fastConn) serveRequest() bool {
	s, h := fc.s, &fc.h
	fc.ex = exchange{start: time.Now(), peer: fc.peer}
	fc.status, fc.bytesIn, fc.out = 0, 0, 0
	fc.close = fc.close || h.close || h.upgrade
	ex := &fc.ex
	ex.client = fc.peer
	if len(s.TrustedProxies) > 0 {
		ex.client = s.realClient(fc.peer, fc)
	}
	ex.id = fc.requestID()
	path, ok := fc.unescapedPath()
	if !ok {
		return fc.handOffRequest()
	}
	s.Counters.started()
	keep := fc.route(path)
	if fc.status == -1 {
		if s.Counters != nil {
			s.Counters.current.Add(-1) // net/http counts it
		}
		return fc.handOffRequest()
	}
	fc.count()
	fc.logRequest(path)
	fc.backend.Store(nil)
	return keep && !fc.close
}

// handOffRequest hands the connection over with the request in hand, which
// the fast path has not answered; it reports false (the fast path is done
// with the connection) after arranging that serve hands it off.
func (fc *fastConn) handOffRequest() bool {
	fc.handOff()
	return false
}

// armRead sets c's read deadline to at, unless the one set already (*cur)
// falls within slack before it: re-arming a timer for every request costs
// more than a deadline a little early, the trade l4's loop timers make.
func armRead(c *net.TCPConn, cur *time.Time, at time.Time, slack time.Duration) {
	if !cur.IsZero() && !cur.After(at) && !cur.Before(at.Add(-slack)) {
		return
	}
	*cur = at
	c.SetReadDeadline(at)
}

// clearRead removes c's read deadline.
func clearRead(c *net.TCPConn, cur *time.Time) {
	if !cur.IsZero() {
		*cur = time.Time{}
		c.SetReadDeadline(time.Time{})
	}
}
