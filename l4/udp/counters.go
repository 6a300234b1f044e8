package udp

import (
	"net/netip"
	"sync/atomic"
	"time"

	"sluice/internal/tally"
)

// Counters are a UDP listener's session metrics, kept as sessions open and
// end: atomic adds, no lock, nothing allocated per datagram or session (a
// backend's counters are made once). Share one between the Servers over
// one listener; the admin interface reads them when scraped. A nil
// *Counters counts nothing. Datagram counts are the Server's Stats.
type Counters struct {
	duration *tally.Histogram
	backends tally.Table[netip.AddrPort, BackendCounters]
}

// BackendCounters are the counts of a listener's sessions with one
// backend.
type BackendCounters struct {
	live    atomic.Int64
	ends    [len(endNames)]atomic.Uint64
	in, out atomic.Uint64
}

// NewCounters returns empty counters.
func NewCounters() *Counters {
	return &Counters{duration: tally.NewHistogram(tally.ConnectionBuckets)}
}

// Duration returns the histogram of sessions' lifetimes.
func (c *Counters) Duration() tally.Snapshot { return c.duration.Read() }

// Backends calls f with each backend's counters.
func (c *Counters) Backends(f func(addr netip.AddrPort, b *BackendCounters)) { c.backends.Each(f) }

// Live returns the backend's live sessions.
func (b *BackendCounters) Live() int64 { return b.live.Load() }

// Ends calls f with each way a session ended and how many did.
func (b *BackendCounters) Ends(f func(e End, n uint64)) {
	for e := range b.ends {
		if n := b.ends[e].Load(); n > 0 {
			f(End(e), n)
		}
	}
}

// Bytes returns the bytes received from clients and sent to them in the
// sessions that ended.
func (b *BackendCounters) Bytes() (in, out uint64) { return b.in.Load(), b.out.Load() }

// opened counts a session opened with backend addr and returns its
// backend's counters for ended.
func (c *Counters) opened(addr netip.AddrPort) *BackendCounters {
	if c == nil {
		return nil
	}
	b := c.backends.Get(addr)
	b.live.Add(1)
	return b
}

// ended counts the end of a session opened with b.
func (c *Counters) ended(b *BackendCounters, e End, in, out int64, d time.Duration) {
	if c == nil || b == nil {
		return
	}
	b.live.Add(-1)
	b.ends[e].Add(1)
	b.in.Add(uint64(max(in, 0)))
	b.out.Add(uint64(max(out, 0)))
	c.duration.Observe(d)
}
