package l7

import (
	"net/netip"
	"sync/atomic"
	"time"

	"sluice/internal/tally"
)

// Counters are an HTTP listener's request metrics, kept as requests start
// and end: atomic adds and a lookup in a table that only grows when a new
// (route, backend, status, end) appears; no lock, nothing allocated per
// request. Share one between the Servers over one listener; the admin
// interface reads them when scraped. A nil *Counters counts nothing.
type Counters struct {
	current  atomic.Int64
	duration *tally.Histogram
	requests tally.Table[RequestKey, RequestCounters]
}

// RequestKey is what a request's counts are kept by, as its log line says
// them: its route, backend (zero if none), status and end.
type RequestKey struct {
	Route   string
	Backend netip.AddrPort
	Status  int
	End     End
}

// RequestCounters are the counts of the requests of one key.
type RequestCounters struct {
	n, in, out, retries atomic.Uint64
}

// NewCounters returns empty counters.
func NewCounters() *Counters {
	return &Counters{duration: tally.NewHistogram(tally.RequestBuckets)}
}

// Current returns the requests in flight.
func (c *Counters) Current() int64 { return c.current.Load() }

// Duration returns the histogram of requests' durations, from their first
// byte to the response's last.
func (c *Counters) Duration() tally.Snapshot { return c.duration.Read() }

// Requests calls f with each key's counts: requests, request body bytes
// received, response body bytes sent, and retries.
func (c *Counters) Requests(f func(k RequestKey, n, in, out, retries uint64)) {
	c.requests.Each(func(k RequestKey, r *RequestCounters) {
		f(k, r.n.Load(), r.in.Load(), r.out.Load(), r.retries.Load())
	})
}

func (c *Counters) started() {
	if c != nil {
		c.current.Add(1)
	}
}

func (c *Counters) ended(k RequestKey, in, out int64, retries int, d time.Duration) {
	if c == nil {
		return
	}
	c.current.Add(-1)
	r := c.requests.Get(k)
	r.n.Add(1)
	r.in.Add(uint64(max(in, 0)))
	r.out.Add(uint64(max(out, 0)))
	if retries > 0 {
		r.retries.Add(uint64(retries))
	}
	c.duration.Observe(d)
}
