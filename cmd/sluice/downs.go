package main

import (
	"context"
	"slices"
	"sync"

	"sluice/internal/access"
	"sluice/internal/pool"
	"sluice/l4"
)

// downs reaches, for each pool, every TCP proxy over it: those of the
// configuration in force and those a reload retired that still drain.
// Connections to a backend are closed through it when the backend is
// marked down in a pool with on_down = "close", and when a removed
// backend's drain timeout has passed. A pool is watched once, however
// many reloads it lives through (pool.OnDown cannot be undone).
//
// It also keeps each pool's drain pace (drain_rate), one l4.Pacer shared
// by every TCP proxy over the pool and by every drain of its backends, so
// that the rate bounds the pool's closes as a whole, across reloads.
type downs struct {
	mu      sync.Mutex
	servers map[*pool.Pool][]*l4.Server
	close   map[*pool.Pool]bool // on_down = "close"
	paces   map[*pool.Pool]*l4.Pacer
}

func newDowns() *downs {
	return &downs{servers: map[*pool.Pool][]*l4.Server{}, close: map[*pool.Pool]bool{},
		paces: map[*pool.Pool]*l4.Pacer{}}
}

// pacer returns p's drain pace, made (not pacing) the first time; nil for
// no pool.
func (d *downs) pacer(p *pool.Pool) *l4.Pacer {
	if p == nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	pc := d.paces[p]
	if pc == nil {
		pc = l4.NewPacer(0, 0)
		d.paces[p] = pc
	}
	return pc
}

// setRate sets p's drain pace to its configuration's drain_rate.
func (d *downs) setRate(p *pool.Pool, r access.Rate) {
	d.pacer(p).SetRate(r.N, r.Per)
}

// watch closes the connections of p's backends marked down, while its
// configuration says on_down = "close".
func (d *downs) watch(p *pool.Pool) {
	p.OnDown(func(b *pool.Backend) {
		d.mu.Lock()
		on := d.close[p]
		d.mu.Unlock()
		if on {
			d.closeBackend(p, b)
		}
	})
}

// closeOnDown records whether p's configuration says on_down = "close".
func (d *downs) closeOnDown(p *pool.Pool, on bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.close[p] = on
}

// add and remove a TCP proxy over p.
func (d *downs) add(p *pool.Pool, s *l4.Server) {
	if p == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.servers[p] = append(slices.Clip(d.servers[p]), s)
}

func (d *downs) remove(p *pool.Pool, s *l4.Server) {
	if p == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	ss := slices.DeleteFunc(slices.Clone(d.servers[p]), func(x *l4.Server) bool { return x == s })
	if len(ss) == 0 {
		delete(d.servers, p)
	} else {
		d.servers[p] = ss
	}
}

// all returns every TCP proxy, current or retired, once each: an upgrade
// hands over the connections of all of them.
func (d *downs) all() []*l4.Server {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []*l4.Server
	for _, ss := range d.servers {
		for _, s := range ss {
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out
}

// closer returns a function closing a backend's connections on every TCP
// proxy over p, at p's drain_rate (until ctx ends) or, without one, at
// once as when the backend goes down.
func (d *downs) closer(p *pool.Pool) func(context.Context, *pool.Backend) {
	return func(ctx context.Context, b *pool.Backend) {
		if !d.pacer(p).Paced() {
			d.closeBackend(p, b)
			return
		}
		d.mu.Lock()
		ss := d.servers[p]
		d.mu.Unlock()
		// One after the other: they share the pool's pace, so the
		// whole takes as long either way.
		for _, s := range ss {
			s.DrainBackend(ctx, b)
		}
	}
}

// closeAll closes every connection of every TCP proxy at once: a second
// signal during a paced drain.
func (d *downs) closeAll() {
	d.mu.Lock()
	var ss []*l4.Server
	for _, list := range d.servers {
		ss = append(ss, list...)
	}
	d.mu.Unlock()
	for _, s := range ss {
		s.Close()
	}
}

func (d *downs) closeBackend(p *pool.Pool, b *pool.Backend) {
	d.mu.Lock()
	ss := d.servers[p]
	d.mu.Unlock()
	for _, s := range ss {
		s.CloseBackend(b)
	}
}
