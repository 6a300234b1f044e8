// Package tally is the counting side of the proxies' metrics: histograms
// with fixed buckets and tables of per-key counters, updated with atomic
// adds and read by the admin interface when it is scraped. Once a key has
// been seen, counting takes no lock and allocates nothing, so l4, l4/udp
// and l7 keep their own typed counters on their paths instead of building
// a log record for a metrics handler to parse.
//
//	h := tally.NewHistogram(tally.ConnectionBuckets)
//	h.Observe(d)
//	snap := h.Read() // at scrape time
package tally

import (
	"maps"
	"sync"
	"sync/atomic"
	"time"
)

// Bucket bounds of the histograms the proxies keep: connections last from
// a millisecond (a refused one) to hours (a database pool's); connects and
// requests from a tenth of a millisecond to their timeouts.
var (
	ConnectionBuckets = []time.Duration{time.Millisecond, 5 * time.Millisecond, 25 * time.Millisecond,
		100 * time.Millisecond, 500 * time.Millisecond, time.Second, 5 * time.Second, 30 * time.Second,
		2 * time.Minute, 10 * time.Minute, time.Hour}
	ConnectBuckets = []time.Duration{100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
		time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond,
		25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
		500 * time.Millisecond, time.Second, 5 * time.Second}
	RequestBuckets = []time.Duration{500 * time.Microsecond, time.Millisecond, 2500 * time.Microsecond,
		5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
		100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond, time.Second,
		2500 * time.Millisecond, 5 * time.Second, 10 * time.Second, 30 * time.Second}
)

// Histogram counts durations in fixed buckets. Observe is two atomic adds
// after a search of the (short) bounds; it is safe from any goroutine.
type Histogram struct {
	bounds []time.Duration // upper bounds, ascending; shared, never written
	counts []atomic.Uint64 // per bucket (not cumulative); the last is +Inf
	sum    atomic.Int64    // nanoseconds
}

// NewHistogram returns a histogram with bounds, which must ascend.
func NewHistogram(bounds []time.Duration) *Histogram {
	return &Histogram{bounds: bounds, counts: make([]atomic.Uint64, len(bounds)+1)}
}

// Observe counts d.
func (h *Histogram) Observe(d time.Duration) {
	i := 0
	for i < len(h.bounds) && d > h.bounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
}

// Snapshot is a histogram as read: cumulative counts per bound, as
// Prometheus wants them.
type Snapshot struct {
	Bounds     []time.Duration
	Cumulative []uint64 // observations <= Bounds[i]
	Count      uint64
	Sum        time.Duration
}

// Read returns h's counts. Taken while observations go on, it may be a
// few observations behind in some buckets, never ahead.
func (h *Histogram) Read() Snapshot {
	s := Snapshot{Bounds: h.bounds, Cumulative: make([]uint64, len(h.bounds)), Sum: time.Duration(h.sum.Load())}
	var n uint64
	for i := range h.counts {
		n += h.counts[i].Load()
		if i < len(h.bounds) {
			s.Cumulative[i] = n
		}
	}
	s.Count = n
	return s
}

// Table maps keys to counters made on first use, for readers and writers
// that must not take a lock: the map is replaced whole (copied) when a key
// is added, which happens once per key. Its zero value is empty and ready.
type Table[K comparable, V any] struct {
	m  atomic.Pointer[map[K]*V]
	mu sync.Mutex // serialises additions
}

// Get returns k's counters, made (zero) the first time.
func (t *Table[K, V]) Get(k K) *V {
	if m := t.m.Load(); m != nil {
		if v, ok := (*m)[k]; ok {
			return v
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	next := map[K]*V{}
	if m := t.m.Load(); m != nil {
		if v, ok := (*m)[k]; ok {
			return v
		}
		next = maps.Clone(*m)
	}
	v := new(V)
	next[k] = v
	t.m.Store(&next)
	return v
}

// Each calls f for every key and its counters, in no order.
func (t *Table[K, V]) Each(f func(K, *V)) {
	if m := t.m.Load(); m != nil {
		for k, v := range *m {
			f(k, v)
		}
	}
}
