package l4

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"sluice/internal/pool"
)

// export stops accepting, keeping the listening socket open, and detaches
// the loop's established connections, in order of last activity (the
// order Import's timer lists want them in).
func (l *loop) export() []Handoff {
	if l.listening {
		epollCtl(l.ep, unix.EPOLL_CTL_DEL, l.lnfd, nil)
		l.listening, l.paused = false, true
	}
	var out []Handoff
	for _, li := range [...]uint8{listOpen, listHalf} {
		for c := l.lists[li].front; c != nil; {
			next := c.next
			if h, ok := l.detach(c); ok {
				out = append(out, h)
			}
			c = next
		}
	}
	return out
}

// detach takes c out of the loop without closing its sockets and returns
// it as a Handoff; false leaves c as it was (its pipe could not be read),
// to finish here.
func (l *loop) detach(c *conn) (Handoff, bool) {
	if c.phase != phaseProxying || c.fd[sideClient] < 0 || c.fd[sideBackend] < 0 {
		return Handoff{}, false
	}
	h := Handoff{Socket: l.index, ClientFD: c.fd[sideClient], BackendFD: c.fd[sideBackend],
		Addr: c.client.Addr, Via: c.client.Via, Local: c.client.Local,
		ServerName: c.client.ServerName, UniqueID: c.client.UniqueID,
		Start: time.Now().Add(c.start - time.Since(l.base)), Idle: l.now - c.last,
		Fin: c.fin, CheckFirst: c.check}
	if c.be != nil {
		h.Backend = c.be.Addr
	}
	for i := range c.dirs {
		d := &c.dirs[i]
		pending, ok := d.drain()
		if !ok {
			return Handoff{}, false
		}
		h.Dirs[i] = HandoffDir{Bytes: d.n, Pending: pending, EOF: d.eof, Done: d.done}
	}
	for _, fd := range c.fd {
		epollCtl(l.ep, unix.EPOLL_CTL_DEL, fd, nil)
	}
	// What finish does, but for closing the sockets and the log line:
	// the connection goes on elsewhere.
	for i := range c.dirs {
		d := &c.dirs[i]
		if d.buf != nil {
			l.putSlab(d.buf)
		}
		if d.p != nil {
			l.putPipe(d.p)
		}
	}
	l.setList(c, listNone)
	if c.be != nil {
		c.be.Release()
	}
	l.s.Counters.handedOff(c.bc)
	if c.admitted {
		l.s.Admit.Done(&c.client)
	}
	l.s.Limiter.release()
	l.s.slots.release()
	*c = conn{slot: c.slot, gen: c.gen + 1, fd: [2]int{-1, -1}, list: listNone}
	l.free = append(l.free, c.slot)
	l.live--
	return h, true
}

// drain returns a copy of the bytes d holds for its destination: its
// pending buffer, then its pipe's contents, which it reads out. False if
// the pipe could not be read whole.
func (d *dir) drain() ([]byte, bool) {
	var b []byte
	if d.buf != nil {
		b = append(b, d.buf[d.off:]...)
	}
	if d.p != nil && d.p.n > 0 {
		start := len(b)
		b = append(b, make([]byte, d.p.n)...)
		for got := 0; got < d.p.n; {
			n, err := unix.Read(d.p.r, b[start+got:])
			if err == unix.EINTR {
				continue
			}
			if err != nil || n <= 0 {
				return nil, false
			}
			got += n
		}
		d.p.n = 0
	}
	return b, true
}

// adoptAll adopts hs (see Server.Import) and returns how many it took.
func (l *loop) adoptAll(hs []Handoff, backend func(netip.AddrPort) *pool.Backend) (int, error) {
	n := 0
	var errs []error
	for _, h := range hs {
		var b *pool.Backend
		if backend != nil {
			b = backend(h.Backend)
		}
		if err := l.adopt(h, b); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// adopt makes h one of the loop's connections, acquiring b (if not nil)
// for it, and gives it a turn at once: its pending bytes go out, and what
// arrived while it moved is read.
func (l *loop) adopt(h Handoff, b *pool.Backend) error {
	if l.s.state.Load() == closing {
		closeHandoff(h)
		return fmt.Errorf("adopting %s: %w", h.Addr, ErrServerClosed)
	}
	if l.closed {
		// Posted as the loop closed, and run by close after finishAll:
		// added now, the sockets would outlive the epoll set and never
		// be closed. (closed is written on this goroutine only.)
		closeHandoff(h)
		return fmt.Errorf("adopting %s: %w", h.Addr, ErrNotServing)
	}
	c := l.alloc()
	c.fd = [2]int{h.ClientFD, h.BackendFD}
	c.phase = phaseProxying
	// Edge-triggered: what the sockets already hold raised no event
	// here, so both sides are taken as ready and tried.
	c.ready = [2]uint8{canRead | canWrite, canRead | canWrite}
	c.start = l.now - time.Since(h.Start)
	c.peer = h.Addr
	if h.Via.IsValid() {
		c.peer = h.Via
	}
	c.client = Client{Addr: h.Addr, Via: h.Via, Local: h.Local, ServerName: h.ServerName, UniqueID: h.UniqueID}
	c.tried = c.triedBuf[:0]
	c.spoke = true // reported to the passive checks where it began
	c.check = h.CheckFirst && l.s.Preamble != nil
	c.fin = h.Fin
	if b != nil {
		b.Acquire()
		c.be = b
	}
	c.bc = l.s.Counters.adopted(h.Backend)
	l.s.slots.take()
	l.s.Limiter.take()
	half := false
	for i := range c.dirs {
		hd, d := h.Dirs[i], &c.dirs[i]
		d.n, d.eof, d.done = hd.Bytes, hd.EOF, hd.Done
		if len(hd.Pending) > 0 {
			d.buf = append(l.getSlab()[:0], hd.Pending...)
		}
		half = half || hd.Done
	}
	li := uint8(listOpen)
	if half {
		li = listHalf
	}
	l.setListAt(c, li, l.now-h.Idle)
	const events = unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET
	for side, fd := range c.fd {
		if err := l.add(fd, c.slot<<1|int32(side), c.gen, events); err != nil {
			l.finish(c, EndDrain, sideClient, fmt.Errorf("adopting a connection: %w", err))
			return fmt.Errorf("adopting %s: %w", h.Addr, err)
		}
	}
	l.process(c)
	return nil
}

// resume accepts again after export, unless the server is stopping.
func (l *loop) resume() {
	if !l.paused || l.s.state.Load() != running {
		return
	}
	if err := l.add(l.lnfd, keyListener, 0, unix.EPOLLIN|unix.EPOLLET); err != nil {
		l.s.logger().Error("accepting again", slog.String("listener", l.s.Name), slog.String("error", err.Error()))
		return
	}
	// Adding raises an event for what waits in the queue.
	l.listening, l.paused = true, false
}

// closeHandoff closes the sockets of a connection that could not be
// adopted, resetting its peers: a FIN would tell them it ended well.
func closeHandoff(h Handoff) {
	for _, fd := range [...]int{h.ClientFD, h.BackendFD} {
		if fd >= 0 {
			lingerZero(fd)
			closeRaw(fd)
		}
	}
}
