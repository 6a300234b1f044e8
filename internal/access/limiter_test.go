package access

import (
	"errors"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a settable clock for Limits.Now.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }
func newClock() *clock                   { c := &clock{}; c.ns.Store(1e18); return c }
func addr(s string) netip.Addr           { return netip.MustParseAddr(s) }
func isLimit(err error) bool             { return errors.Is(err, ErrClientLimit) }

func TestNoLimits(t *testing.T) {
	if NewLimiter(Limits{Clients: 10}) != nil {
		t.Fatal("a Limiter that limits nothing is not nil")
	}
	var l *Limiter
	if l.Acquire(addr("::1")) != nil || l.Allow(addr("::1")) != nil || l.Len() != 0 {
		t.Fatal("nil Limiter limits")
	}
	l.Release(addr("::1"))
}

func TestMaxConns(t *testing.T) {
	l := NewLimiter(Limits{MaxConns: 2})
	a, b := addr("192.0.2.1"), addr("192.0.2.2")
	mustAcquire(t, l, a)
	mustAcquire(t, l, addr("::ffff:192.0.2.1")) // the same client seen through a dual-stack socket
	if err := l.Acquire(a); !isLimit(err) || err != errTooMany {
		t.Fatalf("third connection: %v, want %v", err, errTooMany)
	}
	mustAcquire(t, l, b) // another client is not affected
	l.Release(a)
	mustAcquire(t, l, a)
	l.Release(a)
	l.Release(a)
	l.Release(b)
	if n := l.Len(); n != 0 {
		t.Errorf("%d clients left with no connections and no rate state", n)
	}
	l.Release(a) // one Release too many is ignored, not counted negative
	mustAcquire(t, l, a)
	mustAcquire(t, l, a)
	if err := l.Acquire(a); err == nil {
		t.Error("an extra Release raised the limit")
	}
}

func mustAcquire(t *testing.T, l *Limiter, a netip.Addr) {
	t.Helper()
	if err := l.Acquire(a); err != nil {
		t.Fatalf("Acquire(%s): %v", a, err)
	}
}

func TestRate(t *testing.T) {
	c := newClock()
	l := NewLimiter(Limits{Rate: Rate{N: 3, Per: time.Second}, Now: c.now})
	a := addr("2001:db8::1")
	for i := range 3 { // the burst
		if err := l.Allow(a); err != nil {
			t.Fatalf("event %d of the burst: %v", i, err)
		}
	}
	if err := l.Allow(a); err != errTooFast {
		t.Fatalf("past the burst: %v, want %v", err, errTooFast)
	}
	if err := l.Allow(addr("2001:db8::2")); err != nil {
		t.Fatalf("another client: %v", err)
	}
	c.advance(333 * time.Millisecond)
	if err := l.Allow(a); err != errTooFast {
		t.Fatalf("before one interval has passed: %v", err)
	}
	c.advance(time.Millisecond)
	if err := l.Allow(a); err != nil {
		t.Fatalf("after one interval: %v", err)
	}
	if err := l.Allow(a); err == nil {
		t.Fatal("one interval gave back two events")
	}
	c.advance(time.Hour)
	for i := range 3 {
		if err := l.Allow(a); err != nil {
			t.Fatalf("a long pause gives the burst back, not more: event %d: %v", i, err)
		}
	}
	if err := l.Allow(a); err == nil {
		t.Fatal("a long pause gave more than the burst")
	}
}

func TestRateAndConns(t *testing.T) {
	c := newClock()
	l := NewLimiter(Limits{MaxConns: 1, Rate: Rate{N: 2, Per: time.Minute}, Now: c.now})
	a := addr("192.0.2.1")
	mustAcquire(t, l, a)
	if err := l.Acquire(a); err != errTooMany {
		t.Fatalf("second concurrent: %v", err)
	}
	l.Release(a)
	mustAcquire(t, l, a) // the refusal did not use up the rate
	l.Release(a)
	if err := l.Acquire(a); err != errTooFast {
		t.Fatalf("third in a minute: %v", err)
	}
	if l.Len() != 1 {
		t.Fatalf("Len = %d: the client's rate state must be kept while it refills", l.Len())
	}
	c.advance(time.Minute)
	// Calls for another client, in whatever shard, sweep the refilled
	// client away: each call sweeps one shard at random besides its own,
	// so 2,000 calls miss a given shard with odds of e^-31.
	b := addr("192.0.2.200")
	for range 2000 {
		if l.Acquire(b) == nil {
			l.Release(b)
		}
	}
	if n := l.Len(); n > 1 {
		t.Errorf("Len = %d after the rate state refilled", n)
	}
}

// TestFloodBounded floods the table with 100,000 distinct sources (a
// spoofed UDP flood, or a PROXY sender lying about clients): it must stay
// at its capacity, in entries and in memory, and keep limiting the clients
// it holds.
func TestFloodBounded(t *testing.T) {
	c := newClock()
	l := NewLimiter(Limits{Rate: Rate{N: 1, Per: time.Minute}, Clients: 4096, Now: c.now})
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var b [16]byte
	b[0] = 0x20
	for i := range 100_000 {
		b[12], b[13], b[14], b[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
		if err := l.Allow(netip.AddrFrom16(b)); err != nil {
			t.Fatalf("source %d, first event: %v", i, err)
		}
	}
	if n := l.Len(); n > l.Cap() || l.Cap() > 4096+shards {
		t.Fatalf("Len %d, Cap %d: the table grew past its bound", n, l.Cap())
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	// 4096 clients at about 100 bytes each; a table of 100,000 would
	// need ten times that.
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 2<<20 {
		t.Errorf("heap grew by %d bytes for a table of %d", grown, l.Cap())
	}
	// The most recent clients are still held and limited.
	if err := l.Allow(netip.AddrFrom16(b)); err != errTooFast {
		t.Errorf("latest source, second event: %v, want %v", err, errTooFast)
	}
}

// TestLiveNeverEvicted fills a table with clients holding connections: a
// new client is refused rather than one of them forgotten (which would
// let it exceed its cap).
func TestLiveNeverEvicted(t *testing.T) {
	l := NewLimiter(Limits{MaxConns: 1, Clients: 1})
	// Clients: 1 still gives each shard a slot; fill every shard.
	var held []netip.Addr
	for i := 0; len(held) < l.Cap(); i++ {
		a := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		if err := l.Acquire(a); err == nil {
			held = append(held, a)
		} else if err != errTableFull {
			t.Fatalf("Acquire(%s): %v", a, err)
		}
	}
	for _, a := range held {
		if err := l.Acquire(a); err != errTooMany {
			t.Fatalf("%s: %v: its count was forgotten", a, err)
		}
	}
	if err := l.Acquire(addr("192.0.2.1")); err != errTableFull && err != nil {
		t.Fatalf("new client: %v", err)
	}
	for _, a := range held {
		l.Release(a)
	}
	if n := l.Len(); n > 1 {
		t.Errorf("Len = %d after every release", n)
	}
}

func TestConcurrent(t *testing.T) {
	l := NewLimiter(Limits{MaxConns: 4, Rate: Rate{N: 1_000_000, Per: time.Second}})
	var wg sync.WaitGroup
	var over atomic.Int32
	for g := range 8 {
		wg.Go(func() {
			a := netip.AddrFrom4([4]byte{10, 0, 0, byte(g % 2)}) // 4 goroutines per client
			for range 2000 {
				if err := l.Acquire(a); err != nil {
					over.Add(1)
					continue
				}
				l.Release(a)
			}
		})
	}
	wg.Wait()
	if over.Load() != 0 {
		t.Errorf("%d refusals with at most 4 connections per client", over.Load())
	}
	if l.Len() > 2 {
		t.Errorf("Len = %d", l.Len())
	}
}

func TestLimiterNoAllocs(t *testing.T) {
	l := NewLimiter(Limits{MaxConns: 10, Rate: Rate{N: 1_000_000, Per: time.Second}})
	a := addr("192.0.2.1")
	l.Acquire(a)
	allocs := testing.AllocsPerRun(1000, func() {
		if l.Acquire(a) == nil {
			l.Release(a)
		}
		_ = l.Allow(addr("192.0.2.2"))
	})
	if allocs != 0 {
		t.Errorf("%v allocations per Acquire/Release/Allow", allocs)
	}
}

// TestBurst: Burst lets a client run further ahead than Rate.N (or less
// far), at the same steady rate, and a refused client waits at most
// RetryAfter.
func TestBurst(t *testing.T) {
	for _, tc := range []struct {
		name  string
		burst int
		want  int
	}{
		{"default is N", 0, 2},
		{"larger", 5, 5},
		{"smaller", 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			l := NewLimiter(Limits{Rate: Rate{N: 2, Per: time.Second}, Burst: tc.burst, Now: c.now})
			a := addr("192.0.2.1")
			n := 0
			for l.Allow(a) == nil && n < 100 {
				n++
			}
			if n != tc.want {
				t.Fatalf("allowed %d at once, want %d", n, tc.want)
			}
			if got := l.RetryAfter(); got != 500*time.Millisecond {
				t.Fatalf("RetryAfter = %v, want 500ms", got)
			}
			c.advance(l.RetryAfter())
			if err := l.Allow(a); err != nil {
				t.Fatalf("after RetryAfter: %v", err)
			}
		})
	}
}
