package main

import (
	"slices"
	"sync"

	"sluice/internal/pool"
	"sluice/l4"
)

// downs reaches, for each pool, every TCP proxy over it: those of the
// configuration in force and those a reload retired that still drain.
// Connections to a backend are closed through it when the backend is
// marked down in a pool with on_down = "close", and when a removed
// backend's drain timeout has passed. A pool is watched once, however
// many reloads it lives through (pool.OnDown cannot be undone).
type downs struct {
	mu      sync.Mutex
	servers map[*pool.Pool][]*l4.Server
	close   map[*pool.Pool]bool // on_down = "close"
}

func newDowns() *downs {
	return &downs{servers: map[*pool.Pool][]*l4.Server{}, close: map[*pool.Pool]bool{}}
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

// closer returns a function closing a backend's connections on every TCP
// proxy over p.
func (d *downs) closer(p *pool.Pool) func(*pool.Backend) {
	return func(b *pool.Backend) { d.closeBackend(p, b) }
}

func (d *downs) closeBackend(p *pool.Pool, b *pool.Backend) {
	d.mu.Lock()
	ss := d.servers[p]
	d.mu.Unlock()
	for _, s := range ss {
		s.CloseBackend(b)
	}
}
