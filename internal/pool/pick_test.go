package pool

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
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
