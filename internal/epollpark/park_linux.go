// Package epollpark lets an event loop's goroutine wait on its own epoll
// set by parking in Go's poller rather than blocking in epoll_wait.
//
// The epoll fd is itself pollable: put into the runtime's poller, it
// wakes the goroutine when the set has an event, and a read deadline on it
// wakes the goroutine when the loop's next timer is due. A goroutine
// blocked in epoll_wait instead makes the runtime's sysmon take its P back
// every 20 µs and hand it over again on every wake-up. Measured here for
// the TCP loop (proxy pinned to one core, per proxy core-second): new
// connections 17.3k-18.2k parked against 10.1k-13.3k blocking.
//
// Measured again for issue 9, as proxy CPU per operation (GOMAXPROCS=1,
// proxy on CPU 0, load on CPU 1, 3 interleaved rounds, medians): a 64-byte
// keep-alive exchange took 9.7 µs parked, 13.6 µs blocking in epoll_wait,
// 15.3 µs blocking on a thread locked with LockOSThread; a new connection
// 42.5 µs parked, 62 and 65 µs blocking. Giving the runtime a spare P
// (GOMAXPROCS=2 on the one CPU, so that sysmon leaves the blocked P
// alone) did worse in make bench (0.69x nginx per core-second against
// 0.99x parked, keep-alive). Spinning on zero-timeout polls before
// parking saved no CPU: 9.5 µs per exchange with 8 polls, 11.5 µs with 64.
//
//	var s epollpark.Set
//	s.Open(ep, events)
//	n, err := s.Wait(deadline)
package epollpark

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Set is one epoll set, owned by one goroutine. Its zero value is unusable
// until Open.
type Set struct {
	fd     uintptr
	f      *os.File // the epoll fd in Go's poller; owns it
	rc     syscall.RawConn
	poll   func(uintptr) bool // s.pollOnce, bound once so Wait allocates nothing
	events []unix.EpollEvent
	n      int
	err    error
	armed  time.Time // f's read deadline; zero: none
}

// Open takes ownership of the epoll fd ep (Close closes it) and makes it
// pollable. Ready events are written to events, which must not be empty.
func (s *Set) Open(ep int, events []unix.EpollEvent) error {
	if err := unix.SetNonblock(ep, true); err != nil {
		return fmt.Errorf("making epoll non-blocking: %w", err)
	}
	s.f = os.NewFile(uintptr(ep), "epoll")
	rc, err := s.f.SyscallConn()
	if err != nil {
		return fmt.Errorf("polling epoll: %w", err)
	}
	s.fd, s.rc, s.poll, s.events = uintptr(ep), rc, s.pollOnce, events
	return nil
}

// Poll takes the events ready now without parking, and returns how many
// there are.
func (s *Set) Poll() (int, error) {
	s.pollOnce(s.fd)
	return s.n, s.err
}

// Armed returns the read deadline now set (zero: none).
func (s *Set) Armed() time.Time { return s.armed }

// Wait returns the number of ready events, parking until there is one or
// until deadline (zero: no deadline), when it returns 0. The deadline is
// set only when it differs from the one armed, since resetting the
// runtime's timer costs more than comparing.
func (s *Set) Wait(deadline time.Time) (int, error) {
	if !deadline.Equal(s.armed) {
		s.f.SetReadDeadline(deadline)
		s.armed = deadline
	}
	// Read's first call of poll takes the events ready now (under load
	// there usually are some); it parks only when there are none.
	switch err := s.rc.Read(s.poll); {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("waiting on epoll: %w", err)
	}
	return s.n, s.err
}

// Opened reports whether Open succeeded: the Set owns the fd.
func (s *Set) Opened() bool { return s.rc != nil }

// Close closes the epoll fd.
func (s *Set) Close() error {
	if s.f == nil {
		return nil
	}
	return s.f.Close()
}

// pollOnce takes the ready events without blocking and reports whether
// there were any (or an error): false parks a RawConn.Read until the epoll
// fd is readable.
func (s *Set) pollOnce(fd uintptr) bool {
	for {
		// A zero timeout cannot block: a raw call, without the runtime's
		// entersyscall/exitsyscall.
		n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, fd, uintptr(unsafe.Pointer(&s.events[0])),
			uintptr(len(s.events)), 0, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			s.n, s.err = 0, fmt.Errorf("epoll_wait: %w", e)
			return true
		}
		s.n, s.err = int(n), nil
		return n > 0
	}
}
