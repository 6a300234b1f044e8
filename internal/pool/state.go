package pool

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// State is a backend's state as new connections see it.
type State uint8

const (
	// StateUp: enabled, passing its health checks and not ejected; it is
	// picked (a backup only while no other backend is up).
	StateUp State = iota
	// StateDown: failing its health checks, or ejected by passive checks.
	// Existing connections go on unless the pool closes them on down.
	StateDown
	// StateDraining: no new connections; existing ones go on.
	StateDraining
	// StateMaintenance: no new connections; existing ones go on, and
	// health changes are logged only at debug level.
	StateMaintenance
)

var stateNames = [...]string{StateUp: "up", StateDown: "down", StateDraining: "draining", StateMaintenance: "maintenance"}

// String returns "up", "down", "draining" or "maintenance".
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// Admin is a backend's administrative state. The zero value is Enabled.
type Admin uint8

const (
	// Enabled backends are picked while they are healthy.
	Enabled Admin = iota
	// Drain stops new connections and lets existing ones finish.
	Drain
	// Maintenance stops new connections and quiets health logging.
	Maintenance
)

var adminNames = [...]string{Enabled: "enabled", Drain: "drain", Maintenance: "maintenance"}

// String returns the name used in the configuration file.
func (a Admin) String() string {
	if int(a) < len(adminNames) {
		return adminNames[a]
	}
	return fmt.Sprintf("Admin(%d)", uint8(a))
}

// UnmarshalText accepts "enabled", "drain" and "maintenance".
func (a *Admin) UnmarshalText(text []byte) error {
	for i, name := range adminNames {
		if string(text) == name {
			*a = Admin(i)
			return nil
		}
	}
	return fmt.Errorf("unknown state %q: want enabled, drain or maintenance", text)
}

// backendState is what decides whether a backend is picked. It is guarded
// by its pool's mu.
type backendState struct {
	admin   Admin
	healthy bool // the health checks' verdict (true without checks)
	known   bool // a health check has reported
	reason  string

	ejected     bool
	ejectUntil  time.Time     // without active checks: when the ejection ends
	checksSince int           // with active checks: checks reported since the ejection began
	passesSince int           // ... of which the last ones passed, in a row
	rise        int           // the checks' rise, from their last report; 0 before
	backoff     time.Duration // length of the next ejection without active checks; 0: the pool's first
	returned    time.Time     // when the last ejection ended

	initial   bool      // one of the pool's first backends, as opposed to one Update added
	removed   bool      // Update removed it: it drains, and reports on it are ignored
	everUp    bool      // has been up since the pool was built, or was added by Update
	rampStart time.Time // slow start began; zero: full weight
	rampStep  int       // slow start step in the current selection, 1..slowStartSteps

	state State // last effective state, for logging changes
}

// ejectedUntil says until when an ejected backend stays out: a time of day
// without active checks, the passing checks still needed with them.
func (s *backendState) ejectedUntil(checked bool) string {
	if !checked {
		return s.ejectUntil.Format("15:04:05.000")
	}
	n := max(s.rise, 1) - s.passesSince
	if n == 1 {
		return "1 more passing check"
	}
	return fmt.Sprintf("%d more passing checks in a row", n)
}

// effective returns the state the inputs add up to.
func (s *backendState) effective() State {
	switch {
	case s.admin == Maintenance:
		return StateMaintenance
	case s.admin == Drain:
		return StateDraining
	case !s.healthy || s.ejected:
		return StateDown
	}
	return StateUp
}

// Up reports whether b is up: enabled, passing its health checks and not
// ejected. A backup that is up is picked only while no other backend is.
func (b *Backend) Up() bool { return b.up.Load() }

// State returns b's current state. It takes no lock.
func (b *Backend) State() State { return State(b.state.Load()) }

// Closing reports whether b's connections must be closed: its health checks
// marked it down in a pool with Options.CloseOnDown. A proxy checks it
// after registering a new connection, so that one racing the OnDown
// callbacks is closed too.
func (b *Backend) Closing() bool { return b.closing.Load() }

// Removed reports whether Update has removed b from its pool: it gets no
// new connections, and its live ones go on until they end or its owner
// closes them. It takes no lock.
func (b *Backend) Removed() bool { return b.removed.Load() }

// Changes counts b's removals, revivals and administrative changes. Work
// scheduled for later on b's present state (closing what a drain left,
// say) compares it then: a backend removed, added back and removed again
// is in a new drain, whose timeout starts again. It takes no lock.
func (b *Backend) Changes() uint64 { return b.changes.Load() }

// mine panics unless b is one of p's backends, current or removed: a
// foreign backend is a bug in the caller that would corrupt both pools'
// selections.
func (p *Pool) mine(b *Backend, op string) {
	if b.p != p {
		panic("pool: " + op + " of backend " + b.id + " that is not in pool " + p.name)
	}
}

// CheckResult is what one active health check reports on a backend: the
// state its rise and fall leave the backend in, and the streak behind it.
type CheckResult struct {
	// Up is the checks' verdict after rise and fall.
	Up bool
	// Reason is the check's error text when it failed, else a note that
	// it passed.
	Reason string
	// Passes is how many checks in a row have passed, this one included:
	// 0 if it failed.
	Passes int
	// Rise is how many passing checks in a row bring a down backend up.
	// As many passing checks since a passive ejection began end it. Zero
	// or negative means 1.
	Rise int
}

// ReportCheck records an active check's result on b. Checkers call it
// after every check; only a change of verdict, or the end of an ejection,
// rebuilds the selection (for Maglev, milliseconds).
//
// In a pool with Options.Checked, Rise passing checks since a passive
// ejection began end it, whatever the backoff: every host checking the
// backend then takes it back within Rise intervals of its recovery, rather
// than each keeping it out for the backoff its own traffic earned (issue 8).
// A streak that began before the ejection does not count: it may be what
// the failures interrupted.
func (p *Pool) ReportCheck(b *Backend, r CheckResult) {
	p.mine(b, "ReportCheck")
	now := time.Now()
	p.mu.Lock()
	st := &b.st
	if st.removed {
		// A checker racing its own stop after Update removed b.
		p.mu.Unlock()
		return
	}
	first := !st.known
	st.known, st.rise = true, max(r.Rise, 1)
	ends := false
	if st.ejected && p.cfg.checked {
		st.checksSince++
		st.passesSince = min(r.Passes, st.checksSince)
		ends = st.passesSince >= st.rise
	}
	if ends {
		p.leaveEjection(b, now, fmt.Sprintf("%d checks passed", st.rise))
	}
	changed := first || st.healthy != r.Up
	if changed {
		st.healthy, st.reason = r.Up, r.Reason
		p.logHealth(b, r)
	}
	if !changed {
		if ends {
			p.apply(now)
		}
		p.mu.Unlock()
		return
	}
	notify := !r.Up && p.cfg.closeOn && !b.closing.Load()
	b.closing.Store(!r.Up && p.cfg.closeOn)
	p.apply(now)
	callbacks := p.onDown
	p.mu.Unlock()
	if notify {
		for _, f := range callbacks {
			f(b)
		}
	}
}

// SetHealth records a health verdict on b, with reason the check's error
// text when it failed: ReportCheck for callers that know no streak. An up
// verdict counts as one passing check with a Rise of 1, so it ends a
// passive ejection in a pool with Options.Checked.
func (p *Pool) SetHealth(b *Backend, up bool, reason string) {
	r := CheckResult{Up: up, Reason: reason, Rise: 1}
	if up {
		r.Passes = 1
	}
	p.ReportCheck(b, r)
}

// SetUp is SetHealth without a reason, for callers that decide health
// themselves.
func (p *Pool) SetUp(b *Backend, up bool) { p.SetHealth(b, up, "") }

// SetAdmin sets b's administrative state. Draining and maintenance stop new
// connections to b at once; its existing connections go on (unless an
// OnAdmin callback ends them). The state outlives an Update that leaves
// b's configured Admin as it was; one that changes it replaces it. A
// backend Update removed stays removed.
func (p *Pool) SetAdmin(b *Backend, a Admin) {
	p.mine(b, "SetAdmin")
	p.mu.Lock()
	if b.st.admin == a || b.st.removed {
		p.mu.Unlock()
		return
	}
	b.st.admin = a
	b.changes.Add(1)
	p.cfg.log.Info("backend admin state", slog.String("pool", p.name), slog.String("backend", b.id),
		slog.String("admin", a.String()))
	p.apply(time.Now())
	callbacks := p.onAdmin
	p.mu.Unlock()
	for _, f := range callbacks {
		f(b, a)
	}
}

// OnAdmin registers f to be called after SetAdmin has changed a backend's
// administrative state, such as a proxy's drain of a backend set to Drain
// by hand. f runs on SetAdmin's goroutine, after the pool's lock is
// released; it must not block.
func (p *Pool) OnAdmin(f func(*Backend, Admin)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	// Copied on write: SetAdmin calls the slice it read under the lock.
	p.onAdmin = append(p.onAdmin[:len(p.onAdmin):len(p.onAdmin)], f)
}

// OnDown registers f to be called when a health check marks a backend down
// in a pool with Options.CloseOnDown, such as a proxy's method closing the
// backend's connections. f runs on the checker's goroutine and must not
// call back into the pool's setters.
func (p *Pool) OnDown(f func(*Backend)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	// Copied on write: SetHealth calls the slice it read under the lock.
	p.onDown = append(p.onDown[:len(p.onDown):len(p.onDown)], f)
}

// Unavailable says why Pick returns nil for every client: which backends
// there are and why none is up. It is "" while some backend is up.
func (p *Pool) Unavailable() string { return p.sel.Load().none }

// logHealth logs a change of b's health verdict to r. A backend that
// passes its checks while still ejected is not "up": it gets no traffic,
// so the line says it is still ejected, and until when.
func (p *Pool) logHealth(b *Backend, r CheckResult) {
	level, msg := slog.LevelWarn, "backend down"
	attrs := []slog.Attr{slog.String("pool", p.name), slog.String("backend", b.id), slog.String("reason", r.Reason)}
	switch {
	case r.Up && b.st.ejected:
		level, msg = slog.LevelInfo, "backend passed its checks, still ejected"
		attrs = append(attrs, slog.String("until", b.st.ejectedUntil(p.cfg.checked)))
	case r.Up:
		level, msg = slog.LevelInfo, "backend up"
	}
	if b.st.admin == Maintenance {
		// Expected while the backend is worked on.
		level = slog.LevelDebug
	}
	p.cfg.log.LogAttrs(context.Background(), level, msg, attrs...)
}
