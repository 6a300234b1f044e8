package l4

import "sync/atomic"

// Limiter caps live connections, for one Server (MaxConnections) or for
// several that share a resource (Server.Limiter: the process's file
// descriptors). A connection takes a slot with one atomic add, so the fast
// path takes no lock; only when the cap is reached does an accept loop
// wait. A nil *Limiter imposes no limit.
type Limiter struct {
	max  int64
	n    atomic.Int64
	wake chan struct{} // buffered, size 1
}

// NewLimiter returns a Limiter allowing max live connections; max <= 0
// returns nil, which allows any number.
func NewLimiter(max int) *Limiter {
	if max <= 0 {
		return nil
	}
	return &Limiter{max: int64(max), wake: make(chan struct{}, 1)}
}

// Max returns the cap, or 0 for a nil Limiter.
func (l *Limiter) Max() int {
	if l == nil {
		return 0
	}
	return int(l.max)
}

// acquire takes a slot, waiting while none is free. It reports false if
// stop closes first.
func (l *Limiter) acquire(stop <-chan struct{}) bool {
	if l == nil {
		return true
	}
	for {
		if n := l.n.Add(1); n <= l.max {
			if n < l.max {
				// Several releases may have left only one token in
				// wake; pass the turn on to any other waiter.
				l.signal()
			}
			return true
		}
		l.n.Add(-1)
		select {
		case <-l.wake:
		case <-stop:
			return false
		}
	}
}

func (l *Limiter) release() {
	if l == nil {
		return
	}
	l.n.Add(-1)
	l.signal()
}

func (l *Limiter) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}
