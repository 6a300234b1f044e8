package tally

import (
	"sync"
	"testing"
	"time"
)

func TestHistogram(t *testing.T) {
	h := NewHistogram([]time.Duration{time.Millisecond, time.Second})
	for _, d := range []time.Duration{0, time.Millisecond, 2 * time.Millisecond, time.Second, time.Hour} {
		h.Observe(d)
	}
	s := h.Read()
	if s.Count != 5 || s.Cumulative[0] != 2 || s.Cumulative[1] != 4 {
		t.Errorf("read %+v, want 5 in all, 2 <= 1ms, 4 <= 1s", s)
	}
	if want := time.Hour + time.Second + 3*time.Millisecond; s.Sum != want {
		t.Errorf("sum %v, want %v", s.Sum, want)
	}
}

// Counting from many goroutines while reading: the totals add up, and
// -race finds nothing.
func TestTableConcurrent(t *testing.T) {
	type counters struct{ n, bytes int64Counter }
	var tb Table[int, counters]
	h := NewHistogram(ConnectionBuckets)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				c := tb.Get(i % (w + 1))
				c.n.add(1)
				h.Observe(time.Duration(i) * time.Millisecond)
			}
		})
	}
	wg.Go(func() {
		for range 100 {
			tb.Each(func(int, *counters) {})
			h.Read()
		}
	})
	wg.Wait()
	var total int64
	tb.Each(func(_ int, c *counters) { total += c.n.load() })
	if total != 8000 || h.Read().Count != 8000 {
		t.Errorf("counted %d and %d, want 8000", total, h.Read().Count)
	}
}

func BenchmarkObserve(b *testing.B) {
	h := NewHistogram(ConnectionBuckets)
	b.ReportAllocs()
	for b.Loop() {
		h.Observe(3 * time.Second)
	}
}

func BenchmarkTableGet(b *testing.B) {
	var tb Table[[2]uint64, int64Counter]
	tb.Get([2]uint64{1, 2})
	b.ReportAllocs()
	for b.Loop() {
		tb.Get([2]uint64{1, 2}).add(1)
	}
}
