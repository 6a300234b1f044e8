package udp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"sluice/internal/pool"
)

// key is the session's flow key, as parseKey and strip made it.
func (h *Handoff) key() flowKey {
	k := flowKey{client: h.Client.Addr().As16(), port: h.Client.Port(), zone: h.Zone}
	if h.Via.IsValid() {
		k.via, k.viaPort = h.Via.Addr().As16(), h.Via.Port()
	}
	if h.Local.IsValid() {
		k.local = h.Local.As16()
	}
	return k
}

// post queues f to run on the loop's goroutine at its next wake-up (or
// as it stops), and wakes it. False if the loop has stopped: f will not
// run.
func (l *loop) post(f func(*loop)) bool {
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	if l.closed {
		return false
	}
	l.tasks = append(l.tasks, f)
	l.asked.Store(true)
	l.wake()
	return true
}

// runTasks runs what post queued.
func (l *loop) runTasks() {
	l.s.mu.Lock()
	tasks := l.tasks
	l.tasks = nil
	l.asked.Store(false)
	l.s.mu.Unlock()
	for _, f := range tasks {
		f(l)
	}
}

// export stops reading the listening socket, which stays open, and
// detaches every session, least recently active first.
func (l *loop) export() []Handoff {
	if l.stopped {
		return nil
	}
	if l.reading {
		unix.EpollCtl(l.ep, unix.EPOLL_CTL_DEL, l.fd, nil)
		l.reading = false
	}
	var out []Handoff
	for s := l.idle.front; s != nil; s = l.idle.front {
		out = append(out, l.detach(s))
	}
	return out
}

// detach takes s out of the loop without closing its socket and returns
// it as a Handoff.
func (l *loop) detach(s *session) Handoff {
	_, ifindex := destination(s.source())
	h := Handoff{Socket: l.index, FD: s.fd, Client: s.key.clientAddr(), Via: s.key.viaAddr(), Zone: s.key.zone,
		IfIndex: ifindex, Backend: s.be.Addr, Preamble: s.pre, Start: l.base.Add(s.start), Idle: l.now - s.last,
		Replies: s.replies, DatagramsIn: s.dgIn, DatagramsOut: s.dgOut, BytesIn: s.in, BytesOut: s.out}
	if s.key.local != ([16]byte{}) {
		h.Local = netip.AddrFrom16(s.key.local).Unmap()
	}
	// An epoll set keeps watching a socket that another process
	// holds a copy of: it must leave the set before it goes.
	unix.EpollCtl(l.ep, unix.EPOLL_CTL_DEL, s.fd, nil)
	// What end does, but for closing the socket and the log line: the
	// session goes on elsewhere.
	delete(l.flows, s.key)
	l.idle.remove(s)
	l.slots[s.slot] = nil
	l.free = append(l.free, s.slot)
	s.fd = -1
	s.be.Release()
	l.s.live.Add(-1)
	l.s.Counters.handedOff(s.bc)
	return h
}

// resume reads the listening socket again.
func (l *loop) resume() {
	if l.stopped || l.reading {
		return
	}
	// Level-triggered: what waits in the queue raises an event at once.
	if err := l.watch(l.fd, slotListener, 0); err != nil {
		l.s.logger().Error("reading udp again", slog.String("listener", l.s.Name), slog.String("error", err.Error()))
		return
	}
	l.reading = true
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
			unix.Close(h.FD)
			errs = append(errs, fmt.Errorf("adopting the udp session of %s: %w", h.Client, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// errFlowTaken: the loop has a session of the flow already.
var errFlowTaken = errors.New("the flow has a session here already")

// adopt makes h one of the loop's sessions, on backend b. What its socket
// holds already is read at the next wake-up: the socket is level-triggered.
func (l *loop) adopt(h Handoff, b *pool.Backend) error {
	switch {
	case l.stopped:
		return ErrServerClosed
	case b == nil:
		return fmt.Errorf("backend %s: %w", h.Backend, errNoSuchBackend)
	}
	k := h.key()
	if l.flows[k] != nil {
		return errFlowTaken
	}
	s := &session{key: k, be: b, fd: h.FD, pre: h.Preamble, start: l.now - time.Since(h.Start),
		replies: h.Replies, dgIn: h.DatagramsIn, dgOut: h.DatagramsOut, in: h.BytesIn, out: h.BytesOut}
	s.last = l.now - h.Idle
	var err error
	if s.name, s.namelen, err = rawSockaddr(l.family, h.peer(), h.Zone); err != nil {
		return err
	}
	s.setSource(l.family, k.local, h.IfIndex)
	if err := l.place(s); err != nil {
		return err
	}
	l.idle.insert(s)
	b.Acquire()
	l.s.live.Add(1)
	s.bc = l.s.Counters.opened(b.Addr)
	return nil
}

// errNoSuchBackend: a handed-over session's backend is in none of this
// process's pools.
var errNoSuchBackend = errors.New("not in this process's pools")

// rawSockaddr returns a as recvmmsg gives a sender's address on a socket
// of family: IPv4 clients of an IPv6 socket v4-mapped.
func rawSockaddr(family int, a netip.AddrPort, zone uint32) (unix.RawSockaddrInet6, uint32, error) {
	var sa unix.RawSockaddrInet6
	if family == unix.AF_INET {
		ip := a.Addr().Unmap()
		if !ip.Is4() {
			return sa, 0, fmt.Errorf("client %s on an IPv4 socket", a)
		}
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(&sa))
		sa4.Family = unix.AF_INET
		sa4.Addr = ip.As4()
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa4.Port))[:], a.Port())
		return sa, unix.SizeofSockaddrInet4, nil
	}
	sa.Family = unix.AF_INET6
	sa.Addr = a.Addr().As16()
	sa.Scope_id = zone
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], a.Port())
	return sa, unix.SizeofSockaddrInet6, nil
}

// closeHandoffs closes the sockets of hs, which could not be adopted, and
// returns err.
func closeHandoffs(hs []Handoff, err error) error {
	for _, h := range hs {
		if h.FD >= 0 {
			unix.Close(h.FD)
		}
	}
	return err
}
