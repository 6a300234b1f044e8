package l4

import (
	"context"
	"sync"
	"time"
)

// Pacer spaces out the closes of a drain (drain_rate): at most n per
// period, one at a time, each at least period/n after the one before, so
// that the clients a drain closes do not all reconnect in a herd, and no
// window of one period sees more than n closes. One Pacer is shared by
// every Server over a pool and by every drain of the pool's backends, so
// the bound holds for the pool as a whole.
//
// A nil Pacer, or one with a zero rate, does not pace: a drain closes
// everything at once, as without one.
type Pacer struct {
	mu    sync.Mutex
	every time.Duration // between two closes; zero: not paced
	last  time.Time     // the latest close, done or reserved
}

// NewPacer returns a Pacer allowing n closes per period; n <= 0 or
// period <= 0 returns one that does not pace.
func NewPacer(n int, period time.Duration) *Pacer {
	p := &Pacer{}
	p.SetRate(n, period)
	return p
}

// SetRate changes the pace (a reload); the next close keeps its distance
// from the last one at the new interval.
func (p *Pacer) SetRate(n int, period time.Duration) {
	var every time.Duration
	if n > 0 && period > 0 {
		every = max(period/time.Duration(n), 1)
	}
	p.mu.Lock()
	p.every = every
	p.mu.Unlock()
}

// Paced reports whether p spaces closes out.
func (p *Pacer) Paced() bool {
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.every > 0
}

// wait blocks until the next close is due, reserving it, and reports
// false if ctx or stop ended first. Each close must be followed by
// done, so that the next one keeps its distance from when this one
// happened rather than from when it was due: a drain that falls behind
// does not catch up in a burst.
func (p *Pacer) wait(ctx context.Context, stop <-chan struct{}) bool {
	if p == nil {
		return ctx.Err() == nil
	}
	p.mu.Lock()
	now := time.Now()
	prev, at := p.last, now
	if p.every > 0 && !p.last.IsZero() {
		at = later(now, p.last.Add(p.every))
	}
	p.last = at
	p.mu.Unlock()
	d := at.Sub(now)
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
	case <-stop:
	}
	// No close comes of the reservation: give it back (unless a later
	// one was made after it), or the next drain would wait for a close
	// that never happened.
	p.mu.Lock()
	if p.last.Equal(at) {
		p.last = prev
	}
	p.mu.Unlock()
	return false
}

// done records that a close reserved by wait has happened now.
func (p *Pacer) done() {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.last = later(time.Now(), p.last)
	p.mu.Unlock()
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
