package main

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"sluice/config"
	"sluice/internal/discover"
	"sluice/internal/pool"
)

// firstResolveWait bounds the first resolution of a discovered pool at
// start. Past it the pool starts empty (its clients are refused, and
// logged as such) and its watcher keeps trying.
const firstResolveWait = 5 * time.Second

// discovery keeps the pools with a [discover] table in line with DNS: one
// watcher goroutine per pool; the connections left on removed backends
// are closed after the drain timeout by later, which outlives a reload.
// stop stops and joins the watchers.
type discovery struct {
	log   *slog.Logger
	drain time.Duration
	pools map[string]*discovered
	later *laterCloses

	cancel context.CancelFunc
	wg     sync.WaitGroup // the watchers
}

// discovered is one discovered pool.
type discovered struct {
	cfg     config.Pool
	watcher *discover.Watcher
	pool    *pool.Pool
	closer  func(context.Context, *pool.Backend) // closes a backend's connections on every TCP server over the pool
}

// newDiscovery builds a watcher for each pool of cfg with a [discover]
// table. Nothing runs until start.
func newDiscovery(cfg *config.Config, later *laterCloses, log *slog.Logger) *discovery {
	d := &discovery{log: log, drain: cfg.DrainTimeout, pools: map[string]*discovered{}, later: later}
	for _, pc := range cfg.Pools {
		if pc.Discover == nil {
			continue
		}
		dc := pc.Discover
		d.pools[pc.Name] = &discovered{cfg: pc, watcher: &discover.Watcher{
			Name:     pc.Name,
			Source:   discover.Source{SRV: dc.SRV, Host: dc.Host, Port: dc.Port, Resolver: dc.Resolver},
			Interval: dc.Interval,
			Logger:   log,
		}}
	}
	return d
}

// resolve gives o, the options of pool pc, its first discovered backends
// if pc is discovered; none if the first resolution fails (the watcher
// logs it).
func (d *discovery) resolve(pc config.Pool, o *pool.Options) {
	dp := d.pools[pc.Name]
	if dp == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), firstResolveWait)
	defer cancel()
	o.Backends, _ = dp.watcher.Resolve(ctx)
}

// start runs the watchers. Each change updates its pool, stops the checks
// of removed backends, starts those of added ones, and closes the
// connections left on removed backends after the drain timeout.
func (d *discovery) start(pools map[string]*pool.Pool, downs *downs, c *checks) {
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	for name, dp := range d.pools {
		dp.pool = pools[name]
		dp.closer = downs.closer(dp.pool)
		dp.watcher.Apply = func(bs []pool.BackendOptions) { d.apply(dp, bs, c) }
		d.wg.Go(func() { dp.watcher.Run(ctx) })
	}
}

// apply gives dp's pool the backends bs, keeping the state of those that
// stay. It runs on dp's watcher goroutine.
func (d *discovery) apply(dp *discovered, bs []pool.BackendOptions, c *checks) {
	o := poolOptions(dp.cfg, d.log)
	o.Backends = bs
	ch, err := dp.pool.Update(o)
	if err != nil {
		// Such as a Maglev table_size smaller than the new set.
		d.log.Error("discovered backends not applied", slog.String("pool", dp.cfg.Name), slog.String("error", err.Error()))
		return
	}
	// Removed first: a backend removed and added back (revived) gets a
	// fresh checker, never two.
	for _, b := range ch.Removed {
		c.remove(dp.pool, b)
	}
	for _, b := range ch.Added {
		if err := c.add(dp.cfg.Name, dp.pool, b, dp.cfg.DiscoveredHealth(b.Addr), healthPreamble(dp.cfg.SendProxy)); err != nil {
			d.log.Error("checking a discovered backend", slog.String("pool", dp.cfg.Name),
				slog.String("backend", b.String()), slog.String("error", err.Error()))
		}
	}
	d.closeLater(dp, ch.Removed)
}

// closeLater closes the connections still on the removed backends bs once
// the drain timeout has passed, as a shutdown does with its own.
func (d *discovery) closeLater(dp *discovered, bs []*pool.Backend) {
	d.later.after(d.drain, dp.cfg.Name, bs, msgRemoved, (*pool.Backend).Removed, dp.closer)
}

// The log lines of laterCloses.
const (
	msgRemoved = "closing the connections of a removed backend"
	msgDrained = "closing the connections of a backend drained by hand"
)

// stop stops the watchers and waits for them.
func (d *discovery) stop() {
	if d.cancel != nil {
		d.cancel()
	}
	d.wg.Wait()
}

// laterCloses closes the connections left on removed backends (and on
// backends drained by hand, with a drain_rate) once the drain timeout has
// passed: one timer per change, whichever configuration made it, so that
// a reload does not forget the closes its predecessor scheduled. stop
// stops them, ends the paced closes under way, and joins them.
type laterCloses struct {
	log *slog.Logger

	ctx     context.Context // ends at stop: the paced closes under way stop
	cancel  context.CancelFunc
	wg      sync.WaitGroup // the running close timers
	mu      sync.Mutex
	timers  map[*time.Timer]bool // pending closes
	stopped bool
}

func newLaterCloses(log *slog.Logger) *laterCloses {
	ctx, cancel := context.WithCancel(context.Background())
	return &laterCloses{log: log, ctx: ctx, cancel: cancel, timers: map[*time.Timer]bool{}}
}

// after closes, after drain, the connections close finds on those of bs
// for which still holds then and that have not changed since (see
// pool.Backend.Changes), logging msg (pool names them in the log).
func (lc *laterCloses) after(drain time.Duration, pool string, bs []*pool.Backend, msg string,
	still func(*pool.Backend) bool, close func(context.Context, *pool.Backend)) {
	if len(bs) == 0 || close == nil {
		return
	}
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.stopped {
		return
	}
	gens := make([]uint64, len(bs))
	for i, b := range bs {
		gens[i] = b.Changes()
	}
	lc.wg.Add(1)
	var t *time.Timer
	t = time.AfterFunc(drain, func() {
		defer lc.wg.Done()
		lc.mu.Lock()
		delete(lc.timers, t)
		lc.mu.Unlock()
		for i, b := range bs {
			// A backend added back (or enabled) since is no
			// longer draining; one removed or drained again since
			// is in a later drain, which has its own timer.
			if b.Changes() != gens[i] || !still(b) || b.Active() == 0 {
				continue
			}
			lc.log.Info(msg, slog.String("pool", pool),
				slog.String("backend", b.String()), slog.Int64("connections", b.Active()),
				slog.Duration("drain_timeout", drain))
			close(lc.ctx, b)
		}
	})
	lc.timers[t] = true
}

// stop stops the pending closes and waits for those running.
func (lc *laterCloses) stop() {
	lc.cancel()
	lc.mu.Lock()
	lc.stopped = true
	for t := range lc.timers {
		if t.Stop() {
			lc.wg.Done()
		}
	}
	lc.timers = nil
	lc.mu.Unlock()
	lc.wg.Wait()
}
