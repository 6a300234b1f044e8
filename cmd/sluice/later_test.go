package main

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"sluice/internal/pool"
)

// A backend removed, added back and removed again within the drain
// timeout is in a new drain: the first removal's timer must not close what
// it has, only the second's may. (Under load, 200 reloads cycling a
// backend out and in outlasted one drain timeout, and the first timer cut
// every stream on it a few milliseconds into a later removal.)
func TestLaterClosesSkipAnOverriddenRemoval(t *testing.T) {
	a, b := netip.MustParseAddrPort("127.0.0.1:1"), netip.MustParseAddrPort("127.0.0.1:2")
	both := []pool.BackendOptions{{Addr: a}, {Addr: b}}
	onlyB := []pool.BackendOptions{{Addr: b}}
	p, err := pool.New(pool.Options{Name: "p", Backends: both})
	if err != nil {
		t.Fatal(err)
	}
	ba := p.Backends()[0]
	ba.Acquire() // a live connection on a
	defer ba.Release()
	lc := newLaterCloses(slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer lc.stop()
	var closes atomic.Int32
	closer := func(context.Context, *pool.Backend) { closes.Add(1) }
	update := func(bs []pool.BackendOptions) []*pool.Backend {
		t.Helper()
		ch, err := p.Update(pool.Options{Name: "p", Backends: bs})
		if err != nil {
			t.Fatal(err)
		}
		return ch.Removed
	}

	const drain = 100 * time.Millisecond
	lc.after(drain, "p", update(onlyB), msgRemoved, (*pool.Backend).Removed, closer)
	update(both)
	time.Sleep(drain / 2) // the second removal comes half a drain later: the pattern under test
	second := update(onlyB)
	if len(second) != 1 || second[0] != ba {
		t.Fatalf("the second removal removed %v, want a's Backend again", second)
	}
	start := time.Now()
	lc.after(drain, "p", second, msgRemoved, (*pool.Backend).Removed, closer)
	deadline := time.Now().Add(10 * time.Second)
	for closes.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := closes.Load(); n != 1 {
		t.Fatalf("%d closes, want 1 (the second removal's)", n)
	}
	if took := time.Since(start); took < drain {
		t.Fatalf("a closed %v after its second removal, before its drain timeout of %v", took, drain)
	}
}
