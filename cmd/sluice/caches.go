package main

import (
	"reflect"

	"sluice/config"
	"sluice/internal/admin"
	"sluice/l7/cache"
)

// caches are the running configuration's HTTP caches, by name. A reload
// keeps a cache whose options did not change, objects and all, so that a
// reload does not empty it.
type caches struct {
	byName map[string]*cache.Cache
	opts   map[string]cache.Options
}

// update returns the caches of cfg: the running ones that stay as they
// are, new ones for the rest. The caches it drops are closed, which stops
// their background revalidations; proxies still draining may go on
// serving from them.
func (cs *caches) update(cfg *config.Config) map[string]*cache.Cache {
	next := &caches{byName: map[string]*cache.Cache{}, opts: map[string]cache.Options{}}
	for _, cc := range cfg.Caches {
		c := cs.byName[cc.Name]
		if c == nil || !reflect.DeepEqual(cs.opts[cc.Name], cc.Options) {
			c = cache.New(cc.Options)
		}
		next.byName[cc.Name], next.opts[cc.Name] = c, cc.Options
	}
	for name, c := range cs.byName {
		if next.byName[name] != c {
			c.Close()
		}
	}
	*cs = *next
	return cs.byName
}

// close stops every cache's background revalidations.
func (cs *caches) close() {
	for _, c := range cs.byName {
		c.Close()
	}
}

// withCaches has the admin interface count and purge the caches cs.
func (a *adminSide) withCaches(cs map[string]*cache.Cache) {
	if a == nil {
		return
	}
	a.opts.Caches = make(map[string]admin.Cache, len(cs))
	for name, c := range cs {
		a.opts.Caches[name] = c
	}
}
