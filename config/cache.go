package config

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"sluice/l7/cache"
)

// Cache is one [caches.NAME] table: an HTTP cache that routes name with
// cache = "NAME" and share.
type Cache struct {
	// Name is the table key, 1 to 64 characters of [A-Za-z0-9_.-].
	Name string
	// Options are the cache's, with MaxSize and MaxObject filled in.
	Options cache.Options
}

// cacheKeys are the keys of a [caches.NAME] table.
var cacheKeys = []string{"max_size", "max_object", "default_ttl", "max_ttl", "heuristics", "cache_authorized",
	"key_query", "stale_while_revalidate", "stale_if_error", "coalesce_timeout"}

// Limits of caches.
const (
	minCacheSize = 1 << 20
	maxCacheSize = 1 << 40
	// maxObjectSize is what the store can weigh (a uint32).
	maxObjectSize = 1<<32 - 1<<20
)

// caches reads the [caches] tables.
func (d *decoder) caches(top *table) []Cache {
	var out []Cache
	tables, _ := top.names("caches")
	for _, t := range tables {
		out = append(out, d.cache(t))
	}
	return out
}

func (d *decoder) cache(t *table) Cache {
	t.allow(cacheKeys...)
	c := Cache{Name: t.name, Options: cache.Options{MaxSize: cache.DefaultMaxSize}}
	o := &c.Options
	size := ByteSize(o.MaxSize)
	if t.text("max_size", &size) && (size < minCacheSize || size > maxCacheSize) {
		t.errorf("max_size", "must be 1MiB..1TiB, not %s", size)
	}
	o.MaxSize = int64(size)
	obj := ByteSize(min(cache.DefaultMaxObject, o.MaxSize/8))
	if t.text("max_object", &obj) {
		switch {
		case obj < 1:
			t.errorf("max_object", "must be at least 1 byte")
		case int64(obj) > o.MaxSize || obj > maxObjectSize:
			t.errorf("max_object", "%s is larger than max_size (%s) or 4GiB", obj, ByteSize(o.MaxSize))
		}
	}
	o.MaxObject = int64(obj)
	t.duration("default_ttl", &o.DefaultTTL, false)
	t.duration("max_ttl", &o.MaxTTL, false)
	if o.MaxTTL > 0 && o.DefaultTTL > o.MaxTTL {
		t.errorf("default_ttl", "%v is longer than max_ttl (%v)", o.DefaultTTL, o.MaxTTL)
	}
	t.boolean("heuristics", &o.Heuristics)
	t.boolean("cache_authorized", &o.CacheAuthorized)
	t.duration("stale_while_revalidate", &o.StaleWhileRevalidate, false)
	t.duration("stale_if_error", &o.StaleIfError, false)
	t.duration("coalesce_timeout", &o.CoalesceTimeout, false)
	if t.has("coalesce_timeout") && o.CoalesceTimeout == 0 {
		// "0s" is no waiting: cache.Options' zero would be its
		// default, 10s, the opposite of what was written.
		o.CoalesceTimeout = -1
	}
	t.keyQuery(o)
	return c
}

// keyQuery reads key_query: "all", "none", or the list of parameters kept.
func (t *table) keyQuery(o *cache.Options) {
	v, ok := t.value("key_query")
	if !ok {
		return
	}
	if s, isStr := v.(string); isStr {
		switch s {
		case "all":
			o.Query = cache.QueryAll
		case "none":
			o.Query = cache.QueryNone
		default:
			t.errorf("key_query", "%s: want \"all\", \"none\" or an array of parameter names", quote(s))
		}
		return
	}
	names := t.stringList("key_query")
	for _, n := range names {
		if n == "" {
			t.errorf("key_query", "parameter names must not be empty")
			return
		}
	}
	if names != nil {
		o.Query, o.QueryParams = cache.QueryList, names
	}
}

// cacheNames returns the names of caches, sorted.
func cacheNames(cs []Cache) []string {
	names := make([]string, len(cs))
	for i, c := range cs {
		names[i] = c.Name
	}
	slices.Sort(names)
	return names
}

// Cache returns the cache with the given name, or nil if there is none.
func (c *Config) Cache(name string) *Cache {
	for i := range c.Caches {
		if c.Caches[i].Name == name {
			return &c.Caches[i]
		}
	}
	return nil
}

// ByteSize is a size in bytes, written as an integer with a unit: B, KiB,
// MiB, GiB, TiB (powers of 1024) or KB, MB, GB, TB (powers of 1000).
type ByteSize int64

var sizeUnits = []struct {
	name string
	n    int64
}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
	{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"kB", 1e3}, {"B", 1}}

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *ByteSize) UnmarshalText(text []byte) error {
	str := strings.TrimSpace(string(text))
	for _, u := range sizeUnits {
		num, ok := strings.CutSuffix(str, u.name)
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
		if err != nil || n < 0 {
			break
		}
		if n > math.MaxInt64/u.n {
			return fmt.Errorf("size %s is out of range", quote(str))
		}
		*s = ByteSize(n * u.n)
		return nil
	}
	return fmt.Errorf("invalid size %s: want a whole number and a unit (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB), such as \"512MiB\"", quote(str))
}

// String writes s in the largest binary unit that divides it.
func (s ByteSize) String() string {
	for _, u := range sizeUnits[:4] {
		if s != 0 && int64(s)%u.n == 0 {
			return strconv.FormatInt(int64(s)/u.n, 10) + u.name
		}
	}
	return strconv.FormatInt(int64(s), 10) + "B"
}
