package udp

import (
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"sluice/internal/epollpark"
)

// Epoll events carry a slot in their Fd field: a session's index in
// loop.slots, or one of these. The Pad field carries the slot's generation,
// so an event still queued for a session that has just ended is not taken
// for the session that reuses its slot.
const (
	slotWake     = -1
	slotListener = -2
)

// loop is the event loop of one listening socket. It alone touches the
// socket's sessions, so no lock is taken per datagram: the kernel's
// reuse-port hash sends every datagram of a flow to the same socket.
//
// It waits on its own epoll set, which holds the listening socket, every
// session's backend socket and an eventfd that the Server writes to when it
// shuts down (see wait). Backend sockets stay out of Go's poller, so an
// idle session costs its socket and a few hundred bytes, no goroutine: the
// loop's one goroutine wakes for all of them.
type loop struct {
	s       *Server
	conn    *net.UDPConn  // closed by close, when the loop ends
	fd      int           // conn's socket, used directly while conn is open
	family  int           // conn's address family
	pktinfo bool          // datagrams carry their destination (wildcard bind)
	ep      int           // epoll, owned by park once open
	park    epollpark.Set // ep parked in Go's poller (see wait)
	efd     int           // eventfd the Server wakes the loop with
	closed  bool          // efd is closed; guarded by s.mu
	index   int           // the socket's index in the Server's
	reading bool          // fd is in the epoll set (see Server.Held, Export)
	stopped bool          // run has returned: tasks find nothing to do

	// Work for the loop's goroutine (Export, Import, Resume): tasks is
	// guarded by s.mu, asked says it is not empty, read once per wake-up.
	tasks []func(*loop)
	asked atomic.Bool

	events  []unix.EpollEvent
	in      *batch                    // datagrams from clients
	fwd     *batch                    // headers (no buffers) for sending in's datagrams on
	out     *batch                    // replies, received from backends and sent to clients
	dest    [batchSize]*session       // session of each datagram of in; nil: dropped
	off     [batchSize]int            // bytes the Preamble took off each datagram of in
	toward  [batchSize]netip.AddrPort // each datagram's Client.Local, with a Preamble
	local   netip.AddrPort            // the listening socket's address
	client1 Client                    // for the Preamble, see strip
	outSess [batchSize]*session       // the session of each reply of out

	// The headers of one sendmmsg, built from fwd's or out's by
	// coalesce: each takes datagrams sendFrom.. of those, sendSegs of
	// them (more than one: a message cut into segments, with ctls'
	// control messages).
	send     []mmsghdr
	sendFrom [batchSize]int
	sendSegs [batchSize]int
	ctls     [batchSize]gsoCtl

	flows map[flowKey]*session
	slots []*session // by epoll slot; nil when free
	gens  []uint32   // each slot's generation
	free  []int32    // free slots
	idle  idleList

	base      time.Time     // the loop's clock starts here
	now       time.Duration // read once per wake-up
	draining  bool
	drops     warnLimit // new flows dropped
	evictions warnLimit // sessions evicted for new flows
	badPre    warnLimit // datagrams the Preamble refused
	refusals  warnLimit // new flows the Admitter refused

	cf *Settings // the Server's settings, loaded once per wake-up

	stats counters
}

// newLoop prepares the loop for conn. It does not close conn on failure.
func newLoop(s *Server, conn *net.UDPConn) (*loop, error) {
	l := &loop{s: s, cf: s.settings(), conn: conn, ep: -1, efd: -1, flows: make(map[flowKey]*session),
		events: make([]unix.EpollEvent, 128), base: time.Now()}
	l.drops = warnLimit{also: "also_dropped", last: -time.Hour}
	l.evictions = warnLimit{also: "also_evicted", last: -time.Hour}
	l.badPre = warnLimit{also: "also_dropped", last: -time.Hour}
	l.refusals = warnLimit{also: "also_refused", last: -time.Hour}
	l.local = conn.LocalAddr().(*net.UDPAddr).AddrPort()
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	if err := rc.Control(func(fd uintptr) { l.fd = int(fd) }); err != nil {
		return nil, err
	}
	if l.family, err = unix.GetsockoptInt(l.fd, unix.SOL_SOCKET, unix.SO_DOMAIN); err != nil {
		return nil, fmt.Errorf("reading the socket's family: %w", err)
	}
	l.pktinfo = conn.LocalAddr().(*net.UDPAddr).IP.IsUnspecified()
	// Serve holds s.mu.
	l.reading = !s.Held || s.resumed
	if err := l.openEpoll(); err != nil {
		l.closeFDs()
		return nil, err
	}
	// Two iovecs per datagram sent on: a BackendPreamble and the payload.
	l.in, l.fwd, l.out = newBatch(), &batch{hs: make([]mmsghdr, batchSize),
		iovs: make([]unix.Iovec, 2*batchSize)}, newBatch()
	l.send = make([]mmsghdr, batchSize)
	return l, nil
}

func (l *loop) openEpoll() error {
	var err error
	if l.ep, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return fmt.Errorf("creating epoll: %w", err)
	}
	if err := l.park.Open(l.ep, l.events); err != nil {
		return err
	}
	if l.efd, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC); err != nil {
		return fmt.Errorf("creating eventfd: %w", err)
	}
	if err := l.watch(l.efd, slotWake, 0); err != nil {
		return err
	}
	if !l.reading {
		return nil
	}
	// Level-triggered: a batch leaves the rest of the queue for the next
	// round, after the other sockets have had their turn.
	return l.watch(l.fd, slotListener, 0)
}

func (l *loop) watch(fd int, slot int32, gen uint32) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: slot, Pad: int32(gen)}
	if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return fmt.Errorf("adding a socket to epoll: %w", err)
	}
	return nil
}

// wake makes the loop look at the server's state. The caller holds s.mu.
func (l *loop) wake() {
	if l.closed {
		return
	}
	one := [8]byte{1}
	unix.Write(l.efd, one[:])
}

// run serves until the server closes, or drains and no session is left.
func (l *loop) run() {
	defer l.close()
	for {
		n, err := l.wait()
		if err != nil {
			l.s.logger().Error("udp loop stopped", "listener", l.s.Name, "error", err.Error())
			l.endAll(EndDrain)
			return
		}
		l.now = time.Since(l.base)
		l.cf = l.s.settings()
		for _, ev := range l.events[:n] {
			switch ev.Fd {
			case slotWake:
				var buf [8]byte
				unix.Read(l.efd, buf[:])
			case slotListener:
				l.readClients()
			default:
				if s := l.slots[ev.Fd]; s != nil && s.gen == uint32(ev.Pad) {
					l.readReplies(s)
				}
			}
		}
		l.flush()
		if l.asked.Load() {
			l.runTasks()
		}
		l.expire()
		if l.s.wants.Load() != 0 && !l.draining {
			l.lend()
		}
		switch l.s.state.Load() {
		case closing:
			l.endAll(EndDrain)
			return
		case draining:
			l.draining = true
			if len(l.flows) == 0 {
				return
			}
		}
	}
}

// expire ends the sessions idle for the session timeout: those at the
// front of the idle list.
func (l *loop) expire() {
	timeout := l.s.sessionTimeout()
	for s := l.idle.front; s != nil && l.now-s.last >= timeout; s = l.idle.front {
		l.end(s, EndIdleTimeout, nil)
	}
}

func (l *loop) endAll(e End) {
	l.now = time.Since(l.base)
	for s := l.idle.front; s != nil; s = l.idle.front {
		l.end(s, e, nil)
	}
}

// close ends what is left and releases the loop's sockets once it has
// stopped.
func (l *loop) close() {
	l.endAll(EndDrain)
	l.conn.Close()
	l.stopped = true
	// Under s.mu, so that wake never writes to a closed (or reused) fd,
	// and no task is posted that would not run.
	l.s.mu.Lock()
	l.closeFDs()
	tasks := l.tasks
	l.tasks = nil
	l.s.mu.Unlock()
	for _, f := range tasks {
		f(l)
	}
}

// discard releases a loop that never ran and that the server does not
// know of.
func (l *loop) discard() {
	l.conn.Close()
	l.closeFDs()
}

func (l *loop) closeFDs() {
	if l.efd >= 0 {
		unix.Close(l.efd)
	}
	switch {
	case l.park.Opened():
		l.park.Close()
	case l.ep >= 0:
		unix.Close(l.ep)
	}
	l.closed = true
}
