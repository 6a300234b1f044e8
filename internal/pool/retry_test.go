package pool

import (
	"math/rand/v2"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"testing"
)

// TestMaglevRetryMatchesRebuilt checks that a Maglev retry goes where the
// pool without the failed backends sends the client, so that a client
// moves once, to the same backend on every host, whether its connection
// comes before or after the checks mark the backend down: for every
// backend B, Pick(client, [B]) is Pick(client, nil) on a pool without B,
// and likewise for two failed backends.
func TestMaglevRetryMatchesRebuilt(t *testing.T) {
	for _, tc := range []struct {
		name    string
		weights []int
		key     HashKey
	}{
		{"2 backends", []int{1, 1}, ClientIP},
		{"3 backends", []int{1, 1, 1}, ClientIP},
		{"5 weighted", []int{1, 2, 3, 4, 5}, ClientIPPort},
		{"10 backends", []int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, ClientIP},
		{"10 weighted", []int{3, 1, 4, 1, 5, 9, 2, 6, 5, 3}, ClientIPPort},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := Options{Balance: Maglev, HashKey: tc.key, TableSize: 1009, Backends: backends(tc.weights...)}
			p := mustNew(t, o)
			bs := p.Backends()
			// without returns the pick of a pool built without the
			// backends at skip, as an address.
			without := func(skip ...int) func(netip.AddrPort) netip.AddrPort {
				oo := o
				oo.Backends = nil
				for i, b := range o.Backends {
					if !slices.Contains(skip, i) {
						oo.Backends = append(oo.Backends, b)
					}
				}
				q := mustNew(t, oo)
				return func(c netip.AddrPort) netip.AddrPort { return q.Pick(c, nil).Addr }
			}
			r := rand.New(rand.NewPCG(21, 22))
			for i := range bs {
				want := without(i)
				for range 500 {
					c := randomClient(r)
					if got := p.Pick(c, bs[i:i+1]); got.Addr != want(c) {
						t.Fatalf("client %v, %s tried: picked %s, the pool without it picks %s", c, bs[i], got, want(c))
					}
				}
				if len(bs) < 3 {
					continue
				}
				j := (i + 1) % len(bs)
				want2 := without(i, j)
				for range 200 {
					c := randomClient(r)
					if got := p.Pick(c, []*Backend{bs[i], bs[j]}); got.Addr != want2(c) {
						t.Fatalf("client %v, %s and %s tried: picked %s, the pool without them picks %s",
							c, bs[i], bs[j], got, want2(c))
					}
				}
			}
		})
	}
}

// TestMaglevRetryBuildsOnce checks that the retries of connections that
// failed together (a backend dying fails every connect in flight to it)
// build the table without that backend once, the others waiting for it:
// each build costs milliseconds of CPU and a table's memory, and a herd of
// them would land just when the pool is under stress.
func TestMaglevRetryBuildsOnce(t *testing.T) {
	const size, retries = 655373, 16
	p := mustNew(t, Options{Balance: Maglev, TableSize: size, Backends: backends(1, 1, 1, 1, 1, 1, 1, 1, 1, 1)})
	dead := p.Backends()[0]
	tried := []*Backend{dead}
	one := func() uint64 { // the bytes one build allocates
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		p.sel.Load().remove(0, true)
		runtime.ReadMemStats(&m1)
		return m1.TotalAlloc - m0.TotalAlloc
	}()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	start := make(chan struct{})
	var wg sync.WaitGroup
	picked := make([]*Backend, retries)
	for i := range retries {
		wg.Go(func() {
			<-start
			picked[i] = p.Pick(netip.AddrPortFrom(client.Addr(), uint16(i)), tried)
		})
	}
	close(start)
	wg.Wait()
	runtime.ReadMemStats(&m1)
	for i, b := range picked {
		if b == nil || b == dead {
			t.Fatalf("retry %d picked %v", i, b)
		}
	}
	if got := m1.TotalAlloc - m0.TotalAlloc; got > 2*one {
		t.Errorf("%d concurrent retries allocated %d bytes, %.1f builds of the table without the failed backend; want 1",
			retries, got, float64(got)/float64(one))
	}
}

// builtTables counts the selections s's retries have built, at any depth.
func builtTables(s *selection) int {
	n := 0
	for i := range s.less {
		if t := s.less[i].s; t != nil {
			n += 1 + builtTables(t)
		}
	}
	return n
}

// permutations calls f with every ordered sequence of 1 to n distinct
// elements of bs.
func permutations(bs []*Backend, n int, f func([]*Backend)) {
	var walk func(seq []*Backend)
	walk = func(seq []*Backend) {
		if len(seq) > 0 {
			f(seq)
		}
		if len(seq) == n {
			return
		}
		for _, b := range bs {
			if !slices.Contains(seq, b) {
				walk(append(slices.Clip(seq), b))
			}
		}
	}
	walk(nil)
}

// TestMaglevRetryTablesBounded fails five of ten backends in every order,
// up to four at a time (a connection with three retries tries four): the
// tables built for the retries are one per set of at most two failed
// backends, 5 + 10, not one per ordered sequence (5 + 20 + 60 + 120).
func TestMaglevRetryTablesBounded(t *testing.T) {
	p := mustNew(t, Options{Balance: Maglev, TableSize: 1009, Backends: backends(1, 1, 1, 1, 1, 1, 1, 1, 1, 1)})
	failing := p.Backends()[3:8]
	r := rand.New(rand.NewPCG(5, 6))
	permutations(failing, 4, func(tried []*Backend) {
		for range 3 {
			if b := p.Pick(randomClient(r), tried); b == nil || slices.Contains(tried, b) {
				t.Fatalf("%s tried: picked %v", letters(p, tried), b)
			}
		}
	})
	if n := builtTables(p.sel.Load()); n > 15 {
		t.Errorf("retries over 5 failing backends built %d tables, want at most 15", n)
	}
}

// TestMaglevRetryWalk checks the picks after three or more failures, which
// walk the table without two of them: never a tried backend; the same
// whatever the order of the failures or of the pool's backends, so every
// host agrees; spread over the untried backends; without allocating once
// the table is built.
func TestMaglevRetryWalk(t *testing.T) {
	o := Options{Balance: Maglev, TableSize: 1009, Backends: backends(1, 2, 1, 3, 1, 1, 2, 1)}
	p := mustNew(t, o)
	rev := o
	rev.Backends = slices.Clone(o.Backends)
	slices.Reverse(rev.Backends)
	q := mustNew(t, rev)
	// in returns q's backends at the addresses of bs.
	in := func(bs []*Backend) []*Backend {
		var out []*Backend
		for _, b := range bs {
			out = append(out, q.Backends()[slices.IndexFunc(q.Backends(), func(c *Backend) bool { return c.Addr == b.Addr })])
		}
		return out
	}
	bs := p.Backends()
	for _, tried := range [][]*Backend{
		{bs[0], bs[3], bs[5]},
		{bs[5], bs[0], bs[3]},
		{bs[1], bs[2], bs[4], bs[6]},
		{bs[7], bs[6], bs[5], bs[4], bs[3], bs[2]},
	} {
		back := slices.Clone(tried)
		slices.Reverse(back)
		r := rand.New(rand.NewPCG(7, 8))
		seen := make(map[*Backend]int)
		for range 2000 {
			c := randomClient(r)
			b := p.Pick(c, tried)
			if b == nil || slices.Contains(tried, b) {
				t.Fatalf("%s tried: client %v picked %v", letters(p, tried), c, b)
			}
			seen[b]++
			if again := p.Pick(c, back); again != b {
				t.Fatalf("client %v picked %s with %s tried, %s with %s", c, b, letters(p, tried), again, letters(p, back))
			}
			if other := q.Pick(c, in(tried)); other.Addr != b.Addr {
				t.Fatalf("%s tried: client %v picked %s, in the pool listed in reverse %s", letters(p, tried), c, b, other)
			}
		}
		if want := len(bs) - len(tried); len(seen) != want {
			t.Errorf("%s tried: 2000 clients reached %d backends, want all %d untried", letters(p, tried), len(seen), want)
		}
		if n := testing.AllocsPerRun(100, func() { p.Pick(client, tried) }); n != 0 {
			t.Errorf("%s tried: Pick allocates %v times", letters(p, tried), n)
		}
	}
}
