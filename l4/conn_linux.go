package l4

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"sluice/internal/pool"
)

// Sides of a connection, indexes of conn.fd and conn.ready. Direction i
// of conn.dirs reads side i and writes the other.
const (
	sideClient  = 0
	sideBackend = 1
)

// Phases of a connection.
const (
	phasePreamble   = iota // reading the client's preamble
	phaseConnecting        // connecting to a backend
	phaseProxying          // moving bytes
)

// Readiness bits, per side, from epoll's edge-triggered events: set by an
// event, cleared when a call finds the socket empty (or full).
const (
	canRead  = 1 << iota // bytes or an end to read
	canWrite             // room to write
	sawRdhup             // the peer has sent FIN (EPOLLRDHUP)
	sawErr               // EPOLLERR or EPOLLHUP
	sawUrg               // urgent data (EPOLLPRI): a read stops short at its mark
)

// conn is one proxied connection. Only its loop touches it. Structs are
// reused for new connections: gen tells them apart.
type conn struct {
	slot   int32
	gen    uint32
	fd     [2]int // client, backend; -1 when not open
	ready  [2]uint8
	phase  uint8
	list   uint8 // its timer list
	queued bool  // in loop.again
	spoke  bool  // the backend has sent bytes
	fin    End   // EndClientClosed or EndBackendClosed: who sent FIN first

	dirs [2]dir // client to backend, backend to client

	prev, next *conn         // in its timer list
	last       time.Duration // last activity, on the loop's clock
	start      time.Duration // accepted, on the loop's clock

	client   Client
	peer     netip.AddrPort   // the socket's peer
	admitted bool             // Admit.Done is due
	check    bool             // the client's first bytes go to Preamble before they go on
	be       *pool.Backend    // acquired; nil until connecting
	connAt   time.Duration    // the last connect attempt began, on the loop's clock
	bc       *BackendCounters // be's counters, once connected (nil without Counters)
	tried    []*pool.Backend
	triedBuf [4]*pool.Backend
	lastErr  error // why the last connect attempt failed
}

// mark records the readiness an event reports for one side.
func (c *conn) mark(side int, ev uint32) {
	var r uint8
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP) != 0 {
		r |= canRead
	}
	if ev&unix.EPOLLOUT != 0 {
		r |= canWrite
	}
	if ev&(unix.EPOLLRDHUP|unix.EPOLLHUP) != 0 {
		r |= sawRdhup
	}
	if ev&unix.EPOLLPRI != 0 {
		// A read stops at the urgent mark (RFC 9293 section
		// 3.8.5), however much follows it: a short read no longer
		// means the socket is empty.
		r |= canRead | sawUrg
	}
	if ev&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		// The calls that follow find the error.
		r |= canRead | canWrite | sawErr
	}
	c.ready[side] |= r
}

// open starts serving an accepted client socket.
func (l *loop) open(fd int, peer netip.AddrPort) {
	if l.s.Terminate != nil {
		l.s.handOff(fd, peer)
		return
	}
	l.s.Counters.accepted()
	c := l.alloc()
	c.fd = [2]int{fd, -1}
	c.ready = [2]uint8{canWrite, 0}
	c.start = l.now
	c.peer = peer
	c.client = Client{Addr: peer}
	c.tried = c.triedBuf[:0]
	const events = unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLPRI | unix.EPOLLET
	if err := l.add(fd, c.slot<<1|sideClient, c.gen, events); err != nil {
		l.finish(c, EndClientReset, sideClient, err)
		return
	}
	if p := l.s.Preamble; p != nil {
		if _, err := p.ParsePreamble(nil, &c.client); err == nil {
			// No preamble from this client: connect at once, and
			// check its first bytes as they go on.
			c.check = true
		} else {
			c.phase = phasePreamble
			l.setList(c, listPreamble)
			return
		}
	}
	l.admit(c)
}

func (l *loop) alloc() *conn {
	var c *conn
	if n := len(l.free); n > 0 {
		c = l.conns[l.free[n-1]]
		l.free = l.free[:n-1]
	} else {
		c = &conn{slot: int32(len(l.conns))}
		l.conns = append(l.conns, c)
	}
	c.list = listNone
	l.live++
	return c
}

// process acts on what the events marked on c.
func (l *loop) process(c *conn) {
	switch c.phase {
	case phasePreamble:
		if c.ready[sideClient]&canRead != 0 {
			l.readPreamble(c)
		}
	case phaseConnecting:
		if c.ready[sideBackend]&(canWrite|sawErr) != 0 {
			l.connected(c)
		}
	case phaseProxying:
		l.proxy(c)
	}
}

// readPreamble peeks at what the client has sent and hands it to the
// Preamble parser; once it has a whole preamble, consumes it and goes on.
func (l *loop) readPreamble(c *conn) {
	fd := c.fd[sideClient]
	n, e := recvRaw(fd, l.buf, unix.MSG_PEEK)
	switch {
	case e == unix.EAGAIN || e == unix.EINTR:
		c.ready[sideClient] &^= canRead
		return
	case e != 0:
		l.finish(c, EndClientReset, -1, fmt.Errorf("reading the preamble: %w", e))
		return
	case n == 0:
		l.finish(c, EndClientClosed, -1, errors.New("the client closed before its preamble"))
		return
	}
	m, err := l.s.Preamble.ParsePreamble(l.buf[:n], &c.client)
	switch {
	case errors.Is(err, ErrNeedMore):
		if n == len(l.buf) || c.ready[sideClient]&sawRdhup != 0 {
			l.finish(c, EndBadPreamble, sideClient, fmt.Errorf("no complete preamble in %d bytes", n))
			return
		}
		// Edge-triggered: the next bytes raise a new event.
		c.ready[sideClient] &^= canRead
		return
	case err != nil:
		l.finish(c, EndBadPreamble, sideClient, fmt.Errorf("reading the preamble: %w", err))
		return
	case m < 0 || m > n:
		l.finish(c, EndBadPreamble, sideClient, fmt.Errorf("preamble parser returned %d of %d bytes", m, n))
		return
	}
	if m > 0 {
		if k, e := recvRaw(fd, l.buf[:m], 0); k != m {
			l.finish(c, EndClientReset, sideClient, fmt.Errorf("consuming the preamble: %d of %d bytes: %w", k, m, e))
			return
		}
	}
	if c.client.Addr != c.peer && !c.client.Via.IsValid() {
		c.client.Via = c.peer
	}
	l.admit(c)
}

// admit asks the Admitter, if any, then connects.
func (l *loop) admit(c *conn) {
	if a := l.s.Admit; a != nil {
		if err := a.Admit(&c.client); err != nil {
			l.finish(c, refusal(err), sideClient, err)
			return
		}
		c.admitted = true
	}
	c.phase = phaseConnecting
	l.connect(c)
}

// connect picks a backend and starts connecting to it, trying others after
// a failure, up to the pool's retries. The result comes as an event.
func (l *loop) connect(c *conn) {
	p := l.s.Pool
	if c.client.Pool != nil {
		p = c.client.Pool // chosen by the preamble (SNI routing)
	}
	for {
		var b *pool.Backend
		if len(c.tried) <= p.Retries() {
			b = p.Pick(c.client.Addr, c.tried)
		}
		if b == nil {
			if c.lastErr == nil {
				l.finish(c, EndNoBackend, sideClient, noBackend(p))
			} else {
				l.finish(c, EndConnectFailed, sideClient, c.lastErr)
			}
			return
		}
		b.Acquire()
		fd, e := connectRaw(b.Addr, l.s.BackendKeepAlive)
		if e == 0 || e == unix.EINPROGRESS {
			const events = unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLPRI | unix.EPOLLET
			if err := l.add(fd, c.slot<<1|sideBackend, c.gen, events); err != nil {
				closeRaw(fd)
				b.Release()
				l.finish(c, EndConnectFailed, sideClient, err)
				return
			}
			c.be, c.fd[sideBackend], c.ready[sideBackend] = b, fd, 0
			c.connAt = l.now
			l.setList(c, listConnect)
			return
		}
		b.Release()
		if !l.attemptFailed(c, b, e) {
			return
		}
	}
}

// attemptFailed records a failed connect to b and reports whether to try
// another backend.
func (l *loop) attemptFailed(c *conn, b *pool.Backend, e unix.Errno) bool {
	err := fmt.Errorf("connecting to %s: %w", b, e)
	c.tried = append(c.tried, b)
	c.lastErr = err
	if localFailure(e) {
		// Out of fds or memory here: other backends would fail the
		// same way, and this one is not to blame.
		l.finish(c, EndConnectFailed, sideClient, err)
		return false
	}
	b.ReportFailure(err)
	return true
}

// localFailure reports whether a connect failed for want of a local
// resource rather than because of the backend.
func localFailure(e unix.Errno) bool {
	return e == unix.EMFILE || e == unix.ENFILE || e == unix.ENOBUFS || e == unix.ENOMEM
}

// connected handles the end of a connect attempt: an error retries, else
// the connection is established and proxies.
func (l *loop) connected(c *conn) {
	if c.ready[sideBackend]&sawErr != 0 {
		e := socketError(c.fd[sideBackend])
		if e == 0 {
			e = unix.ECONNRESET
		}
		l.retry(c, e)
		return
	}
	// EPOLLOUT without EPOLLERR or EPOLLHUP means connected: no need to
	// read SO_ERROR.
	c.phase = phaseProxying
	l.setList(c, listOpen)
	c.bc = l.s.Counters.connected(c.be.Addr, l.now-c.connAt)
	if c.be.Closing() {
		// The backend went down, in a pool that closes its
		// connections, after Pick: CloseBackend may have passed this
		// connection over while it was connecting.
		l.finish(c, EndBackendDown, sideClient, nil)
		return
	}
	if bp := l.s.BackendPreamble; bp != nil {
		if !c.client.Local.IsValid() {
			c.client.Local = localAddr(c.fd[sideClient])
		}
		d := &c.dirs[sideClient]
		d.buf = bp.AppendBackendPreamble(l.getSlab()[:0], &c.client)
		// bytes_in counts the client's bytes only: start below zero
		// by what is not the client's.
		d.n = -int64(len(d.buf))
		if len(d.buf) == 0 {
			l.putSlab(d.buf)
			d.buf = nil
		}
	}
	l.proxy(c)
}

// retry closes a failed connect attempt and tries the next backend.
func (l *loop) retry(c *conn, e unix.Errno) {
	b := c.be
	closeRaw(c.fd[sideBackend])
	c.fd[sideBackend], c.ready[sideBackend], c.be = -1, 0, nil
	b.Release()
	if l.attemptFailed(c, b, e) {
		l.connect(c)
	}
}

// timedOut acts on c's timeout.
func (l *loop) timedOut(c *conn) {
	switch c.list {
	case listPreamble:
		l.finish(c, EndPreambleTimeout, sideClient, errors.New("no complete preamble within the preamble timeout"))
	case listConnect:
		l.retry(c, unix.ETIMEDOUT)
	case listOpen:
		l.finish(c, EndIdleTimeout, -1, nil)
	case listHalf:
		l.finish(c, EndHalfClosedTimeout, -1, nil)
	}
}

// closeBackend ends the connections to b: its health checks marked it down
// in a pool that closes its connections then.
func (l *loop) closeBackend(b *pool.Backend) {
	for _, c := range l.conns {
		if c != nil && c.be == b {
			l.finish(c, EndBackendDown, sideClient, nil)
		}
	}
}

// closeOne ends one connection to b (any, for nil b) for the drain, and
// reports whether there was one. The search goes on from where the last
// one stopped, so a paced drain does not rescan closed slots each time.
func (l *loop) closeOne(b *pool.Backend) bool {
	n := len(l.conns)
	for i := range n {
		k := (l.drainAt + i) % n
		c := l.conns[k]
		if c != nil && c.fd[sideClient] >= 0 && (b == nil || c.be == b) {
			l.drainAt = k + 1
			l.drop(c, EndDrain, nil)
			return true
		}
	}
	return false
}

// drop ends c for e from outside its data path (drain): a connection not
// yet given a backend is reset, as one that cannot be given one is.
func (l *loop) drop(c *conn, e End, err error) {
	if c.fd[sideClient] < 0 {
		return // free slot
	}
	rst := -1
	if c.phase != phaseProxying {
		rst = sideClient
	}
	l.finish(c, e, rst, err)
}

// finish is the one place where a connection ends: it resets side rst (if
// not -1) so that a reset seen on one side reaches the other as a reset,
// closes both sockets, releases what the connection held and logs it.
func (l *loop) finish(c *conn, e End, rst int, err error) {
	if rst >= 0 && c.fd[rst] >= 0 {
		lingerZero(c.fd[rst])
	}
	for i, fd := range c.fd {
		if fd >= 0 {
			// Closing also takes it out of the epoll set.
			closeRaw(fd)
		}
		d := &c.dirs[i]
		if d.buf != nil {
			l.putSlab(d.buf)
		}
		if d.p != nil {
			l.putPipe(d.p)
		}
	}
	l.setList(c, listNone)
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
		l.s.Admit.Done(&c.client)
	}
	l.s.Limiter.release()
	l.s.slots.release()
	// Retries: the failed attempts before the one that connected, or
	// after the first when none did.
	retries := len(c.tried)
	if backend == "" && e == EndConnectFailed {
		retries = max(0, retries-1)
	}
	// bytes_in started below zero by a BackendPreamble, which goes
	// before any of the client's bytes: short of it, none went.
	in := max(c.dirs[0].n, 0)
	d := time.Since(l.base) - c.start
	l.s.Counters.ended(c.bc, addr, e, in, c.dirs[1].n, d, retries)
	l.s.logEnd(&c.client, backend, e, in, c.dirs[1].n, d, retries, err)
	*c = conn{slot: c.slot, gen: c.gen + 1, fd: [2]int{-1, -1}, list: listNone}
	l.free = append(l.free, c.slot)
	l.live--
}

// errBackendReset is what a connection the backend reset reports to the
// pool's passive checks.
var errBackendReset = errors.New("connection reset by backend")
