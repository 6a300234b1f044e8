package pool

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"sluice/internal/maglev"
)

// MaxWeight is the largest backend weight. It bounds the round robin
// sequence (the sum of the weights) and keeps weighted load comparisons far
// from overflow.
const MaxWeight = 256

// DefaultTableSize is the Maglev table size used when Options.TableSize is 0.
const DefaultTableSize = maglev.DefaultSize

// BackendOptions describes one backend of a pool.
type BackendOptions struct {
	// Addr is the backend's address. It must be valid, with a nonzero port.
	Addr netip.AddrPort
	// Weight is the backend's share of the pool's connections relative to
	// the other backends, 1 to MaxWeight. Zero means 1; negative is an error.
	Weight int
	// Backup marks a backend picked only while no other (non-backup)
	// backend of the pool is up, as HAProxy's backup servers.
	Backup bool
	// Admin is the administrative state the backend starts in; the zero
	// value is Enabled.
	Admin Admin
}

// weight returns the effective weight.
func (o BackendOptions) weight() int {
	if o.Weight == 0 {
		return 1
	}
	return o.Weight
}

// Options configures a pool. The zero value, given backends, is a round
// robin pool.
type Options struct {
	// Name names the pool in logs and metrics.
	Name string
	// Balance is the selection algorithm; zero is RoundRobin.
	Balance Balance
	// HashKey says what Maglev hashes; zero is ClientIP. Other algorithms
	// ignore it.
	HashKey HashKey
	// TableSize is the Maglev table size: a prime, at least the number of
	// backends, and at most maglev.MaxSize. Zero means DefaultTableSize;
	// negative is an error. Other algorithms ignore it.
	TableSize int
	// Retries is the number of connect attempts, after the first, that a
	// proxy may make to other backends of this pool. The pool only stores
	// it. Zero means none; negative is an error.
	Retries int
	// Backends lists the pool's backends, with distinct addresses. It may
	// be empty: the pool then has none to pick until Update gives some.
	Backends []BackendOptions

	// Checked says the backends have active health checks reporting to
	// ReportCheck (or SetHealth): they start down and come up on their
	// first passing check, and a backend ejected by passive checks comes
	// back once its checks have passed rise times in a row since the
	// ejection, whatever PassiveBackoff. False: they start up.
	Checked bool
	// SlowStart is how long a backend coming back up takes to get its
	// full weight back, in slowStartSteps steps; the ramp does not apply
	// to the first time a backend comes up. Zero means at once. The steps
	// are taken by Run.
	SlowStart time.Duration
	// PassiveFailures is how many consecutive failed connections
	// (ReportFailure without a ReportSuccess in between) eject a backend.
	// Zero means never; negative is an error.
	PassiveFailures int
	// PassiveBackoff is how long the first ejection lasts; it doubles with
	// each ejection while the backend keeps failing, up to
	// maxBackoffFactor times. Zero means DefaultPassiveBackoff; negative is
	// an error. It applies only without Checked; Run ends the ejections.
	PassiveBackoff time.Duration
	// CloseOnDown says that connections to a backend its health checks
	// mark down must be closed: OnDown callbacks run and Closing reports
	// true until it is up again.
	CloseOnDown bool
	// Logger receives every change of a backend's state, with its reason.
	// Nil means slog.Default().
	Logger *slog.Logger
}

// DefaultPassiveBackoff is the first ejection's length when
// Options.PassiveBackoff is zero.
const DefaultPassiveBackoff = 10 * time.Second

// maxBackoffFactor caps an ejection's growth: 16 doublings' worth would be
// hours, but a backend that recovered should be tried within minutes.
const maxBackoffFactor = 16

// passiveBackoff returns the effective first ejection length.
func (o Options) passiveBackoff() time.Duration {
	if o.PassiveBackoff == 0 {
		return DefaultPassiveBackoff
	}
	return o.PassiveBackoff
}

// tableSize returns the effective Maglev table size.
func (o Options) tableSize() int {
	if o.TableSize == 0 {
		return DefaultTableSize
	}
	return o.TableSize
}

// settings is a pool's configuration as the pool uses it: immutable,
// and replaced whole by Update. Pick reads it through the selection it
// loads, so that the algorithm and the backends it picks among always
// belong together; the setters read it under the pool's lock.
type settings struct {
	balance Balance
	hashKey HashKey
	table   int
	retries int
	checked bool
	closeOn bool
	slow    time.Duration
	passive int64
	backoff time.Duration
	log     *slog.Logger
}

// settings returns o's pool-wide settings with the defaults filled in.
func (o Options) settings() *settings {
	s := &settings{
		balance: o.Balance,
		hashKey: o.HashKey,
		table:   o.tableSize(),
		retries: o.Retries,
		checked: o.Checked,
		closeOn: o.CloseOnDown,
		slow:    o.SlowStart,
		passive: int64(o.PassiveFailures),
		backoff: o.passiveBackoff(),
		log:     o.Logger,
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	return s
}

// Backend is one backend of a pool: its address, its configuration (what
// BackendOptions gave, replaced by Update) and its run-time state (health,
// ejection, slow start, live connections, the administrative state set
// by SetAdmin), which Update carries over for every address it keeps.
// Proxies hold on to a Backend for the life of each connection to it.
type Backend struct {
	// Addr is the address to connect to. It is the backend's identity:
	// it never changes, and Update keeps the Backend of an address that
	// stays in the pool.
	Addr netip.AddrPort

	conf atomic.Pointer[BackendOptions] // configuration, replaced whole by Update

	active   atomic.Int64  // live connections, for least_conn and random
	up       atomic.Bool   // st.state == StateUp, for Up without the lock
	state    atomic.Uint32 // st.state, for State without the lock
	closing  atomic.Bool   // down in a CloseOnDown pool: its connections must go
	failures atomic.Int64  // consecutive failed connections, for passive checks
	removed  atomic.Bool   // st.removed, for Removed without the lock
	changes  atomic.Uint64 // removals, revivals and admin changes, for Changes
	p        *Pool
	id       string // Addr.String(), the stable Maglev id, computed once

	st backendState // guarded by p.mu
}

// Weight returns b's effective weight, 1 to MaxWeight.
func (b *Backend) Weight() int { return b.conf.Load().weight() }

// Backup reports whether b is picked only while no other backend is up.
func (b *Backend) Backup() bool { return b.conf.Load().Backup }

// Acquire counts a new live connection to b. Call it once a backend picked
// for a connection is being used, and Release when that connection ends, so
// that least_conn and random see the load.
func (b *Backend) Acquire() { b.active.Add(1) }

// Release counts the end of a connection counted by Acquire.
func (b *Backend) Release() {
	if b.active.Add(-1) < 0 {
		// As with sync.WaitGroup, an unbalanced Release is a bug in
		// the caller that would skew every later pick.
		panic("pool: Release without Acquire on backend " + b.id)
	}
}

// Active returns the number of live connections counted by Acquire and
// Release.
func (b *Backend) Active() int64 { return b.active.Load() }

// String returns b's address.
func (b *Backend) String() string { return b.id }

// Pool is a named set of backends and the state for picking one of them.
// Its methods are safe for concurrent use.
type Pool struct {
	name string

	// sel is the selection state for the backends that are up, with the
	// settings it was built under. It is immutable and replaced whole on
	// every change, so Pick reads it without a lock; mu only serialises
	// the rebuilds.
	sel atomic.Pointer[selection]
	mu  sync.Mutex
	// next is round robin's position in sel.seq. It survives rebuilds, so
	// the rotation continues (at some offset) after a backend flaps.
	next atomic.Uint64
	wake chan struct{} // tells Run to look at the clock again; buffered, size 1

	// Guarded by mu.
	cfg      *settings
	backends []*Backend // the pool's backends, in the order of the last Options
	// gone holds the backends Update removed while they had live
	// connections. An address that comes back before they end gets its
	// Backend back, so least_conn still counts them.
	gone    map[netip.AddrPort]*Backend
	onDown  []func(*Backend)
	onAdmin []func(*Backend, Admin)
	anyUp   bool // the last selection had a backend to pick
	backups bool // ... and it was made of backups
}

// New checks o and builds a pool. Its backends start up, unless o.Checked
// or their Admin state says otherwise. It reports every problem in o at
// once. A pool may start with no backends and get them from Update.
func New(o Options) (*Pool, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	p := &Pool{
		name:     o.Name,
		cfg:      o.settings(),
		backends: make([]*Backend, len(o.Backends)),
		gone:     make(map[netip.AddrPort]*Backend),
		wake:     make(chan struct{}, 1),
	}
	for i, bo := range o.Backends {
		p.backends[i] = p.newBackend(bo, true)
	}
	sel := p.build()
	p.sel.Store(sel)
	p.anyUp, p.backups = len(sel.up) > 0, sel.backups
	return p, nil
}

// newBackend builds a backend of p with the state a new one starts in.
// One of the pool's first backends (initial) starts as New's do: up unless
// it is checked or not enabled, and without a slow start the first time it
// comes up. A backend added later to a serving pool starts as not yet up,
// so that apply brings it in through a slow start. The caller holds p.mu
// (or owns p, in New).
func (p *Pool) newBackend(bo BackendOptions, initial bool) *Backend {
	b := &Backend{Addr: bo.Addr, p: p, id: bo.Addr.String()}
	b.conf.Store(&bo)
	b.st = backendState{admin: bo.Admin, healthy: !p.cfg.checked, initial: initial}
	b.st.state = StateDown
	if initial {
		b.st.state = b.st.effective()
		b.st.everUp = b.st.state == StateUp
	} else {
		b.st.everUp = true
	}
	b.up.Store(b.st.state == StateUp)
	b.state.Store(uint32(b.st.state))
	return b
}

// check returns every problem in o, joined.
func (o Options) check() error {
	var errs []error
	if o.Balance > Random {
		errs = append(errs, fmt.Errorf("unknown balance %v", o.Balance))
	}
	if o.HashKey > ClientIPPort {
		errs = append(errs, fmt.Errorf("unknown hash key %v", o.HashKey))
	}
	if o.TableSize < 0 {
		errs = append(errs, fmt.Errorf("table size %d is negative", o.TableSize))
	}
	if o.Retries < 0 {
		errs = append(errs, fmt.Errorf("retries %d is negative", o.Retries))
	}
	if o.SlowStart < 0 || o.PassiveBackoff < 0 || o.PassiveFailures < 0 {
		errs = append(errs, fmt.Errorf("negative slow start %v, passive failures %d or backoff %v",
			o.SlowStart, o.PassiveFailures, o.PassiveBackoff))
	}
	if o.Balance == Maglev && o.TableSize >= 0 {
		if err := maglev.CheckSize(len(o.Backends), o.tableSize()); err != nil {
			errs = append(errs, err)
		}
	}
	seen := make(map[netip.AddrPort]int, len(o.Backends))
	for i, b := range o.Backends {
		switch {
		case !b.Addr.IsValid() || b.Addr.Port() == 0:
			errs = append(errs, fmt.Errorf("backend %d: invalid address %q", i, b.Addr))
		case seen[b.Addr] > 0:
			// A duplicate would be two Maglev ids alike, and is a typo
			// anyway: raise the weight instead.
			errs = append(errs, fmt.Errorf("backend %d: %s duplicates backend %d", i, b.Addr, seen[b.Addr]-1))
		default:
			seen[b.Addr] = i + 1
		}
		if b.Weight < 0 || b.Weight > MaxWeight {
			errs = append(errs, fmt.Errorf("backend %d (%s): weight %d, want 0 to %d", i, b.Addr, b.Weight, MaxWeight))
		}
		if b.Admin > Maintenance {
			errs = append(errs, fmt.Errorf("backend %d (%s): unknown admin state %v", i, b.Addr, b.Admin))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("pool %q: %w", o.Name, err)
	}
	return nil
}

// Name returns the pool's name.
func (p *Pool) Name() string { return p.name }

// Retries returns Options.Retries: how many more backends a proxy may try
// after a failed connect.
func (p *Pool) Retries() int { return p.sel.Load().cfg.retries }

// Backends returns the pool's backends, up or down, in the order of the
// Options given to New or the last Update. The slice must not be
// modified; Update replaces it rather than changing it.
func (p *Pool) Backends() []*Backend {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.backends
}
