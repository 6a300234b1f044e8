package config

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"sluice/l7/cache"
)

func TestParseCaches(t *testing.T) {
	cfg, err := parseFake(httpHead + `[[listeners.web.routes]]
path = "/static/"
pool = "db"
cache = "assets"
[caches.assets]
max_size = "512MiB"
max_object = "16MiB"
default_ttl = "1h"
max_ttl = "24h"
heuristics = true
key_query = ["v"]
stale_while_revalidate = "30s"
stale_if_error = "1h"
[caches.api]
max_size = "64MB"
key_query = "none"
cache_authorized = true
` + poolDB)
	if err != nil {
		t.Fatal(err)
	}
	want := []Cache{
		{Name: "api", Options: cache.Options{MaxSize: 64e6, MaxObject: 8e6, Query: cache.QueryNone, CacheAuthorized: true}},
		{Name: "assets", Options: cache.Options{MaxSize: 512 << 20, MaxObject: 16 << 20, DefaultTTL: time.Hour, MaxTTL: 24 * time.Hour,
			Heuristics: true, Query: cache.QueryList, QueryParams: []string{"v"}, StaleWhileRevalidate: 30 * time.Second, StaleIfError: time.Hour}},
	}
	if !reflect.DeepEqual(cfg.Caches, want) {
		t.Errorf("caches:\n got %+v\nwant %+v", cfg.Caches, want)
	}
	if r := cfg.Listeners[0].HTTP.Routes[0]; r.Cache != "assets" {
		t.Errorf("route cache %q", r.Cache)
	}
}

func TestParseBadCaches(t *testing.T) {
	for _, tc := range []struct {
		name string
		toml string
		want []string
	}{
		{"unknown cache", httpHead + "[[listeners.web.routes]]\npool = \"db\"\ncache = \"nope\"\n" + poolDB,
			[]string{`t.toml:6: listeners.web.routes[0].cache: no cache "nope" in this file`}},
		{"cache on a redirect", httpHead + "[[listeners.web.routes]]\nredirect = \"/x\"\ncache = \"c\"\n[caches.c]\n" + poolDB,
			[]string{"t.toml:6: listeners.web.routes[0].cache: applies only with pool"}},
		{"bad sizes", "[caches.c]\nmax_size = \"12 parsecs\"\nmax_object = \"2GiB\"\n" + httpHead + "pool = \"db\"\n" + poolDB,
			[]string{`t.toml:2: caches.c.max_size: invalid size "12 parsecs"`, `t.toml:3: caches.c.max_object: 2GiB is larger than max_size (256MiB)`}},
		{"too small", "[caches.c]\nmax_size = \"1KiB\"\n" + httpHead + "pool = \"db\"\n" + poolDB,
			[]string{`t.toml:2: caches.c.max_size: must be 1MiB..1TiB, not 1KiB`}},
		{"unknown key and bad query", "[caches.c]\nmax_age = \"1h\"\nkey_query = \"some\"\n" + httpHead + "pool = \"db\"\n" + poolDB,
			[]string{`t.toml:2: caches.c.max_age: unknown key`, `t.toml:3: caches.c.key_query: "some": want "all", "none"`}},
		{"not a Go duration", "[caches.c]\nmax_ttl = \"1d\"\n" + httpHead + "pool = \"db\"\n" + poolDB,
			[]string{`t.toml:2: caches.c.max_ttl: invalid duration "1d"`}},
		{"default over max", "[caches.c]\ndefault_ttl = \"2h\"\nmax_ttl = \"1h\"\n" + httpHead + "pool = \"db\"\n" + poolDB,
			[]string{`t.toml:2: caches.c.default_ttl: 2h0m0s is longer than max_ttl (1h0m0s)`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseFake(tc.toml)
			if !errors.As(err, new(Errors)) {
				t.Fatalf("got %v, want Errors", err)
			}
			wantContains(t, err.Error(), tc.want...)
		})
	}
}

// coalesce_timeout = "0s" turns waiting off; absent, the cache's default
// applies.
func TestParseCoalesceTimeout(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		want       time.Duration
	}{
		{"absent", "", 0},
		{"zero is no waiting", `coalesce_timeout = "0s"`, -1},
		{"set", `coalesce_timeout = "2s"`, 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseFake("[caches.c]\n" + tc.line + "\n" + httpHead + "[[listeners.web.routes]]\npool = \"db\"\ncache = \"c\"\n" + poolDB)
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Caches[0].Options.CoalesceTimeout; got != tc.want {
				t.Errorf("CoalesceTimeout %v, want %v", got, tc.want)
			}
		})
	}
}
