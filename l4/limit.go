package l4

import (
	"sync"
	"sync/atomic"
)

// Limiter caps live connections, for one Server (MaxConnections) or for
// several that share a resource (Server.Limiter: the process's file
// descriptors). A connection takes a slot with one atomic add, so the fast
// path takes no lock; only when the cap is reached does an event loop
// register to be woken, and stop accepting until then. A nil *Limiter
// imposes no limit.
type Limiter struct {
	max   int64
	n     atomic.Int64
	nwait atomic.Int32 // len(waiters), read without mu by release

	mu      sync.Mutex
	waiters []waker
}

// A waker is woken when a slot it waited for may be free.
type waker interface{ wake() }

// NewLimiter returns a Limiter allowing max live connections; max <= 0
// returns nil, which allows any number.
func NewLimiter(max int) *Limiter {
	if max <= 0 {
		return nil
	}
	return &Limiter{max: int64(max)}
}

// Max returns the cap, or 0 for a nil Limiter.
func (l *Limiter) Max() int {
	if l == nil {
		return 0
	}
	return int(l.max)
}

// tryAcquire takes a slot if one is free.
func (l *Limiter) tryAcquire() bool {
	if l == nil {
		return true
	}
	if l.n.Add(1) <= l.max {
		return true
	}
	l.n.Add(-1)
	return false
}

// acquireOrWait takes a slot, or registers w to be woken by the next
// release and reports false.
func (l *Limiter) acquireOrWait(w waker) bool {
	if l.tryAcquire() {
		return true
	}
	l.mu.Lock()
	l.waiters = append(l.waiters, w)
	l.nwait.Store(int32(len(l.waiters)))
	l.mu.Unlock()
	// A release between the failed try and the registration saw no
	// waiter; trying again after registering cannot miss it.
	return l.tryAcquire()
}

// take takes a slot even past the cap: for a connection that exists
// already (adopted after an upgrade), which a cap must not drop.
func (l *Limiter) take() {
	if l != nil {
		l.n.Add(1)
	}
}

func (l *Limiter) release() {
	if l == nil {
		return
	}
	l.n.Add(-1)
	if l.nwait.Load() == 0 {
		return
	}
	l.mu.Lock()
	ws := l.waiters
	l.waiters = nil
	l.nwait.Store(0)
	l.mu.Unlock()
	for _, w := range ws {
		w.wake()
	}
}
