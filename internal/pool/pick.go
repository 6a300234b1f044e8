package pool

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync/atomic"

	"sluice/internal/maglev"
)

// Pick returns an up backend for a new connection from client, skipping the
// backends in tried (those this connection already failed to connect to),
// or nil if none is left. It does not allocate or take a lock: it runs for
// every connection. The one exception is a Maglev retry: the first after a
// change of state that skips a given backend, or pair of backends, builds
// the table without them, and concurrent ones wait for that build (see
// selection.without).
func (p *Pool) Pick(client netip.AddrPort, tried []*Backend) *Backend {
	s := p.sel.Load()
	if len(s.up) == 0 {
		return nil
	}
	// Retries are rare and tried is short, so this O(up*tried) check
	// costs little, and it lets the probing loops below assume that an
	// untried backend exists.
	if len(tried) > 0 && allTried(s.up, tried) {
		return nil
	}
	switch s.cfg.balance {
	case LeastConn:
		return s.leastLoaded(tried)
	case Maglev:
		return s.maglev(client, s.cfg.hashKey == ClientIPPort, tried)
	case Random:
		return s.random(tried)
	default:
		return s.roundRobin(&p.next, tried)
	}
}

// roundRobin takes the next entry of the smooth sequence, or on a retry
// the first one after it that was not tried.
func (s *selection) roundRobin(next *atomic.Uint64, tried []*Backend) *Backend {
	n := uint64(len(s.seq))
	i := (next.Add(1) - 1) % n
	for range n {
		if b := s.up[s.seq[i]]; !slices.Contains(tried, b) {
			return b
		}
		if i++; i == n {
			i = 0
		}
	}
	return nil
}

// leastLoaded returns the backend of s.up, not in tried, with the fewest
// live connections per unit of weight, choosing uniformly among ties so
// that an idle pool is not filled front to back.
//
// A first pass finds the least load and counts its ties, a second returns
// the r-th tie: one random number per pick, where reservoir sampling would
// draw one per tie (100 draws in an idle pool of 100). Loads may change
// between the passes; then the first pass's choice stands.
func (s *selection) leastLoaded(tried []*Backend) *Backend {
	best, bestActive, ties := s.minLoad(tried)
	if ties <= 1 {
		return s.up[best]
	}
	// math/rand/v2's top-level functions use the runtime's per-thread
	// generator: no lock.
	r := rand.IntN(ties)
	for i, b := range s.up {
		if slices.Contains(tried, b) || compareLoad(b.active.Load(), s.w[i], bestActive, s.w[best]) != 0 {
			continue
		}
		if r == 0 {
			return b
		}
		r--
	}
	return s.up[best]
}

// minLoad returns the index in s.up of the first least loaded backend not
// in tried, its live connections, and how many backends share its load.
// The caller has checked that some backend is untried.
func (s *selection) minLoad(tried []*Backend) (best int, bestActive int64, ties int) {
	best = -1
	for i, b := range s.up {
		if slices.Contains(tried, b) {
			continue
		}
		active := b.active.Load()
		c := -1
		if best >= 0 {
			c = compareLoad(active, s.w[i], bestActive, s.w[best])
		}
		switch {
		case c < 0:
			best, bestActive, ties = i, active, 1
		case c == 0:
			ties++
		}
	}
	return best, bestActive, ties
}

// compareLoad compares the loads a/wa and b/wb, returning -1, 0 or +1. It
// multiplies rather than divides, a*wb against b*wa, to stay exact without
// floats; counts and weights (at most MaxWeight*slowStartSteps) are far too
// small to overflow.
func compareLoad(a int64, wa int, b int64, wb int) int {
	l, r := a*int64(wb), b*int64(wa)
	switch {
	case l < r:
		return -1
	case l > r:
		return 1
	}
	return 0
}

// maglev looks client up in the Maglev table; on a retry, in the table
// without the backends already tried, so that the client goes where every
// host sends it once those backends are marked down. Tables leave out at
// most two backends (see selection.less): after three or more failures
// the client walks on from its slot in the table without the two tried
// backends of lowest id to the first slot of an untried one, the same walk
// on every host. Pick has checked that some backend is left.
func (s *selection) maglev(client netip.AddrPort, withPort bool, tried []*Backend) *Backend {
	h := maglev.HashAddr(client, withPort)
	if len(tried) == 0 {
		return s.up[s.table.Lookup(h)]
	}
	i, j, n := s.lowestTwo(tried)
	if i < 0 {
		return s.up[s.table.Lookup(h)]
	}
	t := s.without(i, j)
	if n <= 2 {
		return t.up[t.table.Lookup(h)]
	}
	// Every backend owns a slot of t (maglev's fill gives each one in
	// its first round), and some of t.up is untried, so this ends within
	// one turn of the table; slots come from every backend, in
	// proportion to weight, so the clients of the failed backends spread
	// over the others rather than all landing on one neighbour.
	for k := range t.table.Size() {
		if b := t.up[t.table.Probe(h, k)]; !slices.Contains(tried, b) {
			return b
		}
	}
	return nil
}

// lowestTwo returns the indices into s.up of the two backends of tried
// with the lowest ids (i first), -1 for each missing, and how many
// backends of s.up are in tried. Ids, not positions, make the choice the
// same on hosts that list the backends in another order.
func (s *selection) lowestTwo(tried []*Backend) (i, j, n int) {
	i, j = -1, -1
	for k, b := range s.up {
		if !slices.Contains(tried, b) {
			continue
		}
		n++
		switch {
		case i < 0 || b.id < s.up[i].id:
			i, j = k, i
		case j < 0 || b.id < s.up[j].id:
			j = k
		}
	}
	return i, j, n
}

// random draws two backends in proportion to weight and returns the less
// loaded one: the power of two choices, which avoids herding onto the
// least loaded backend when the loads seen by concurrent picks are stale.
func (s *selection) random(tried []*Backend) *Backend {
	ia, ib := s.seq[rand.IntN(len(s.seq))], s.seq[rand.IntN(len(s.seq))]
	a, b := s.up[ia], s.up[ib]
	if len(tried) > 0 {
		aTried, bTried := slices.Contains(tried, a), slices.Contains(tried, b)
		switch {
		case aTried && bTried:
			// Redrawing could loop long when most backends were
			// tried; a scan is bounded.
			return s.leastLoaded(tried)
		case aTried:
			return b
		case bTried:
			return a
		}
	}
	if compareLoad(b.active.Load(), s.w[ib], a.active.Load(), s.w[ia]) < 0 {
		return b
	}
	return a
}

// allTried reports whether every backend of bs is in tried.
func allTried(bs, tried []*Backend) bool {
	for _, b := range bs {
		if !slices.Contains(tried, b) {
			return false
		}
	}
	return true
}
