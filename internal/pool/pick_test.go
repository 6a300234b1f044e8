package pool

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
)

var allBalances = []Balance{RoundRobin, LeastConn, Maglev, Random}

var client = netip.MustParseAddrPort("192.0.2.1:40000")

// randomClient returns a client address drawn from r.
func randomClient(r *rand.Rand) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())}), uint16(r.Uint32()))
}

// letters names the backends of bs a, b, c, ... by their position in p.
func letters(p *Pool, bs []*Backend) string {
	var sb strings.Builder
	for _, b := range bs {
		sb.WriteByte(byte('a' + slices.Index(p.Backends(), b)))
	}
	return sb.String()
}

func TestRoundRobin(t *testing.T) {
	tests := []struct {
		weights []int
		cycle   string // nginx's smooth order
	}{
		{[]int{1}, "a"},
		{[]int{1, 1, 1}, "abc"},
		{[]int{5, 1, 1}, "aabacaa"},
		{[]int{3, 2}, "ababa"},
		{[]int{2, 2}, "ab"}, // reduced by the gcd: the same order, repeated
		{[]int{4, 2, 2}, "abca"},
		{[]int{1, 2, 3}, "cbacbc"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.weights), func(t *testing.T) {
			p := mustNew(t, Options{Backends: backends(tt.weights...)})
			var got []*Backend
			for range 10 * len(tt.cycle) {
				got = append(got, p.Pick(client, nil))
			}
			if want := strings.Repeat(tt.cycle, 10); letters(p, got) != want {
				t.Fatalf("picks = %s, want %s", letters(p, got), want)
			}
			// Smooth: a backend of the smallest weight never comes
			// twice in a row, even across the end of a cycle.
			for i := 1; i < len(got) && len(tt.weights) > 1; i++ {
				if got[i] == got[i-1] && got[i].Weight() == slices.Min(tt.weights) {
					t.Fatalf("%s picked twice in a row at %d", got[i], i)
				}
			}
		})
	}
}

// TestLeastConnProportional holds every connection: the picks must fill the
// backends in proportion to their weights.
func TestLeastConnProportional(t *testing.T) {
	p := mustNew(t, Options{Balance: LeastConn, Backends: backends(1, 2, 3)})
	for range 600 {
		p.Pick(client, nil).Acquire()
	}
	for _, b := range p.Backends() {
		if want := int64(100 * b.Weight()); b.Active() < want-1 || b.Active() > want+1 {
			t.Errorf("%s (weight %d) holds %d connections, want %d±1", b, b.Weight(), b.Active(), want)
		}
	}
}

// TestLeastConnTies checks that ties are broken across all tied backends,
// in proportion to weight-normalised load, never towards a loaded one.
func TestLeastConnTies(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
		active  []int64
		want    []float64 // share of picks
	}{
		{"idle", []int{1, 1, 1, 1}, []int64{0, 0, 0, 0}, []float64{.25, .25, .25, .25}},
		{"weighted tie", []int{1, 2, 1}, []int64{1, 2, 5}, []float64{.5, .5, 0}},
		{"one least", []int{1, 1, 1}, []int64{3, 2, 3}, []float64{0, 1, 0}},
	}
	const n = 40_000
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustNew(t, Options{Balance: LeastConn, Backends: backends(tt.weights...)})
			for i, b := range p.Backends() {
				b.active.Store(tt.active[i])
			}
			counts := make(map[*Backend]int)
			for range n {
				counts[p.Pick(client, nil)]++
			}
			for i, b := range p.Backends() {
				// Binomial sd at n=40000 is at most 250 (0.6%); 3% is
				// 5 sd away.
				if got := float64(counts[b]) / n; got < tt.want[i]-0.03 || got > tt.want[i]+0.03 {
					t.Errorf("%s got %.3f of picks, want %.3f", b, got, tt.want[i])
				}
			}
		})
	}
}

// chiSquare returns Pearson's statistic for counts against shares
// proportional to weights.
func chiSquare(p *Pool, counts map[*Backend]int, n int) float64 {
	total := 0
	for _, b := range p.Backends() {
		total += b.Weight()
	}
	x := 0.0
	for _, b := range p.Backends() {
		want := float64(n) * float64(b.Weight()) / float64(total)
		d := float64(counts[b]) - want
		x += d * d / want
	}
	return x
}

func TestRandomProportional(t *testing.T) {
	p := mustNew(t, Options{Balance: Random, Backends: backends(1, 2, 3, 4)})
	const n = 200_000
	counts := make(map[*Backend]int)
	for range n {
		counts[p.Pick(client, nil)]++
	}
	// 3 degrees of freedom: P(X > 40) is about 1e-8, so this cannot
	// flake in practice, and a real bias of even 2% gives X in the
	// hundreds at this n.
	if x := chiSquare(p, counts, n); x > 40 {
		t.Errorf("chi-square = %.1f over %v, want <= 40", x, counts)
	}
}

// TestRandomPrefersIdle loads one of four equal backends: the power of two
// choices picks it only when both draws hit it, 1/16 of the time.
func TestRandomPrefersIdle(t *testing.T) {
	p := mustNew(t, Options{Balance: Random, Backends: backends(1, 1, 1, 1)})
	busy := p.Backends()[2]
	busy.active.Store(100)
	const n = 100_000
	hits := 0
	for range n {
		if p.Pick(client, nil) == busy {
			hits++
		}
	}
	// Expect 0.0625 with sd 0.0008.
	if got := float64(hits) / n; got < 0.055 || got > 0.07 {
		t.Errorf("the busy backend got %.4f of picks, want about 0.0625", got)
	}
}

func TestMaglevOrderIndependent(t *testing.T) {
	for _, key := range []HashKey{ClientIP, ClientIPPort} {
		bs := backends(1, 2, 3, 1, 1, 2, 5)
		p := mustNew(t, Options{Balance: Maglev, HashKey: key, Backends: bs})
		slices.Reverse(bs)
		bs[0], bs[3] = bs[3], bs[0]
		q := mustNew(t, Options{Balance: Maglev, HashKey: key, Backends: bs})
		r := rand.New(rand.NewPCG(1, 2))
		seen := make(map[string]bool)
		for range 10_000 {
			c := randomClient(r)
			a, b := p.Pick(c, nil), q.Pick(c, nil)
			if a.String() != b.String() {
				t.Fatalf("%v: client %s goes to %s in one pool and %s in the other", key, c, a, b)
			}
			if again := p.Pick(c, nil); again != a {
				t.Fatalf("%v: client %s goes to %s then %s", key, c, a, again)
			}
			seen[a.String()] = true
		}
		if len(seen) != len(bs) {
			t.Errorf("%v: 10000 clients reached %d of %d backends", key, len(seen), len(bs))
		}
	}
}

func TestMaglevHashKey(t *testing.T) {
	ports := func(key HashKey) int {
		p := mustNew(t, Options{Balance: Maglev, HashKey: key, Backends: backends(1, 1, 1, 1)})
		seen := make(map[*Backend]bool)
		for port := range uint16(100) {
			seen[p.Pick(netip.AddrPortFrom(client.Addr(), port+1), nil)] = true
		}
		return len(seen)
	}
	if n := ports(ClientIP); n != 1 {
		t.Errorf("client_ip: 100 ports of one client reach %d backends, want 1", n)
	}
	if n := ports(ClientIPPort); n != 4 {
		t.Errorf("client_ip_port: 100 ports of one client reach %d backends, want 4", n)
	}
}

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
