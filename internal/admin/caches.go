package admin

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	httpcache "sluice/l7/cache"
)

// Cache is an HTTP cache of the running configuration: /metrics counts
// its outcomes and the API purges it.
type Cache interface {
	Stats() httpcache.Stats
	Purge(url string, prefix bool) int
}

// PurgeRequest is the body of POST /api/v1/caches/{cache}/purge: the URL
// of the object to remove (as clients ask for it, with scheme and host),
// or with Prefix every object whose URL starts with it.
type PurgeRequest struct {
	URL    string `json:"url"`
	Prefix bool   `json:"prefix,omitempty"`
}

// PurgeJSON answers a purge: how many URLs were removed (each with every
// variant).
type PurgeJSON struct {
	Purged int `json:"purged"`
}

// CacheJSON is one cache's counters in the API.
type CacheJSON struct {
	Name string `json:"name"`
	httpcache.Stats
}

// caches lists every cache with its counters.
func (s *Server) caches(w http.ResponseWriter, r *http.Request) {
	out := []CacheJSON{}
	for _, name := range slices.Sorted(maps.Keys(s.o.Caches)) {
		out = append(out, CacheJSON{Name: name, Stats: s.o.Caches[name].Stats()})
	}
	writeJSON(w, http.StatusOK, out)
}

// purge removes an object, or every object under a prefix, from a cache.
func (s *Server) purge(w http.ResponseWriter, r *http.Request) {
	c, ok := s.o.Caches[r.PathValue("cache")]
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Errorf("admin: no cache %q", r.PathValue("cache")))
		return
	}
	var req PurgeRequest
	if !readJSON(w, r, &req) {
		return
	}
	if u, err := url.Parse(req.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		writeError(w, http.StatusBadRequest, errors.New("admin: url must be an http or https URL with a host, such as http://example.com/img/"))
		return
	}
	n := c.Purge(req.URL, req.Prefix)
	s.o.Logger.Info("cache purged", "cache", r.PathValue("cache"), "url", req.URL, "prefix", req.Prefix, "purged", n)
	writeJSON(w, http.StatusOK, PurgeJSON{Purged: n})
}

var (
	descCacheRequests = prometheus.NewDesc("sluice_cache_requests_total",
		"Requests on cached routes, by cache and outcome: hit, miss, stale (served stale), revalidated (304 from the backend), bypass (not GET or HEAD).",
		[]string{"cache", "outcome"}, nil)
	descCacheEvictions = prometheus.NewDesc("sluice_cache_evictions_total",
		"Objects a cache dropped to stay under its max_size.", []string{"cache"}, nil)
	descCacheStored = prometheus.NewDesc("sluice_cache_stored_total",
		"Responses a cache stored.", []string{"cache"}, nil)
	descCachePurged = prometheus.NewDesc("sluice_cache_purged_total",
		"Objects removed through the purge API.", []string{"cache"}, nil)
	descCacheObjects = prometheus.NewDesc("sluice_cache_objects",
		"URLs a cache holds now.", []string{"cache"}, nil)
	descCacheBytes = prometheus.NewDesc("sluice_cache_bytes",
		"Memory a cache holds now, as it counts it against max_size (bodies, headers, keys, bookkeeping).", []string{"cache"}, nil)
)

// cacheFollower collects the counters of the running configuration's
// caches, read at scrape time: the caches keep them as atomics.
type cacheFollower struct {
	caches *atomic.Pointer[map[string]Cache]
}

// Describe sends nothing: the caches change with reloads.
func (cacheFollower) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector.
func (f cacheFollower) Collect(ch chan<- prometheus.Metric) {
	cs := f.caches.Load()
	if cs == nil {
		return
	}
	counter, gauge := prometheus.CounterValue, prometheus.GaugeValue
	for name, c := range *cs {
		st := c.Stats()
		for _, o := range []struct {
			outcome string
			n       int64
		}{{"hit", st.Hits}, {"miss", st.Misses}, {"stale", st.Stale}, {"revalidated", st.Revalidated}, {"bypass", st.Bypass}} {
			ch <- prometheus.MustNewConstMetric(descCacheRequests, counter, float64(o.n), name, o.outcome)
		}
		ch <- prometheus.MustNewConstMetric(descCacheEvictions, counter, float64(st.Evictions), name)
		ch <- prometheus.MustNewConstMetric(descCacheStored, counter, float64(st.Stored), name)
		ch <- prometheus.MustNewConstMetric(descCachePurged, counter, float64(st.Purged), name)
		ch <- prometheus.MustNewConstMetric(descCacheObjects, gauge, float64(st.Objects), name)
		ch <- prometheus.MustNewConstMetric(descCacheBytes, gauge, float64(st.Bytes), name)
	}
}

// setCaches makes /metrics follow the running configuration's caches.
func (m *Metrics) setCaches(cs map[string]Cache) { m.caches.Store(&cs) }
