package l4

import (
	"net/netip"
	"sync/atomic"
	"time"

	"sluice/internal/tally"
)

// Counters are a TCP listener's metrics, kept as the connections go:
// atomic adds, no lock, nothing allocated per connection (a backend's
// counters are made once, the first time it is used). Share one between
// the Servers a reload puts on one listener, so its counts go on; the
// admin interface reads them when scraped. A nil *Counters counts
// nothing.
type Counters struct {
	live     atomic.Int64
	connect  *tally.Histogram
	duration *tally.Histogram
	backends tally.Table[netip.AddrPort, BackendCounters]
}

// BackendCounters are the counts of a listener's connections to one
// backend; the zero address holds those that never had one (refused,
// no backend).
type BackendCounters struct {
	live             atomic.Int64
	ends             [len(endNames)]atomic.Uint64
	in, out, retries atomic.Uint64
}

// NewCounters returns empty counters.
func NewCounters() *Counters {
	return &Counters{connect: tally.NewHistogram(tally.ConnectBuckets), duration: tally.NewHistogram(tally.ConnectionBuckets)}
}

// Live returns the connections accepted and not yet ended.
func (c *Counters) Live() int64 { return c.live.Load() }

// ConnectTime returns the histogram of connects to backends that
// succeeded, from the connect call until the socket was writable (or the
// dial returned, for connections that end TLS).
func (c *Counters) ConnectTime() tally.Snapshot { return c.connect.Read() }

// Duration returns the histogram of connections' lifetimes, from accept
// to close.
func (c *Counters) Duration() tally.Snapshot { return c.duration.Read() }

// Backends calls f with each backend's counters.
func (c *Counters) Backends(f func(addr netip.AddrPort, b *BackendCounters)) { c.backends.Each(f) }

// Live returns the connections established to the backend and not yet
// ended.
func (b *BackendCounters) Live() int64 { return b.live.Load() }

// Ends calls f with each way a connection ended and how many did.
func (b *BackendCounters) Ends(f func(e End, n uint64)) {
	for e := range b.ends {
		if n := b.ends[e].Load(); n > 0 {
			f(End(e), n)
		}
	}
}

// Bytes returns the bytes received from clients and sent to them, over
// the connections that ended.
func (b *BackendCounters) Bytes() (in, out uint64) { return b.in.Load(), b.out.Load() }

// Retries returns the failed connects before each ended connection's last
// attempt.
func (b *BackendCounters) Retries() uint64 { return b.retries.Load() }

// accepted counts a connection accepted.
func (c *Counters) accepted() {
	if c != nil {
		c.live.Add(1)
	}
}

// connected counts a connection established to backend addr after a
// connect that took d, and returns the backend's counters for ended.
func (c *Counters) connected(addr netip.AddrPort, d time.Duration) *BackendCounters {
	if c == nil {
		return nil
	}
	c.connect.Observe(d)
	b := c.backends.Get(addr)
	b.live.Add(1)
	return b
}

// ended counts a connection's end. b is what connected returned, nil if
// it never connected; addr is its backend's (zero if none).
func (c *Counters) ended(b *BackendCounters, addr netip.AddrPort, e End, in, out int64, d time.Duration, retries int) {
	if c == nil {
		return
	}
	c.live.Add(-1)
	if b != nil {
		b.live.Add(-1)
	} else {
		b = c.backends.Get(addr)
	}
	b.ends[e].Add(1)
	b.in.Add(uint64(max(in, 0)))
	b.out.Add(uint64(max(out, 0)))
	if retries > 0 {
		b.retries.Add(uint64(retries))
	}
	c.duration.Observe(d)
}
