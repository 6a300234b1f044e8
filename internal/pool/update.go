package pool

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"
)

// Changes says what Update did to a pool's set of backends.
type Changes struct {
	// Added are the backends new to the pool. In a pool with
	// Options.Checked they are down until their first check passes, so
	// their checks should start; else they are up at once. Either way
	// their first coming up is a slow start.
	Added []*Backend
	// Removed are the backends no longer in the pool. They get no new
	// connections; their live ones go on until they end. Their owner
	// stops their checks and may close those connections after a drain
	// timeout, as for a backend set to Drain.
	Removed []*Backend
}

// Update gives p new options at run time, as a reload or a discovery of
// its backends does, and rebuilds its selection once. The backends whose
// address stays keep their Backend and its run-time state (health
// verdict, ejection, slow start, live connections, an administrative
// state set by SetAdmin) and take their new weight and backup flag. New
// addresses are added as New's backends start, except that their first
// coming up is a slow start; the others are removed and drain. An address
// that comes back while its removed Backend still has live connections
// gets that Backend back, with its health unknown again.
//
// o must name p; its other fields are checked as New checks them, and on
// an error p is left as it was. Update does not change what a Pick under
// way returns: a connection may still go to a backend removed a moment
// before, and drains with the others.
func (p *Pool) Update(o Options) (Changes, error) {
	if o.Name != p.name {
		return Changes{}, fmt.Errorf("pool %q: update for another pool, %q", p.name, o.Name)
	}
	if err := o.check(); err != nil {
		return Changes{}, err
	}
	now := time.Now()
	p.mu.Lock()
	old := p.cfg
	p.cfg = o.settings()
	var ch Changes
	p.backends, ch = p.adopt(o.Backends)
	closing := p.retune(old, now)
	p.apply(now)
	for addr, b := range p.gone {
		if b.Active() == 0 {
			delete(p.gone, addr)
		}
	}
	callbacks, log := p.onDown, p.cfg.log
	p.mu.Unlock()
	if len(ch.Added) > 0 || len(ch.Removed) > 0 {
		log.Info("pool backends changed", slog.String("pool", p.name),
			slog.String("added", backendList(ch.Added)), slog.String("removed", backendList(ch.Removed)))
	}
	for _, b := range closing {
		for _, f := range callbacks {
			f(b)
		}
	}
	return ch, nil
}

// adopt returns the backends for opts: the current ones of the addresses
// that stay, with their new configuration, then revived or new ones; the
// current backends left out are marked removed. The caller holds p.mu and
// applies the change.
func (p *Pool) adopt(opts []BackendOptions) ([]*Backend, Changes) {
	// While a pool has no backend, as one whose discovery failed at
	// start, the first ones it gets start as New's would.
	initial := len(p.backends) == 0
	current := make(map[netip.AddrPort]*Backend, len(p.backends))
	for _, b := range p.backends {
		current[b.Addr] = b
	}
	var ch Changes
	bs := make([]*Backend, 0, len(opts))
	for _, bo := range opts {
		b, kept := current[bo.Addr]
		switch {
		case kept:
			delete(current, bo.Addr)
			if bo.Admin != b.conf.Load().Admin {
				// The configuration changed it: that wins over
				// SetAdmin's earlier word.
				b.st.admin = bo.Admin
				b.changes.Add(1)
			}
			b.conf.Store(&bo)
		case p.gone[bo.Addr] != nil:
			b = p.gone[bo.Addr]
			delete(p.gone, bo.Addr)
			p.revive(b, bo)
			ch.Added = append(ch.Added, b)
		default:
			b = p.newBackend(bo, initial)
			ch.Added = append(ch.Added, b)
		}
		bs = append(bs, b)
	}
	for _, b := range p.backends {
		if current[b.Addr] == b {
			p.remove(b)
			ch.Removed = append(ch.Removed, b)
		}
	}
	return bs, ch
}

// revive gives a removed backend that still has live connections its
// place back, with the state of a backend just added: its checks stopped
// with its removal, so its health is unknown again.
func (p *Pool) revive(b *Backend, bo BackendOptions) {
	fresh := p.newBackend(bo, false)
	b.conf.Store(&bo)
	b.st = fresh.st
	b.st.state = StateDraining // what it was while removed; apply moves it on
	b.failures.Store(0)
	b.closing.Store(false)
	b.removed.Store(false)
	b.changes.Add(1)
}

// remove takes b out of the pool: it drains like a backend set to Drain,
// and reports on it are ignored from now on. The caller holds p.mu.
func (p *Pool) remove(b *Backend) {
	st := &b.st
	st.removed, st.state = true, StateDraining
	st.rampStart, st.rampStep = time.Time{}, 0
	b.removed.Store(true)
	b.changes.Add(1)
	b.up.Store(false)
	b.state.Store(uint32(StateDraining))
	p.gone[b.Addr] = b
}

// retune brings the backends' state in line with settings that changed
// from old, and returns the backends whose connections must now be closed
// (the pool closes on down from now on, and their checks say down). The
// caller holds p.mu and applies the change.
func (p *Pool) retune(old *settings, now time.Time) (closing []*Backend) {
	cfg := p.cfg
	for _, b := range p.backends {
		st := &b.st
		switch {
		case old.checked && !cfg.checked:
			// No checks: up, as a pool without them starts; an
			// ejection now ends with its backoff.
			st.healthy, st.known, st.reason = true, false, ""
			if st.ejected {
				st.ejectUntil = now.Add(cfg.backoff)
			}
		case !old.checked && cfg.checked:
			// Up until the first check says otherwise: a reload that
			// adds checks must not take every backend down.
			st.known, st.checksSince, st.passesSince = false, 0, 0
		}
		want := !st.healthy && cfg.closeOn
		if want && !b.closing.Load() {
			closing = append(closing, b)
		}
		b.closing.Store(want)
		if cfg.passive != old.passive {
			// A count above a lowered threshold would never reach it.
			b.failures.Store(0)
		}
		if cfg.slow < slowStartSteps {
			st.rampStart, st.rampStep = time.Time{}, 0
		}
	}
	// Run looks at the clock again: backoffs and ramps may have moved.
	p.poke()
	return closing
}

// String describes the changes, for logs and tests: "+a +b -c".
func (c Changes) String() string {
	var parts []string
	for _, b := range c.Added {
		parts = append(parts, "+"+b.id)
	}
	for _, b := range c.Removed {
		parts = append(parts, "-"+b.id)
	}
	return strings.Join(parts, " ")
}
