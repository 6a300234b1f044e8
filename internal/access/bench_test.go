package access

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

// BenchmarkACL checks clients against allow lists of 10 to 100,000
// random prefixes (and a deny list a tenth as long): the cost must stay
// flat as the lists grow. "hit" probes addresses inside listed prefixes,
// which walk the trie deepest.
func BenchmarkACL(b *testing.B) {
	for _, n := range []int{10, 1000, 10000, 100000} {
		r := rand.New(rand.NewPCG(1, 2))
		allow := randomPrefixes(r, n)
		acl := NewACL(allow, randomPrefixes(r, n/10+1))
		miss := randomAddrs(r, 4096)
		hit := make([]netip.Addr, 4096)
		for i := range hit {
			hit[i] = allow[i%n].Addr()
		}
		for _, probe := range []struct {
			name  string
			addrs []netip.Addr
		}{{"miss", miss}, {"hit", hit}} {
			b.Run(fmt.Sprintf("%s/%d", probe.name, n), func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					acl.Allowed(probe.addrs[i&4095])
				}
			})
		}
	}
}

// BenchmarkLimiter is a connection's cost: Acquire then Release, from
// many clients at once (the shards keep them apart) and from one.
func BenchmarkLimiter(b *testing.B) {
	l := NewLimiter(Limits{MaxConns: 100, Rate: Rate{N: 1_000_000, Per: time.Second}})
	b.Run("many-clients", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			r := rand.New(rand.NewPCG(rand.Uint64(), 0))
			for pb.Next() {
				a := netip.AddrFrom4([4]byte{10, byte(r.Uint32()), byte(r.Uint32()), 1})
				if l.Acquire(a) == nil {
					l.Release(a)
				}
			}
		})
	})
	b.Run("one-client", func(b *testing.B) {
		b.ReportAllocs()
		a := netip.MustParseAddr("192.0.2.1")
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if l.Acquire(a) == nil {
					l.Release(a)
				}
			}
		})
	})
}
