package udp

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// The loop parks in Go's poller, not in a blocking epoll_wait: its epoll
// fd is itself pollable, so the runtime wakes the goroutine when the set
// has an event, and a read deadline on it wakes the goroutine when the
// least recently active session expires. A goroutine blocked in a system
// call instead would make the runtime hand its P to another thread and take
// it back on every wake-up, which measured as the largest cost of a busy
// loop after the kernel's own.

// pollable puts the epoll fd into Go's poller.
func (l *loop) pollable() error {
	if err := unix.SetNonblock(l.ep, true); err != nil {
		return fmt.Errorf("making epoll non-blocking: %w", err)
	}
	l.epf = os.NewFile(uintptr(l.ep), "epoll")
	rc, err := l.epf.SyscallConn()
	if err != nil {
		return fmt.Errorf("polling epoll: %w", err)
	}
	l.erc, l.poll = rc, l.pollOnce
	return nil
}

// wait fills l.events and returns how many are ready, parking until there
// is one, or returning none when the front session of the idle list is due
// to expire.
func (l *loop) wait() (int, error) {
	// Under load an event is usually ready: take it without touching the
	// deadline or parking.
	if l.pollOnce(uintptr(l.ep)) {
		return l.nready, l.perr
	}
	var deadline time.Time
	if s := l.idle.front; s != nil {
		due := s.last + l.s.sessionTimeout()
		if floor := l.s.evictIdle(); floor >= 0 && l.s.wants.Load() != 0 && !l.draining {
			// Another loop asks for a place: lend one as soon as
			// the front session may be evicted.
			due = min(due, s.last+floor)
		}
		deadline = l.base.Add(due)
	}
	if !deadline.Equal(l.armed) {
		l.epf.SetReadDeadline(deadline)
		l.armed = deadline
	}
	switch err := l.erc.Read(l.poll); {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("waiting on epoll: %w", err)
	}
	return l.nready, l.perr
}

// pollOnce takes the ready events without blocking and reports whether
// there were any (or an error): false parks a RawConn.Read until the epoll
// fd is readable.
func (l *loop) pollOnce(fd uintptr) bool {
	for {
		n, err := unix.EpollWait(int(fd), l.events, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			l.nready, l.perr = 0, fmt.Errorf("epoll_wait: %w", err)
			return true
		}
		l.nready, l.perr = n, nil
		return n > 0
	}
}
