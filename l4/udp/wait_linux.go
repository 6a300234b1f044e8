package udp

import "time"

// The loop parks in Go's poller on its epoll fd (package epollpark): the
// runtime wakes the goroutine when the set has an event, and a read
// deadline wakes it when the least recently active session expires.

// wait fills l.events and returns how many are ready, parking until there
// is one, or returning none when the front session of the idle list is due
// to expire.
func (l *loop) wait() (int, error) {
	// Under load an event is usually ready: take it without touching the
	// deadline or parking.
	if n, err := l.park.Poll(); n > 0 || err != nil {
		return n, err
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
	return l.park.Wait(deadline)
}
