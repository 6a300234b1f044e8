package pool

import (
	"context"
	"log/slog"
	"strings"
	"time"
)

// slowStartSteps is how many steps a slow start takes: each rebuilds the
// selection (milliseconds for Maglev), and ten keep the ramp smooth.
const slowStartSteps = 10

// ReportFailure counts a failed connection to b (a connect that failed, or
// the backend reset it) for passive checks; err says what failed. After
// Options.PassiveFailures of them in a row, b is ejected. It takes no lock
// until then.
func (b *Backend) ReportFailure(err error) {
	p := b.p
	// The settings come with the selection, read without the lock.
	passive := p.sel.Load().cfg.passive
	if passive <= 0 {
		return
	}
	// Only the failure that reaches the threshold ejects; those of
	// connections already under way when it did just count on, and the
	// count restarts when the ejection ends.
	if b.failures.Add(1) != passive {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.eject(b, err, time.Now())
}

// ReportSuccess counts a connection to b that worked (the backend sent
// bytes), which restarts the count of consecutive failures.
func (b *Backend) ReportSuccess() {
	// Read first: a healthy backend's counter stays zero, and a store per
	// connection would bounce its cache line between cores.
	if b.failures.Load() != 0 {
		b.failures.Store(0)
	}
}

// eject takes b out of the selection. Without active checks the ejection
// lasts its backoff, which doubles with every ejection until b has stayed
// in for the longest backoff; with them, it lasts until the checks have
// passed rise times in a row since (ReportCheck), and the backoff is not
// used.
func (p *Pool) eject(b *Backend, err error, now time.Time) {
	st := &b.st
	if st.ejected || st.removed {
		return
	}
	st.ejected, st.checksSince, st.passesSince = true, 0, 0
	attrs := []slog.Attr{slog.String("pool", p.name), slog.String("backend", b.id),
		slog.Int64("failures", p.cfg.passive)}
	if !p.cfg.checked {
		longest := p.cfg.backoff * maxBackoffFactor
		if st.backoff == 0 || now.Sub(st.returned) > longest {
			st.backoff = p.cfg.backoff
		}
		st.ejectUntil = now.Add(st.backoff)
		attrs = append(attrs, slog.Duration("backoff", st.backoff))
		st.backoff = min(2*st.backoff, longest)
	}
	reason := "connection failures"
	if err != nil {
		reason = err.Error()
	}
	attrs = append(attrs, slog.String("until", st.ejectedUntil(p.cfg.checked)), slog.String("reason", reason))
	p.cfg.log.LogAttrs(context.Background(), slog.LevelWarn, "backend ejected", attrs...)
	p.apply(now)
	p.poke()
}

// leaveEjection ends b's ejection, for reason; the caller applies the
// change.
func (p *Pool) leaveEjection(b *Backend, now time.Time, reason string) {
	b.st.ejected, b.st.returned = false, now
	b.failures.Store(0)
	p.cfg.log.Info("backend back from ejection", slog.String("pool", p.name), slog.String("backend", b.id),
		slog.String("reason", reason))
}

// poke tells Run that a deadline may have moved.
func (p *Pool) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Run takes the pool's timed steps until ctx ends: slow start ramps and, in
// a pool without active checks, the end of ejections. It is the one
// goroutine that does so; Pick never waits on it.
func (p *Pool) Run(ctx context.Context) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		p.mu.Lock()
		next := p.advance(time.Now())
		p.mu.Unlock()
		wait := time.Hour // nothing pending: sleep until poked
		if !next.IsZero() {
			wait = max(time.Until(next), 0)
		}
		t.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-p.wake:
		case <-t.C:
		}
	}
}

// advance ends the ejections and slow start steps due by now, rebuilding
// the selection if anything changed, and returns when the next one is due
// (zero if none is pending).
func (p *Pool) advance(now time.Time) time.Time {
	var next time.Time
	soonest := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	changed := false
	for _, b := range p.backends {
		st := &b.st
		if st.ejected && !p.cfg.checked {
			if now.Before(st.ejectUntil) {
				soonest(st.ejectUntil)
			} else {
				p.leaveEjection(b, now, "backoff over")
				changed = true
			}
		}
		if !st.rampStart.IsZero() {
			step := p.cfg.slow / slowStartSteps
			if k := min(1+int(now.Sub(st.rampStart)/step), slowStartSteps); k != st.rampStep {
				st.rampStep, changed = k, true
			}
			if st.rampStep == slowStartSteps {
				st.rampStart = time.Time{}
			} else {
				soonest(st.rampStart.Add(time.Duration(st.rampStep) * step))
			}
		}
	}
	if changed {
		p.apply(now)
	}
	return next
}

// apply brings every backend's effective state up to date with its inputs
// and publishes a new selection. The caller holds p.mu.
func (p *Pool) apply(now time.Time) {
	ramp := false
	for _, b := range p.backends {
		st := &b.st
		s := st.effective()
		if s != st.state {
			if s == StateUp {
				// HAProxy's rule: no slow start on the first coming up,
				// when every backend comes up together.
				if st.everUp && p.cfg.slow >= slowStartSteps {
					st.rampStart, st.rampStep = now, 1
					ramp = true
				}
				st.everUp = true
			} else {
				st.rampStart, st.rampStep = time.Time{}, 0
			}
			st.state = s
			b.up.Store(s == StateUp)
			b.state.Store(uint32(s))
		}
	}
	sel := p.build()
	p.sel.Store(sel)
	p.logPool(sel)
	if ramp {
		p.poke()
	}
}

// logPool logs the pool running out of backends, falling back on its
// backups, and recovering.
func (p *Pool) logPool(sel *selection) {
	anyUp := len(sel.up) > 0
	switch {
	case !anyUp && p.anyUp:
		p.cfg.log.Warn("pool has no backend up", slog.String("pool", p.name), slog.String("why", sel.none))
	case anyUp && sel.backups && !p.backups:
		p.cfg.log.Warn("pool is using its backup backends", slog.String("pool", p.name),
			slog.String("backends", backendList(sel.up)))
	case anyUp && (!p.anyUp || p.backups) && !sel.backups:
		p.cfg.log.Info("pool has backends up", slog.String("pool", p.name), slog.String("backends", backendList(sel.up)))
	}
	p.anyUp, p.backups = anyUp, sel.backups
}

func backendList(bs []*Backend) string {
	ids := make([]string, len(bs))
	for i, b := range bs {
		ids[i] = b.id
	}
	return strings.Join(ids, " ")
}
