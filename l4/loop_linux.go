package l4

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"sluice/internal/epollpark"
)

// Epoll events carry a key in their Fd field: a connection's slot in
// loop.conns shifted left once, plus its side (0: client, 1: backend), or
// one of these. The Pad field carries the slot's generation, so an event
// still queued for a connection that has just ended is not taken for the
// connection that reuses its slot.
const (
	keyWake     = -1
	keyListener = -2
)

// Accepting stops after this many connections in a row, so that the
// connections already open get their turn; the rest are accepted after.
const maxAccepts = 64

// bufSize is the loop's buffer for small messages, and the read size past
// which a direction switches to splice.
const bufSize = 64 << 10

// maxIdleSlabs is how many pending-write buffers a loop keeps for reuse.
const maxIdleSlabs = 16

// loop is the event loop of one listening socket: it accepts, connects and
// moves the bytes of every connection accepted there, on one goroutine,
// without a lock per connection. Its connections are in its own epoll set,
// edge-triggered, which the goroutine waits on through Go's poller (see
// wait); the Server reaches it through an eventfd (post and wake).
type loop struct {
	s      *Server
	index  int              // of its listening socket in Serve's list, for Handoff.Socket
	ln     *net.TCPListener // closed by the loop when it stops accepting
	lnfd   int
	ep     int
	efd    int
	accept func(fd int) (int, netip.AddrPort, error)

	events []unix.EpollEvent
	buf    []byte   // every read of a small message lands here
	slabs  [][]byte // spare pending-write buffers
	pipes  []*pipe  // spare empty pipes

	conns   []*conn // by slot; nil when free
	free    []int32 // free slots
	live    int
	drainAt int // where closeOne looks first
	lists   [nLists]connList
	again   []queued // connections with work left after their turn

	listening  bool
	paused     bool          // not listening, its socket kept open: Export, until Resume or the end
	acceptMore bool          // the accept queue may hold connections
	slotWait   bool          // waiting for a Limiter's wake-up to accept again
	acceptAt   time.Duration // no accept before this, after an accept error
	backoff    time.Duration

	park epollpark.Set // ep parked in Go's poller (see wait); owns ep once open

	base time.Time
	now  time.Duration // since base, read once per wake-up

	mu     sync.Mutex // guards closed and posts, for other goroutines
	closed bool
	posts  []func(*loop)
}

// queued is a connection put back for another turn; gen tells whether it
// is still the same connection when its turn comes.
type queued struct {
	c   *conn
	gen uint32
}

func newLoop(s *Server, ln *net.TCPListener) (*loop, error) {
	l := &loop{s: s, ln: ln, ep: -1, efd: -1, events: make([]unix.EpollEvent, 256),
		buf: make([]byte, bufSize), base: time.Now(), accept: accept4Raw}
	if s.accept4 != nil {
		l.accept = s.accept4
	}
	rc, err := ln.SyscallConn()
	if err != nil {
		return nil, err
	}
	if err := rc.Control(func(fd uintptr) { l.lnfd = int(fd) }); err != nil {
		return nil, err
	}
	// Accepted sockets inherit TCP_NODELAY from the listening one: set
	// once instead of once per connection. package listen sets it before
	// listen; this is for other listeners, whose connections queued
	// before Serve miss it.
	if e := setInt(l.lnfd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); e != 0 {
		return nil, fmt.Errorf("setting TCP_NODELAY on the listening socket: %w", e)
	}
	// Keep-alive probes are inherited the same way; cleared when off, as
	// the socket may come from a configuration that had them.
	if e := setKeepAlive(l.lnfd, s.ClientKeepAlive, true); e != 0 {
		return nil, fmt.Errorf("setting keep-alive probes on the listening socket: %w", e)
	}
	if l.ep, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, fmt.Errorf("creating epoll: %w", err)
	}
	if err := l.park.Open(l.ep, l.events); err != nil {
		unix.Close(l.ep)
		return nil, err
	}
	if l.efd, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC); err != nil {
		unix.Close(l.ep)
		return nil, fmt.Errorf("creating eventfd: %w", err)
	}
	if err := l.add(l.efd, keyWake, 0, unix.EPOLLIN); err != nil {
		l.closeFDs()
		return nil, err
	}
	if err := l.add(l.lnfd, keyListener, 0, unix.EPOLLIN|unix.EPOLLET); err != nil {
		l.closeFDs()
		return nil, err
	}
	// No acceptMore yet: adding a listener whose queue already holds
	// connections raises an event at once.
	l.listening = true
	to := [nLists]time.Duration{s.preambleTimeout(), s.connectTimeout(), s.idleTimeout(), s.halfClosedTimeout()}
	for i := range l.lists {
		l.lists[i].timeout = to[i]
	}
	return l, nil
}

func (l *loop) add(fd int, key int32, gen uint32, events uint32) error {
	ev := unix.EpollEvent{Events: events, Fd: key, Pad: int32(gen)}
	if e := epollCtl(l.ep, unix.EPOLL_CTL_ADD, fd, &ev); e != 0 {
		return fmt.Errorf("adding a socket to epoll: %w", e)
	}
	return nil
}

// wake makes the loop look at the server's state and at its Limiters.
// Any goroutine may call it.
func (l *loop) wake() {
	l.mu.Lock()
	if !l.closed {
		one := [8]byte{1}
		unix.Write(l.efd, one[:])
	}
	l.mu.Unlock()
}

// post runs f on the loop's goroutine. It reports false if the loop has
// stopped.
func (l *loop) post(f func(*loop)) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.posts = append(l.posts, f)
	one := [8]byte{1}
	unix.Write(l.efd, one[:])
	return true
}

// run serves until the server closes, or drains and no connection is left.
func (l *loop) run() {
	defer l.close()
	for {
		n, err := l.wait()
		if err != nil {
			l.s.logger().Error("tcp loop stopped", slog.String("listener", l.s.Name),
				slog.String("error", err.Error()))
			return
		}
		l.now = time.Since(l.base)
		for _, ev := range l.events[:n] {
			switch ev.Fd {
			case keyWake:
				l.woken()
			case keyListener:
				l.acceptMore = true
			default:
				c := l.conns[ev.Fd>>1]
				if c != nil && c.gen == uint32(ev.Pad) {
					c.mark(int(ev.Fd&1), ev.Events)
					l.process(c)
				}
			}
		}
		l.turns()
		if l.canAccept() {
			l.acceptAll()
		}
		l.expire()
		switch l.s.state.Load() {
		case draining:
			l.stopListening()
			if l.live == 0 {
				return
			}
		case closing:
			return
		}
	}
}

// woken handles the eventfd: work posted by other goroutines, and a
// Limiter's wake-up.
func (l *loop) woken() {
	var b [8]byte
	unix.Read(l.efd, b[:])
	l.mu.Lock()
	posts := l.posts
	l.posts = nil
	l.mu.Unlock()
	for _, f := range posts {
		f(l)
	}
	l.slotWait = false
}

// turns gives the connections put back for another turn that turn.
func (l *loop) turns() {
	for len(l.again) > 0 {
		again := l.again
		l.again = nil
		for _, q := range again {
			if q.c.gen == q.gen {
				q.c.queued = false
				l.process(q.c)
			}
		}
		if len(l.again) > 0 {
			// Put back again: wait for events first (without
			// blocking), so that no connection starves the others.
			return
		}
	}
}

func (l *loop) requeue(c *conn) {
	if !c.queued {
		c.queued = true
		l.again = append(l.again, queued{c, c.gen})
	}
}

func (l *loop) canAccept() bool {
	return l.listening && l.acceptMore && !l.slotWait && l.now >= l.acceptAt
}

// stopListening closes the listening socket, once.
func (l *loop) stopListening() {
	if !l.listening && !l.paused {
		return
	}
	if l.listening {
		epollCtl(l.ep, unix.EPOLL_CTL_DEL, l.lnfd, nil)
	}
	l.listening, l.paused = false, false
	l.ln.Close()
}

// close ends what is left and releases the loop's resources once it has
// stopped.
func (l *loop) close() {
	l.stopListening()
	l.finishAll()
	l.mu.Lock()
	l.closed = true
	posts := l.posts
	l.posts = nil
	l.mu.Unlock()
	// Work posted before the loop closed still runs (on an empty loop),
	// so that whoever waits for it is not left waiting.
	for _, f := range posts {
		f(l)
	}
	l.closeFDs()
	for _, p := range l.pipes {
		p.close()
	}
	l.pipes = nil
}

func (l *loop) closeFDs() {
	if l.efd >= 0 {
		unix.Close(l.efd)
		l.efd = -1
	}
	switch {
	case l.park.Opened():
		l.park.Close()
		l.ep = -1
	case l.ep >= 0:
		unix.Close(l.ep)
		l.ep = -1
	}
}

// finishAll ends every live connection: the server is closing.
func (l *loop) finishAll() {
	for _, c := range l.conns {
		if c != nil {
			l.drop(c, EndDrain, nil)
		}
	}
}

func (l *loop) getSlab() []byte {
	if n := len(l.slabs); n > 0 {
		b := l.slabs[n-1]
		l.slabs = l.slabs[:n-1]
		return b
	}
	return make([]byte, bufSize)
}

func (l *loop) putSlab(b []byte) {
	if len(l.slabs) < maxIdleSlabs {
		l.slabs = append(l.slabs, b[:cap(b)])
	}
}
