// Package cache is the shared HTTP cache of sluice's L7 routes: it stores
// backend responses in memory, bounded by size, and serves them by the
// rules of RFC 9111 (freshness, Age, Vary, conditional revalidation,
// invalidation), RFC 5861 (stale-while-revalidate, stale-if-error) and
// RFC 9211 (the Cache-Status header). Concurrent misses for one object
// make one backend request.
//
//	c := cache.New(cache.Options{MaxSize: 512 << 20})
//	defer c.Close()
//	resp, outcome, err := c.RoundTrip(c.Key(clientRequest), outgoingRequest, origin)
//
// The cache sits between the reverse proxy and the backends (it is the
// proxy's transport for a route with a cache), so that it can answer a
// revalidation's 304 itself and stores the backend's own bytes, before a
// route's response rewrites and compression.
package cache

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"
)

// Defaults for the zero values of Options' fields.
const (
	DefaultMaxSize         = 256 << 20
	DefaultMaxObject       = 8 << 20
	DefaultCoalesceTimeout = 10 * time.Second
	// DefaultMaxVariants bounds the variants (Vary) kept per URI, so a
	// header with endless values cannot crowd one entry.
	DefaultMaxVariants = 32
)

// entryOverhead is what an object costs beyond its body, headers and key:
// the object and entry structs, the variants slice and the store's node,
// about 600 bytes in heap profiles; counting it keeps a flood of tiny
// objects within MaxSize too.
const entryOverhead = 640

// Options configure a Cache. The zero value works: a 256 MiB cache that
// keys on the whole URI and uses only the freshness responses state.
type Options struct {
	// Name names the cache in Cache-Status ("sluice" when empty).
	Name string
	// MaxSize bounds the memory held, counting bodies, headers, keys and
	// bookkeeping, in bytes; zero means DefaultMaxSize.
	MaxSize int64
	// MaxObject is the largest response body stored; larger ones stream
	// through without being buffered. Zero means DefaultMaxObject (or
	// MaxSize/8 if that is smaller).
	MaxObject int64
	// DefaultTTL is the freshness given to a response that states none
	// (no max-age, s-maxage or Expires), for the statuses RFC 9111
	// section 4.2.2 lets a cache choose one for; zero means none.
	DefaultTTL time.Duration
	// MaxTTL caps any freshness lifetime, stated or not; zero means no
	// cap.
	MaxTTL time.Duration
	// Heuristics computes a freshness for responses that state none from
	// Last-Modified: a tenth of its age (RFC 9111 section 4.2.2), capped
	// by DefaultTTL when that is set. Off by default.
	Heuristics bool
	// CacheAuthorized stores responses to requests with Authorization
	// where RFC 9111 section 3.5 allows it (the response says public,
	// s-maxage or must-revalidate); false never stores them.
	CacheAuthorized bool
	// Query says which query parameters are part of the key; QueryParams
	// lists them for QueryList.
	Query       Query
	QueryParams []string
	// StaleWhileRevalidate and StaleIfError are RFC 5861's windows for
	// responses that state none; zero means none.
	StaleWhileRevalidate time.Duration
	StaleIfError         time.Duration
	// CoalesceTimeout bounds how long a miss waits for another request
	// already fetching the same object before it goes to the backend
	// itself; zero means DefaultCoalesceTimeout, negative no waiting.
	CoalesceTimeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (o *Options) maxSize() int64 {
	if o.MaxSize <= 0 {
		return DefaultMaxSize
	}
	return o.MaxSize
}

func (o *Options) maxObject() int64 {
	if o.MaxObject > 0 {
		return min(o.MaxObject, o.maxSize())
	}
	return min(DefaultMaxObject, o.maxSize()/8)
}

// fillBudget bounds the bytes of responses being buffered to store at
// once, beyond MaxSize: a quarter of it, or one largest object if that is
// more. Past it, misses stream through unstored, so that many concurrent
// large misses cannot take memory without bound.
func (o *Options) fillBudget() int64 { return max(o.maxSize()/4, o.maxObject()) }

func (o *Options) coalesceTimeout() time.Duration {
	switch {
	case o.CoalesceTimeout == 0:
		return DefaultCoalesceTimeout
	case o.CoalesceTimeout < 0:
		return 0
	}
	return o.CoalesceTimeout
}

func (o *Options) name() string {
	if o.Name == "" {
		return "sluice"
	}
	return o.Name
}

func (o *Options) now() time.Time {
	if o.Now == nil {
		return time.Now()
	}
	return o.Now()
}

// Cache is one shared HTTP cache. Its methods are safe for concurrent use.
type Cache struct {
	opt   Options
	store *otter.Cache[string, *entry]

	mu      sync.Mutex         // guards flights; taken by misses, never by hits
	flights map[string]*flight // requests fetching an object now, by key

	ctx    context.Context // of background revalidations; cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // background revalidations

	stats   counters
	filling atomic.Int64 // bytes of response bodies being buffered to store
}

// counters are the cache's outcomes since it was made.
type counters struct {
	hits, misses, stale, revalidated, bypass, evictions, stored, purged atomic.Int64
	waiting                                                             atomic.Int64 // a gauge
}

// Stats are a cache's counters and its current size.
type Stats struct {
	// Hits were served from the cache without asking a backend.
	Hits int64
	// Misses were forwarded for want of a usable object.
	Misses int64
	// Stale were served stale: while revalidating in the background, or
	// because the backend failed (stale-if-error).
	Stale int64
	// Revalidated were forwarded as conditional requests and answered
	// from the cache after the backend's 304.
	Revalidated int64
	// Bypass were not for the cache (methods other than GET and HEAD).
	Bypass int64
	// Evictions are objects dropped to stay under MaxSize.
	Evictions int64
	// Stored are responses stored.
	Stored int64
	// Purged are objects removed through Purge.
	Purged int64
	// Waiting is how many misses wait now for another request fetching
	// the same object.
	Waiting int64
	// Objects is how many URIs are stored now, and Bytes their weight.
	Objects int
	Bytes   int64
}

// New returns an empty cache.
func New(opt Options) *Cache {
	c := &Cache{opt: opt, flights: make(map[string]*flight)}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.store = otter.Must(&otter.Options[string, *entry]{
		MaximumWeight: uint64(opt.maxSize()),
		Weigher: func(key string, e *entry) uint32 {
			return uint32(min(int64(len(key))+e.size(), 1<<32-1))
		},
		OnDeletion: func(ev otter.DeletionEvent[string, *entry]) {
			if ev.WasEvicted() {
				c.stats.evictions.Add(1)
			}
		},
		// Run deletion callbacks where they happen: the default starts
		// a goroutine per deletion, which no one would own.
		Executor: func(fn func()) { fn() },
	})
	return c
}

// Close stops background revalidations and waits for them. The cache
// still serves what it holds, but revalidates in the foreground.
func (c *Cache) Close() {
	c.cancel()
	c.wg.Wait()
}

// Stats returns the cache's counters.
func (c *Cache) Stats() Stats {
	s := &c.stats
	return Stats{Hits: s.hits.Load(), Misses: s.misses.Load(), Stale: s.stale.Load(),
		Revalidated: s.revalidated.Load(), Bypass: s.bypass.Load(), Evictions: s.evictions.Load(),
		Stored: s.stored.Load(), Purged: s.purged.Load(), Waiting: s.waiting.Load(),
		Objects: c.store.EstimatedSize(), Bytes: int64(c.store.WeightedSize())}
}

// Purge removes the object stored for url (scheme://host/path?query, as
// clients ask for it), with every variant, or with prefix every object
// whose URI starts with url. It returns how many URIs it removed.
func (c *Cache) Purge(url string, prefix bool) int {
	n := 0
	if !prefix {
		if _, ok := c.store.Invalidate(normalURL(url, c.opt.Query, c.opt.QueryParams)); ok {
			n = 1
		}
	} else {
		p := normalURL(url, QueryAll, nil)
		var keys []string
		for k := range c.store.Keys() {
			if strings.HasPrefix(k, p) {
				keys = append(keys, k)
			}
		}
		for _, k := range keys {
			if _, ok := c.store.Invalidate(k); ok {
				n++
			}
		}
	}
	c.stats.purged.Add(int64(n))
	return n
}

// normalURL turns a URL as a user writes it into a key's form.
func normalURL(u string, q Query, params []string) string {
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		return u
	}
	hostEnd := strings.IndexAny(rest, "/?")
	host, target := rest, ""
	if hostEnd >= 0 {
		host, target = rest[:hostEnd], rest[hostEnd:]
	}
	path, query, _ := strings.Cut(target, "?")
	return buildKey(strings.ToLower(scheme), host, path, query, q, params)
}

// entry is what is stored for one URI: its variants, newest first. It is
// never changed once stored; a store replaces it.
type entry struct {
	variants []*object
}

func (e *entry) size() int64 {
	var n int64
	for _, o := range e.variants {
		n += o.size
	}
	return n
}

// match returns the variant a request may be served from (RFC 9111 section
// 4.1): the newest one whose Vary fields the request matches.
func (e *entry) match(h http.Header) *object {
	for _, o := range e.variants {
		if o.varyStar {
			continue
		}
		if secondaryKey(o.varyNames, h) == o.secondary {
			return o
		}
	}
	return nil
}

// with returns a copy of e with o in place of the variant of the same
// secondary key, or added first.
func (e *entry) with(o *object) *entry {
	n := &entry{variants: make([]*object, 0, len(e.variants)+1)}
	n.variants = append(n.variants, o)
	for _, v := range e.variants {
		if v.secondary == o.secondary && strings.Join(v.varyNames, ",") == strings.Join(o.varyNames, ",") {
			continue
		}
		if len(n.variants) < DefaultMaxVariants {
			n.variants = append(n.variants, v)
		}
	}
	return n
}

// put stores o under key, beside the key's other variants.
func (c *Cache) put(key string, o *object) {
	c.store.Compute(key, func(old *entry, found bool) (*entry, otter.ComputeOp) {
		if !found {
			return &entry{variants: []*object{o}}, otter.WriteOp
		}
		return old.with(o), otter.WriteOp
	})
	c.stats.stored.Add(1)
}

// invalidate removes every variant stored for key.
func (c *Cache) invalidate(key string) { c.store.Invalidate(key) }
