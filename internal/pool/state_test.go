package pool

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"
)

// TestTried checks, for every algorithm, that Pick skips the backends a
// connection already tried: with two of three tried it returns the third,
// with all three tried it returns nil.
func TestTried(t *testing.T) {
	for _, bal := range allBalances {
		t.Run(bal.String(), func(t *testing.T) {
			p := mustNew(t, Options{Balance: bal, Backends: backends(1, 2, 3)})
			bs := p.Backends()
			r := rand.New(rand.NewPCG(7, 8))
			for left := range bs {
				tried := []*Backend{bs[(left+1)%3], bs[(left+2)%3]}
				for range 200 {
					if got := p.Pick(randomClient(r), tried); got != bs[left] {
						t.Fatalf("Pick with %v tried = %v, want %s", tried, got, bs[left])
					}
				}
				// Load the untried one: least_conn and random must
				// still return it rather than a tried backend.
				bs[left].active.Store(50)
				if got := p.Pick(randomClient(r), tried); got != bs[left] {
					t.Fatalf("Pick with %v tried and %s loaded = %v", tried, bs[left], got)
				}
				bs[left].active.Store(0)
			}
			for range 100 {
				if got := p.Pick(randomClient(r), bs); got != nil {
					t.Fatalf("Pick with every backend tried = %s, want nil", got)
				}
			}
		})
	}
}

// TestTriedOne checks that one tried backend is skipped while the others
// keep being picked.
func TestTriedOne(t *testing.T) {
	for _, bal := range allBalances {
		t.Run(bal.String(), func(t *testing.T) {
			p := mustNew(t, Options{Balance: bal, Backends: backends(1, 1, 1)})
			bs := p.Backends()
			r := rand.New(rand.NewPCG(9, 10))
			seen := make(map[*Backend]int)
			for range 3000 {
				seen[p.Pick(randomClient(r), bs[:1])]++
			}
			if seen[bs[0]] > 0 || seen[nil] > 0 || seen[bs[1]] == 0 || seen[bs[2]] == 0 {
				t.Errorf("picks with %s tried: %v", bs[0], seen)
			}
		})
	}
}

func TestSetUp(t *testing.T) {
	for _, bal := range allBalances {
		t.Run(bal.String(), func(t *testing.T) {
			p := mustNew(t, Options{Balance: bal, Backends: backends(1, 2, 3)})
			bs := p.Backends()
			r := rand.New(rand.NewPCG(11, 12))
			picks := func() map[*Backend]int {
				m := make(map[*Backend]int)
				for range 3000 {
					m[p.Pick(randomClient(r), nil)]++
				}
				return m
			}
			p.SetUp(bs[1], false)
			if bs[1].Up() {
				t.Fatal("SetUp(false) left the backend up")
			}
			if m := picks(); m[bs[1]] > 0 || m[nil] > 0 || m[bs[0]] == 0 || m[bs[2]] == 0 {
				t.Fatalf("picks with %s down: %v", bs[1], m)
			}
			p.SetUp(bs[0], false)
			p.SetUp(bs[2], false)
			if m := picks(); m[nil] != 3000 {
				t.Fatalf("picks with every backend down: %v, want only nil", m)
			}
			p.SetUp(bs[1], true)
			p.SetUp(bs[1], true) // no change: a no-op
			if m := picks(); m[bs[1]] != 3000 {
				t.Fatalf("picks with only %s up: %v", bs[1], m)
			}
			p.SetUp(bs[0], true)
			p.SetUp(bs[2], true)
			if m := picks(); m[bs[0]] == 0 || m[bs[1]] == 0 || m[bs[2]] == 0 || m[nil] > 0 {
				t.Fatalf("picks with every backend back up: %v", m)
			}
		})
	}
}

// TestConcurrent picks, acquires and releases from several goroutines while
// another flaps a backend; run it with -race. One backend stays up, so Pick
// never returns nil.
func TestConcurrent(t *testing.T) {
	for _, bal := range allBalances {
		t.Run(bal.String(), func(t *testing.T) {
			p := mustNew(t, Options{Balance: bal, TableSize: 1009, Backends: backends(1, 2, 3)})
			bs := p.Backends()
			var wg sync.WaitGroup
			stop := make(chan struct{})
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						p.SetUp(bs[0], true)
						p.SetUp(bs[1], true)
						return
					default:
						p.SetUp(bs[i%2], i%4 < 2)
					}
				}
			})
			var pickers sync.WaitGroup
			for g := range 4 {
				pickers.Go(func() {
					r := rand.New(rand.NewPCG(uint64(g), 13))
					for range 2000 {
						b := p.Pick(randomClient(r), bs[:1])
						if b == nil {
							t.Error("Pick returned nil with a backend up")
							return
						}
						b.Acquire()
						b.Release()
					}
				})
			}
			pickers.Wait()
			close(stop)
			wg.Wait()
			for _, b := range bs {
				if b.Active() != 0 || !b.Up() {
					t.Errorf("%s: active %d, up %v; want 0, true", b, b.Active(), b.Up())
				}
			}
		})
	}
}

func TestPickAllocs(t *testing.T) {
	for _, bal := range allBalances {
		p := mustNew(t, Options{Balance: bal, Backends: backends(1, 2, 3)})
		tried := p.Backends()[:1]
		if n := testing.AllocsPerRun(100, func() { p.Pick(client, tried) }); n != 0 {
			t.Errorf("%v: Pick allocates %v times", bal, n)
		}
	}
}

func BenchmarkPick(b *testing.B) {
	for _, bal := range allBalances {
		for _, n := range []int{3, 100} {
			weights := make([]int, n)
			for i := range weights {
				weights[i] = i%4 + 1
			}
			p := mustNew(b, Options{Balance: bal, Backends: backends(weights...)})
			b.Run(fmt.Sprintf("%v/%d", bal, n), func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					c := client
					for pb.Next() {
						c = netipNext(c)
						p.Pick(c, nil)
					}
				})
			})
			b.Run(fmt.Sprintf("%v/%d/retry", bal, n), func(b *testing.B) {
				b.ReportAllocs()
				tried := p.Backends()[:2]
				c := client
				for b.Loop() {
					c = netipNext(c)
					p.Pick(c, tried)
				}
			})
		}
	}
}

// netipNext returns the client after c, so that benchmarks hash a new key
// every time.
func netipNext(c netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(c.Addr(), c.Port()+1)
}
