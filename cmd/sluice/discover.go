package main

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"sluice/config"
	"sluice/internal/discover"
	"sluice/internal/pool"
	"sluice/l4"
)

// firstResolveWait bounds the first resolution of a discovered pool at
// start. Past it the pool starts empty (its clients are refused, and
// logged as such) and its watcher keeps trying.
const firstResolveWait = 5 * time.Second

// discovery keeps the pools with a [discover] table in line with DNS: one
// watcher goroutine per pool, and a timer per change that closes what is
// left on removed backends after the drain timeout. stop stops and joins
// them all.
type discovery struct {
	log   *slog.Logger
	drain time.Duration
	pools map[string]*discovered

	cancel context.CancelFunc
	wg     sync.WaitGroup // the watchers and the running close timers

	mu      sync.Mutex
	timers  map[*time.Timer]bool // pending closes
	stopped bool
}

// discovered is one discovered pool.
type discovered struct {
	cfg     config.Pool
	watcher *discover.Watcher
	pool    *pool.Pool
	closers []func(*pool.Backend) // each TCP server's CloseBackend
}

// newDiscovery builds a watcher for each pool of cfg with a [discover]
// table. Nothing runs until start.
func newDiscovery(cfg *config.Config, log *slog.Logger) *discovery {
	d := &discovery{log: log, drain: cfg.DrainTimeout, pools: map[string]*discovered{}, timers: map[*time.Timer]bool{}}
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

// checkAll adds a checker for every backend the discovered pools start
// with.
func (d *discovery) checkAll(c *checks, pools map[string]*pool.Pool) error {
	for name, dp := range d.pools {
		p := pools[name]
		for _, b := range p.Backends() {
			if err := c.add(name, p, b, dp.cfg.DiscoveredHealth(b.Addr), healthPreamble(dp.cfg.SendProxy)); err != nil {
				return err
			}
		}
	}
	return nil
}

// start runs the watchers. Each change updates its pool, stops the checks
// of removed backends, starts those of added ones, and closes the
// connections left on removed backends after the drain timeout.
func (d *discovery) start(pools map[string]*pool.Pool, tcp []*l4.Server, c *checks) {
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	for name, dp := range d.pools {
		dp.pool = pools[name]
		for _, s := range tcp {
			if s.Pool == dp.pool {
				dp.closers = append(dp.closers, s.CloseBackend)
			}
		}
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
	if len(ch.Removed) > 0 && len(dp.closers) > 0 {
		d.closeLater(dp, ch.Removed)
	}
}

// closeLater closes the connections still on the removed backends bs once
// the drain timeout has passed, as a shutdown does with its own.
func (d *discovery) closeLater(dp *discovered, bs []*pool.Backend) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return
	}
	d.wg.Add(1)
	var t *time.Timer
	t = time.AfterFunc(d.drain, func() {
		defer d.wg.Done()
		d.mu.Lock()
		delete(d.timers, t)
		d.mu.Unlock()
		for _, b := range bs {
			// A backend added back since is no longer draining.
			if !b.Removed() || b.Active() == 0 {
				continue
			}
			d.log.Info("closing the connections of a removed backend", slog.String("pool", dp.cfg.Name),
				slog.String("backend", b.String()), slog.Int64("connections", b.Active()),
				slog.Duration("drain_timeout", d.drain))
			for _, f := range dp.closers {
				f(b)
			}
		}
	})
	d.timers[t] = true
}

// stop stops the watchers and pending closes, and waits for them.
func (d *discovery) stop() {
	if d.cancel != nil {
		d.cancel()
	}
	d.mu.Lock()
	d.stopped = true
	for t := range d.timers {
		if t.Stop() {
			d.wg.Done()
		}
	}
	d.timers = nil
	d.mu.Unlock()
	d.wg.Wait()
}
