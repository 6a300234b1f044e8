package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"

	"sluice/config"
	"sluice/internal/admin"
	"sluice/internal/pool"
)

// edits applies the admin API's changes to pools' backend sets: a
// weight, a backend added or removed. They last until the next reload,
// which starts again from the file. Pools
// whose backends come from DNS refuse them: their records decide.
type edits struct {
	log    *slog.Logger
	checks *checks
	disc   *discovery

	mu    sync.Mutex // serialises edits, and guards each pool's backends
	pools map[string]*editable
}

// editable is one pool whose backends the API may change.
type editable struct {
	cfg      config.Pool
	pool     *pool.Pool
	backends []pool.BackendOptions                // the set the pool was last given
	closer   func(context.Context, *pool.Backend) // closes a backend's connections on every TCP server over the pool
}

var _ admin.Editor = (*edits)(nil)

// newEdits lets the API edit every pool of cfg not discovered from DNS.
// Connections left on a removed backend are closed after the drain
// timeout, by disc's timers (stopped and joined with it).
func newEdits(cfg *config.Config, pools map[string]*pool.Pool, downs *downs, c *checks, disc *discovery, log *slog.Logger) *edits {
	e := &edits{log: log, checks: c, disc: disc, pools: map[string]*editable{}}
	for _, pc := range cfg.Pools {
		if pc.Discover != nil {
			continue
		}
		p := pools[pc.Name]
		ep := &editable{cfg: pc, pool: p, backends: poolOptions(pc, log).Backends, closer: downs.closer(p)}
		e.pools[pc.Name] = ep
	}
	return e
}

// SetWeight implements admin.Editor.
func (e *edits) SetWeight(name string, addr netip.AddrPort, weight int) error {
	if weight < 1 || weight > pool.MaxWeight {
		return fmt.Errorf("%w: weight %d, want 1 to %d", admin.ErrInvalid, weight, pool.MaxWeight)
	}
	return e.edit(name, func(bs []pool.BackendOptions) ([]pool.BackendOptions, error) {
		i := slices.IndexFunc(bs, func(b pool.BackendOptions) bool { return b.Addr == addr })
		if i < 0 {
			return nil, fmt.Errorf("%w: pool %q has no backend %s", admin.ErrNotFound, name, addr)
		}
		bs = slices.Clone(bs)
		bs[i].Weight = weight
		return bs, nil
	})
}

// AddBackend implements admin.Editor.
func (e *edits) AddBackend(name string, b pool.BackendOptions) error {
	return e.edit(name, func(bs []pool.BackendOptions) ([]pool.BackendOptions, error) {
		if slices.ContainsFunc(bs, func(o pool.BackendOptions) bool { return o.Addr == b.Addr }) {
			return nil, fmt.Errorf("%w: pool %q has backend %s already", admin.ErrConflict, name, b.Addr)
		}
		return append(slices.Clip(bs), b), nil
	})
}

// RemoveBackend implements admin.Editor.
func (e *edits) RemoveBackend(name string, addr netip.AddrPort) error {
	return e.edit(name, func(bs []pool.BackendOptions) ([]pool.BackendOptions, error) {
		i := slices.IndexFunc(bs, func(b pool.BackendOptions) bool { return b.Addr == addr })
		switch {
		case i < 0:
			return nil, fmt.Errorf("%w: pool %q has no backend %s", admin.ErrNotFound, name, addr)
		case len(bs) == 1:
			return nil, fmt.Errorf("%w: %s is pool %q's last backend", admin.ErrConflict, addr, name)
		}
		return slices.Delete(slices.Clone(bs), i, i+1), nil
	})
}

// edit gives pool name the backends change makes of its current ones:
// one Update (states of the backends that stay carried over), checks
// started for added backends and stopped for removed ones, whose
// connections are closed after the drain timeout.
func (e *edits) edit(name string, change func([]pool.BackendOptions) ([]pool.BackendOptions, error)) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	ep := e.pools[name]
	if ep == nil {
		if _, ok := e.disc.pools[name]; ok {
			return fmt.Errorf("%w: pool %q takes its backends from DNS", admin.ErrConflict, name)
		}
		return fmt.Errorf("%w: no pool %q", admin.ErrNotFound, name)
	}
	next, err := change(ep.backends)
	if err != nil {
		return err
	}
	o := poolOptions(ep.cfg, e.log)
	o.Backends = next
	ch, err := ep.pool.Update(o)
	if err != nil {
		return fmt.Errorf("%w: %w", admin.ErrInvalid, err)
	}
	ep.backends = next
	for _, b := range ch.Removed {
		e.checks.remove(ep.pool, b)
	}
	for _, b := range ch.Added {
		if err := e.checks.add(name, ep.pool, b, ep.cfg.DiscoveredHealth(b.Addr), healthPreamble(ep.cfg.SendProxy)); err != nil {
			e.log.Error("checking an added backend", slog.String("pool", name),
				slog.String("backend", b.String()), slog.String("error", err.Error()))
		}
	}
	e.disc.closeLater(&discovered{cfg: ep.cfg, pool: ep.pool, closer: ep.closer}, ch.Removed)
	return nil
}
