package l4

import (
	"time"
)

// The loop parks in Go's poller on its epoll fd (package epollpark): the
// runtime wakes the goroutine when the set has an event, and a read
// deadline wakes it when the next timer is due.

// wait returns the number of ready events, parking until there is one or
// until the next timer is due.
func (l *loop) wait() (int, error) {
	if len(l.again) > 0 || l.canAccept() {
		// Work is waiting: take the events without parking.
		return l.park.Poll()
	}
	// Otherwise straight to Wait, which takes the events ready now
	// (under load there usually are some) before it parks: a poll here
	// first would make every wake-up that finds the set empty cost two
	// epoll_wait calls before parking instead of one.
	return l.park.Wait(l.deadline())
}

// deadline returns when the loop must wake at the latest: the next
// timer's due time. An earlier deadline still armed is kept: under load
// the front of the idle list moves on at every exchange, and resetting the
// runtime's timer each time would cost more than the spurious wake-up that
// finds nothing due and re-arms.
func (l *loop) deadline() time.Time {
	var next time.Time
	if at, ok := l.nextDeadline(); ok {
		next = l.base.Add(at)
	}
	if armed := l.park.Armed(); keepArmed(armed, next, l.base.Add(l.now)) {
		return armed
	}
	return next
}

// keepArmed reports whether a deadline armed for armed (zero: none) serves
// for the next timer, due at next (zero: none), at now: it is the same, or
// it is still ahead and no later than next.
func keepArmed(armed, next, now time.Time) bool {
	if armed.Equal(next) {
		return true
	}
	return !armed.IsZero() && armed.After(now) && (next.IsZero() || armed.Before(next))
}
